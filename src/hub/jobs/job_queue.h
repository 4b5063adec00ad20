#pragma once
// The job queue: jobs are created (by the CLI), leased by agents of the same
// app, and end succeeded, failed, refused or cancelled. States and
// transitions follow docs/protocol.md ("Job states"):
//   queued -> leased -> succeeded | failed | refused | cancelled;
//   queued -> cancelled (operator);  leased -> queued on lease expiry, or
//   leased -> cancelled on expiry when an operator asked to cancel.
// A lease lasts lease_lifetime (default protocol::kLeaseLifetimeSeconds);
// each heartbeat extends it to now + lease_lifetime. An expired lease is
// settled (re-queued or cancelled) the next time an agent of that app asks
// for work, or when settle() is called for the job.
//
// `attempts` counts how many times the job was handed to an agent.
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol/protocol.h"
#include "common/result.h"
#include "hub/clock/clock.h"
#include "hub/store/change_notifier.h"
#include "hub/store/store.h"
#include "hub/wire/wire_error.h"

namespace sa::hub::jobs {

namespace status {
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kLeased = "leased";
inline constexpr const char* kSucceeded = "succeeded";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kRefused = "refused";
inline constexpr const char* kCancelled = "cancelled";
}  // namespace status

// succeeded, failed, refused and cancelled: nothing changes the job any more.
bool is_terminal(const std::string& status);

// Reason codes an agent may report (docs/protocol.md section 5).
const std::vector<std::string>& agent_reason_codes();
// The reason code of a cancellation, reported by the agent or set by the hub.
inline constexpr const char* kReasonCancelled = "cancelled";
inline constexpr size_t kMaxMessageBytes = 1000;

// The operations a job may ask for (protocol::kOperation*).
const std::vector<std::string>& operations();
// test_connection, preflight and list_schemas: they complete with a JSON
// result and deliver no chunks.
bool is_interactive(const std::string& operation);

// How an extract_metadata job extracts (docs/protocol.md, the claim "mode").
// incremental: the agent delivers only what changed since the catalog version
// of (app, source) ("baseline_job_id": the job whose completion last changed
// that catalog), plus removals; the hub applies it as a delta.
namespace mode {
inline constexpr const char* kFull = "full";
inline constexpr const char* kIncremental = "incremental";
}  // namespace mode

// Include/exclude patterns (ECMAScript regular expressions) on schema and
// table names, signed into the job as the claim "filters".
struct PatternList {
    std::vector<std::string> include;
    std::vector<std::string> exclude;
    bool empty() const { return include.empty() && exclude.empty(); }
    bool operator==(const PatternList&) const = default;
};

struct Filters {
    PatternList schemas;
    PatternList tables;
    bool empty() const { return schemas.empty() && tables.empty(); }
    bool operator==(const Filters&) const = default;
};

// Checks every list: at most protocol::kMaxFilterPatterns patterns of
// 1..protocol::kMaxFilterPatternBytes bytes, each compiling as an ECMAScript
// std::regex. Errors: invalid_argument naming the command-line flag
// (--include-schema, --exclude-schema, --include-table, --exclude-table).
Status validate_filters(const Filters& filters);
// The claim form: {"schemas": {"include": [...], "exclude": [...]}, "tables": {...}}
// with only the non-empty lists (and only the non-empty groups); null when empty.
nlohmann::json filters_to_json(const Filters& filters);
// The inverse of filters_to_json (null gives empty filters). Errors: invalid_argument.
Result<Filters> filters_from_json(const nlohmann::json& value);

// What an agent reports with a heartbeat (docs/protocol.md section 5a).
struct Progress {
    int64_t objects = 0;
    int64_t bytes = 0;
    int64_t chunks = 0;
    std::string phase;  // starting | extracting | uploading | finishing
};
// True for the four phases above.
bool is_progress_phase(const std::string& phase);

struct Summary {
    int64_t tables = 0;
    int64_t views = 0;
    int64_t columns = 0;
};

struct Job {
    std::string id;
    std::string app;
    std::string source;
    std::string operation;
    std::string status;
    std::optional<std::string> reason_code;
    std::optional<std::string> message;
    int64_t attempts = 0;
    std::optional<std::string> agent_id;
    std::optional<std::string> lease_id;  // a capability of the agent: not shown by the CLI
    std::optional<int64_t> lease_expires_at_ms;
    int64_t created_at_ms = 0;
    std::optional<int64_t> leased_at_ms;
    std::optional<int64_t> started_at_ms;    // reported by the agent
    std::optional<int64_t> finished_at_ms;   // reported by the agent
    std::optional<int64_t> completed_at_ms;  // recorded by the hub
    std::optional<Summary> summary;
    Filters filters;
    std::optional<int64_t> cancel_requested_at_ms;
    std::optional<std::string> cancel_requested_by;  // the operator's OS user
    std::optional<int64_t> heartbeat_at_ms;          // the last heartbeat of the current lease
    std::optional<Progress> progress;                // as of that heartbeat
    std::optional<nlohmann::json> result;            // of an interactive operation
    // extract_metadata only (nullopt for the other operations):
    std::optional<std::string> mode;  // requested: mode::kFull | mode::kIncremental
    // The catalog version of (app, source) taken at the latest lease of an
    // incremental job; nullopt when it had none (the job is signed as full).
    std::optional<std::string> baseline_job_id;
    std::optional<std::string> applied_mode;  // what the successful completion was
};

// The mode signed into the job: "incremental" only when incremental was
// requested and the lease found a baseline; "full" for the other
// extract_metadata jobs; nullopt for the other operations (no claim).
std::optional<std::string> signed_mode(const Job& job);

// The operator's view of a job (`job show --json`): everything but lease_id.
nlohmann::json to_json(const Job& job);

struct LeasedJob {
    Job job;
    std::string client_id;  // of the job's app: the audience of the signed job
};

struct JobFilter {
    std::optional<std::string> app;
    std::optional<std::string> status;
    int64_t limit = 100;
};

struct HeartbeatReport {
    std::string lease_id;
    std::string agent_id;
    std::optional<Progress> progress;
};

struct HeartbeatReply {
    std::string job_id;
    int64_t lease_expires_at_ms = 0;
    bool cancel = false;  // an operator asked to cancel the job
};

struct CancelOutcome {
    Job job;
    // true: the job is cancelled now (it was queued, or its lease had
    // expired); false: cancel is requested and the agent learns it from its
    // next heartbeat.
    bool ended = false;
};

struct FailReport {
    std::string lease_id;
    std::string agent_id;
    std::string outcome;  // "refused" or "failed"
    std::string reason_code;
    std::string message;
};

class JobQueue final {
  public:
    // notifier may be null; when set, in-process changes wake waiters at once.
    // lease_lifetime: how long a lease (and each heartbeat's extension) lasts.
    JobQueue(store::Store& store, const clock::Clock& clock,
             store::ChangeNotifier* notifier = nullptr,
             std::chrono::seconds lease_lifetime =
                 std::chrono::seconds(protocol::kLeaseLifetimeSeconds));

