#pragma once
// The job queue: jobs are created (by the CLI), leased by agents of the same
// app, and end succeeded, failed or refused. States and transitions follow
// docs/protocol.md:
//   queued -> leased -> succeeded | failed | refused;  leased -> queued on expiry.
// A lease lasts protocol::kLeaseLifetimeSeconds. An expired lease is put back
// in the queue the next time an agent of that app asks for work.
//
// `attempts` counts how many times the job was handed to an agent.
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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
}  // namespace status

// Reason codes an agent may report (docs/protocol.md section 5).
const std::vector<std::string>& agent_reason_codes();
inline constexpr size_t kMaxMessageBytes = 1000;

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
};

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
    JobQueue(store::Store& store, const clock::Clock& clock,
             store::ChangeNotifier* notifier = nullptr);

    // Errors: invalid_argument (source name, operation), not_found (app),
    // conflict (the app is revoked), io.
    Result<Job> create(const std::string& app, const std::string& source,
                       const std::string& operation);
    // Errors: not_found, io.
    Result<Job> get(const std::string& id);
    Result<std::vector<Job>> list(const JobFilter& filter);

    // Re-queues expired leases of app, then atomically leases its oldest
    // queued job to agent_id. nullopt when there is nothing to do.
    // Errors: permission_denied when the app is revoked (so a long poll that
    // started before the revocation ends at once), io.
    Result<std::optional<LeasedJob>> try_lease(const std::string& app, const std::string& agent_id);

    // Ends a leased job as refused or failed (docs/protocol.md section 5).
    // Errors: invalid_request (outcome, reason code), lease_lost.
    wire::WireResult<Job> fail(const std::string& app, const std::string& job_id,
                               const FailReport& report);

  private:
    store::Store& store_;
    const clock::Clock& clock_;
    store::ChangeNotifier* notifier_;
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

// Cuts text to at most max_bytes without splitting a UTF-8 sequence.
std::string truncate_utf8(std::string text, size_t max_bytes);

}  // namespace sa::hub::jobs