    // requested_mode: mode::kFull or mode::kIncremental, extract_metadata only
    // (nullopt: full for extract_metadata, none for the other operations).
    // Errors: invalid_argument (source name, operation, filters, mode), not_found
    // (app), conflict (the app is revoked), io.
    Result<Job> create(const std::string& app, const std::string& source,
                       const std::string& operation, const Filters& filters = {},
                       const std::optional<std::string>& requested_mode = std::nullopt);
    // Errors: not_found, io.
    Result<Job> get(const std::string& id);
    Result<std::vector<Job>> list(const JobFilter& filter);

    // Re-queues expired leases of app, then atomically leases its oldest
    // queued job to agent_id. nullopt when there is nothing to do. An
    // incremental job records the current catalog version of (app, source)
    // as its baseline_job_id (none: it is signed as full), at every lease.
    // Errors: permission_denied when the app is revoked (so a long poll that
    // started before the revocation ends at once), io.
    Result<std::optional<LeasedJob>> try_lease(const std::string& app, const std::string& agent_id);

    // Ends a leased job as refused or failed (docs/protocol.md section 5).
    // Errors: invalid_request (outcome, reason code), lease_lost.
    // A report with reason_code "cancelled" ends the job `cancelled`,
    // whatever the outcome says.
    wire::WireResult<Job> fail(const std::string& app, const std::string& job_id,
                               const FailReport& report);

    // POST /v1/jobs/{id}/heartbeat: extends the live lease to now +
    // lease_lifetime (never shortens it), records the time and progress, and
    // tells whether cancel was requested. Errors: lease_lost.
    wire::WireResult<HeartbeatReply> heartbeat(const std::string& app, const std::string& job_id,
                                               const HeartbeatReport& report);

    // An operator cancels a job: queued (or leased with an expired lease) ->
    // cancelled at once; leased -> cancel requested (idempotent). actor is
    // recorded. Errors: not_found, conflict "job ID has already ended (status
    // S)", io.
    Result<CancelOutcome> cancel(const std::string& id, const std::string& actor);

    // Applies lease expiry to one job (re-queued, or cancelled when cancel
    // was requested) so that a reader sees its real state without waiting
    // for an agent to poll. Errors: io.
    Status settle(const std::string& id);

    std::chrono::seconds lease_lifetime() const { return lease_lifetime_; }

  private:
    store::Store& store_;
    const clock::Clock& clock_;
    store::ChangeNotifier* notifier_;
    std::chrono::seconds lease_lifetime_;
};

// ---- Shared with ingest; call inside a transaction on db.

// Loads a job. nullopt when it does not exist.
Result<std::optional<Job>> load_job(sqlite::Database& db, const std::string& id);

// Succeeds when job_id belongs to app, is leased under lease_id, and the lease
// has not expired at now_ms. Otherwise lease_lost (the description says why;
// it never reveals another app's job).
wire::WireResult<Job> check_lease(sqlite::Database& db, const std::string& app,
                                  const std::string& job_id, const std::string& lease_id,
                                  int64_t now_ms);

// The catalog version of (app, source): the job whose completion last changed
// its catalog; nullopt when it has none.
Result<std::optional<std::string>> catalog_version(sqlite::Database& db, const std::string& app,
                                                   const std::string& source);

// Cuts text to at most max_bytes without splitting a UTF-8 sequence.
std::string truncate_utf8(std::string text, size_t max_bytes);

}  // namespace sa::hub::jobs
