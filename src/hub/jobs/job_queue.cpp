#include "hub/jobs/job_queue.h"

#include <algorithm>
#include <regex>

#include "common/crypto/random.h"
#include "common/protocol/protocol.h"
#include "hub/wire/names.h"

namespace sa::hub::jobs {
namespace {

using sqlite::Statement;
using wire::wire_fail;

constexpr const char* kJobColumns =
    "id, app, source, operation, status, reason_code, message, attempts, agent_id, lease_id, "
    "lease_expires_at_ms, created_at_ms, leased_at_ms, started_at_ms, finished_at_ms, "
    "completed_at_ms, summary_tables, summary_views, summary_columns, filters, "
    "cancel_requested_at_ms, cancel_requested_by, heartbeat_at_ms, progress_objects, "
    "progress_bytes, progress_chunks, progress_phase, result, mode, baseline_job_id, applied_mode";

Job read_job(const Statement& s) {
    Job j;
    j.id = s.text(0);
    j.app = s.text(1);
    j.source = s.text(2);
    j.operation = s.text(3);
    j.status = s.text(4);
    j.reason_code = s.optional_text(5);
    j.message = s.optional_text(6);
    j.attempts = s.integer(7);
    j.agent_id = s.optional_text(8);
    j.lease_id = s.optional_text(9);
    j.lease_expires_at_ms = store::optional_integer(s, 10);
    j.created_at_ms = s.integer(11);
    j.leased_at_ms = store::optional_integer(s, 12);
    j.started_at_ms = store::optional_integer(s, 13);
    j.finished_at_ms = store::optional_integer(s, 14);
    j.completed_at_ms = store::optional_integer(s, 15);
    if (!s.is_null(16)) j.summary = Summary{s.integer(16), s.integer(17), s.integer(18)};
    // filters and result are written by this file only, as JSON; a row that
    // does not parse is shown without them rather than failing every read.
    if (auto text = s.optional_text(19)) {
        auto parsed = nlohmann::json::parse(*text, nullptr, false);
        if (auto f = filters_from_json(parsed)) j.filters = std::move(*f);
    }
    j.cancel_requested_at_ms = store::optional_integer(s, 20);
    j.cancel_requested_by = s.optional_text(21);
    j.heartbeat_at_ms = store::optional_integer(s, 22);
    if (!s.is_null(23)) {
        j.progress = Progress{s.integer(23), s.integer(24), s.integer(25), s.text(26)};
    }
    if (auto text = s.optional_text(27)) {
        auto parsed = nlohmann::json::parse(*text, nullptr, false);
        if (!parsed.is_discarded()) j.result = std::move(parsed);
    }
    j.mode = s.optional_text(28);
    j.baseline_job_id = s.optional_text(29);
    j.applied_mode = s.optional_text(30);
    return j;
}

nlohmann::json list_json(const std::vector<std::string>& patterns) {
    return nlohmann::json(patterns);
}

nlohmann::json group_json(const PatternList& list) {
    nlohmann::json out = nlohmann::json::object();
    if (!list.include.empty()) out["include"] = list_json(list.include);
    if (!list.exclude.empty()) out["exclude"] = list_json(list.exclude);
    return out;
}

Result<std::vector<std::string>> patterns_from_json(const nlohmann::json& group, const char* key) {
    std::vector<std::string> out;
    auto it = group.find(key);
    if (it == group.end()) return out;
    if (!it->is_array())
        return sa::fail(ErrorCode::invalid_argument, std::string(key) + " must be an array");
    for (const auto& p : *it) {
        if (!p.is_string()) {
            return sa::fail(ErrorCode::invalid_argument, std::string(key) + " must hold strings");
        }
        out.push_back(p.get<std::string>());
    }
    return out;
}

Result<PatternList> group_from_json(const nlohmann::json& value, const char* key) {
    PatternList out;
    auto it = value.find(key);
    if (it == value.end()) return out;
    if (!it->is_object()) {
        return sa::fail(ErrorCode::invalid_argument, std::string(key) + " must be an object");
    }
    auto include = patterns_from_json(*it, "include");
    if (!include) return std::unexpected(include.error());
    auto exclude = patterns_from_json(*it, "exclude");
    if (!exclude) return std::unexpected(exclude.error());
    out.include = std::move(*include);
    out.exclude = std::move(*exclude);
    return out;
}

Status validate_list(const std::vector<std::string>& patterns, const char* flag) {
    if (patterns.size() > protocol::kMaxFilterPatterns) {
        return sa::fail(ErrorCode::invalid_argument,
                        std::string(flag) + ": at most " +
                            std::to_string(protocol::kMaxFilterPatterns) + " patterns, got " +
                            std::to_string(patterns.size()));
    }
    for (size_t i = 0; i < patterns.size(); ++i) {
        const std::string& p = patterns[i];
        std::string which = std::string(flag) + " pattern " + std::to_string(i + 1);
        if (p.empty() || p.size() > protocol::kMaxFilterPatternBytes) {
            return sa::fail(ErrorCode::invalid_argument,
                            which + " must be 1.." +
                                std::to_string(protocol::kMaxFilterPatternBytes) + " bytes");
        }
        try {
            std::regex compiled(p, std::regex::ECMAScript);
            (void)compiled;
        } catch (const std::regex_error& e) {
            return sa::fail(ErrorCode::invalid_argument,
                            which + " '" + p + "' is not a valid ECMAScript regular expression (" +
                                e.what() + ")");
        }
    }
    return {};
}

// Leases of jobs in scope ("app = ?" or "id = ?") that expired by now: a job
// whose cancel was requested ends cancelled, the others go back to the queue.
// Returns the number of jobs changed. Call inside a transaction.
Result<int> expire_leases(sqlite::Database& db, const char* scope, const std::string& value,
                          int64_t now) {
    int changed = 0;
    auto count = [&]() -> Status {
        auto st = db.prepare("SELECT changes()");
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        changed += static_cast<int>(st->integer(0));
        return {};
    };
    std::string where =
        std::string(" WHERE ") + scope + " AND status = 'leased' AND lease_expires_at_ms <= ?2";
    if (auto s = store::execute(
            db,
            std::string("UPDATE jobs SET status = 'cancelled', reason_code = 'cancelled', "
                        "message = 'cancel requested; the lease expired before the agent "
                        "confirmed', completed_at_ms = ?2, lease_id = NULL, lease_expires_at_ms "
                        "= NULL") +
                where + " AND cancel_requested_at_ms IS NOT NULL",
            value, now);
        !s) {
        return std::unexpected(s.error());
    }
    if (auto s = count(); !s) return std::unexpected(s.error());
    if (auto s = store::execute(db,
                                std::string("UPDATE jobs SET status = 'queued', lease_id = NULL, "
                                            "lease_expires_at_ms = NULL") +
                                    where,
                                value, now);
        !s) {
        return std::unexpected(s.error());
    }
    if (auto s = count(); !s) return std::unexpected(s.error());
    return changed;
}

template <class T>
nlohmann::json or_null(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

const std::vector<std::string>& agent_reason_codes() {
    static const std::vector<std::string> codes = {
        // refusals
        "bad_signature", "malformed_job", "wrong_audience", "expired", "wrong_type", "replayed",
        "unknown_source", "unsupported_operation", "unknown_key", "replay_store_unavailable",
        "source_not_allowed", "operation_not_allowed", "outside_time_window",
        "filter_outside_policy",
        // failures
        "extraction_failed", "delivery_failed", "worker_crashed", "timeout", "cancelled",
        "lease_lost", "limit_exceeded", "sandbox_unavailable", "connection_failed"};
    return codes;
}

bool is_terminal(const std::string& s) {
    return s == status::kSucceeded || s == status::kFailed || s == status::kRefused ||
           s == status::kCancelled;
}

const std::vector<std::string>& operations() {
    static const std::vector<std::string> ops = {
        protocol::kOperationExtractMetadata, protocol::kOperationTestConnection,
        protocol::kOperationPreflight, protocol::kOperationListSchemas};
    return ops;
}

bool is_interactive(const std::string& operation) {
    return operation == protocol::kOperationTestConnection ||
           operation == protocol::kOperationPreflight ||
           operation == protocol::kOperationListSchemas;
}

bool is_progress_phase(const std::string& phase) {
    return phase == protocol::kPhaseStarting || phase == protocol::kPhaseExtracting ||
           phase == protocol::kPhaseUploading || phase == protocol::kPhaseFinishing;
}

Status validate_filters(const Filters& f) {
    if (auto s = validate_list(f.schemas.include, "--include-schema"); !s) return s;
    if (auto s = validate_list(f.schemas.exclude, "--exclude-schema"); !s) return s;
    if (auto s = validate_list(f.tables.include, "--include-table"); !s) return s;
    return validate_list(f.tables.exclude, "--exclude-table");
}

nlohmann::json filters_to_json(const Filters& f) {
    if (f.empty()) return nullptr;
    nlohmann::json out = nlohmann::json::object();
    if (!f.schemas.empty()) out["schemas"] = group_json(f.schemas);
    if (!f.tables.empty()) out["tables"] = group_json(f.tables);
    return out;
}

Result<Filters> filters_from_json(const nlohmann::json& value) {
    Filters out;
    if (value.is_null()) return out;
    if (!value.is_object())
        return sa::fail(ErrorCode::invalid_argument, "filters must be an object");
    auto schemas = group_from_json(value, "schemas");
    if (!schemas) return std::unexpected(schemas.error());
    auto tables = group_from_json(value, "tables");
    if (!tables) return std::unexpected(tables.error());
    out.schemas = std::move(*schemas);
    out.tables = std::move(*tables);
    return out;
}

nlohmann::json to_json(const Job& j) {
    nlohmann::json summary = nullptr;
    if (j.summary) {
        summary = {{"tables", j.summary->tables},
                   {"views", j.summary->views},
                   {"columns", j.summary->columns}};
    }
    nlohmann::json progress = nullptr;
    if (j.progress) {
        progress = {{"objects", j.progress->objects},
                    {"bytes", j.progress->bytes},
                    {"chunks", j.progress->chunks},
                    {"phase", j.progress->phase}};
    }
    return {
        {"id", j.id},
        {"app", j.app},
        {"source", j.source},
        {"operation", j.operation},
        {"status", j.status},
        {"reason_code", or_null(j.reason_code)},
        {"message", or_null(j.message)},
        {"attempts", j.attempts},
        {"agent_id", or_null(j.agent_id)},
        {"summary", summary},
        {"created_at_ms", j.created_at_ms},
        {"leased_at_ms", or_null(j.leased_at_ms)},
        {"lease_expires_at_ms", or_null(j.lease_expires_at_ms)},
        {"started_at_ms", or_null(j.started_at_ms)},
        {"finished_at_ms", or_null(j.finished_at_ms)},
        {"completed_at_ms", or_null(j.completed_at_ms)},
        {"filters", filters_to_json(j.filters)},
        {"cancel_requested", j.cancel_requested_at_ms.has_value()},
        {"cancel_requested_at_ms", or_null(j.cancel_requested_at_ms)},
        {"cancel_requested_by", or_null(j.cancel_requested_by)},
        {"last_heartbeat_at_ms", or_null(j.heartbeat_at_ms)},
        {"progress", progress},
        {"result", j.result ? *j.result : nlohmann::json(nullptr)},
        {"mode", or_null(j.mode)},
        {"baseline_job_id", or_null(j.baseline_job_id)},
        {"applied", or_null(j.applied_mode)},
    };
}

std::optional<std::string> signed_mode(const Job& j) {
    if (j.operation != protocol::kOperationExtractMetadata) return std::nullopt;
    if (j.mode == mode::kIncremental && j.baseline_job_id) return std::string(mode::kIncremental);
    return std::string(mode::kFull);
}

Result<std::optional<std::string>> catalog_version(sqlite::Database& db, const std::string& app,
                                                   const std::string& source) {
    auto st = store::prepare(db, "SELECT job_id FROM catalog_sources WHERE app = ? AND source = ?",
                             app, source);
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    if (*step != Statement::Step::row) return std::optional<std::string>();
    return std::optional<std::string>(st->text(0));
}

std::string truncate_utf8(std::string text, size_t max_bytes) {
    if (text.size() <= max_bytes) return text;
    size_t cut = max_bytes;
    // Step back over continuation bytes (10xxxxxx) to the start of a character.
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    return text;
}

Result<std::optional<Job>> load_job(sqlite::Database& db, const std::string& id) {
    auto st =
        store::prepare(db, std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?", id);
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    if (*step != Statement::Step::row) return std::nullopt;
    return read_job(*st);
}

wire::WireResult<Job> check_lease(sqlite::Database& db, const std::string& app,
                                  const std::string& job_id, const std::string& lease_id,
                                  int64_t now_ms) {
    auto job = load_job(db, job_id);
    if (!job) return wire::internal_failure(job.error());
    // A job of another app looks exactly like an unknown one.
    if (!*job || (*job)->app != app) {
        return wire_fail(wire::code::kLeaseLost, "no lease " + lease_id + " on job " + job_id);
    }
    const Job& j = **job;
    if (j.status != status::kLeased || !j.lease_id || *j.lease_id != lease_id) {
        return wire_fail(wire::code::kLeaseLost, "lease " + lease_id +
                                                     " is not the current lease of job " + job_id +
                                                     " (status " + j.status + ")");
    }
    if (!j.lease_expires_at_ms || *j.lease_expires_at_ms <= now_ms) {
        return wire_fail(wire::code::kLeaseLost,
                         "lease " + lease_id + " expired at " +
                             std::to_string(j.lease_expires_at_ms.value_or(0) / 1000));
    }
    return j;
}

JobQueue::JobQueue(store::Store& store, const clock::Clock& clock, store::ChangeNotifier* notifier,
                   std::chrono::seconds lease_lifetime)
    : store_(store), clock_(clock), notifier_(notifier), lease_lifetime_(lease_lifetime) {}

Result<Job> JobQueue::create(const std::string& app, const std::string& source,
                             const std::string& operation, const Filters& filters,
                             const std::optional<std::string>& requested_mode) {
    const auto& ops = operations();
    if (std::find(ops.begin(), ops.end(), operation) == ops.end()) {
        return sa::fail(ErrorCode::invalid_argument,
                        "unsupported operation '" + operation +
                            "' (supported: extract_metadata, test_connection, preflight, "
                            "list_schemas)");
    }
    std::optional<std::string> mode_text;
    if (operation == protocol::kOperationExtractMetadata) {
        mode_text = requested_mode.value_or(mode::kFull);
        if (*mode_text != mode::kFull && *mode_text != mode::kIncremental) {
            return sa::fail(ErrorCode::invalid_argument,
                            "--mode must be full or incremental, got '" + *mode_text + "'");
        }
    } else if (requested_mode) {
        return sa::fail(
            ErrorCode::invalid_argument,
            "--mode is only for --operation extract_metadata (this job is " + operation + ")");
    }
    if (auto s = validate_filters(filters); !s) return std::unexpected(s.error());
    std::optional<std::string> filters_text;
    if (!filters.empty()) filters_text = filters_to_json(filters).dump();
    if (!wire::is_valid_name(source, wire::kMaxSourceName)) {
        return sa::fail(ErrorCode::invalid_argument,
                        "source name must match [A-Za-z0-9_.-]{1,128}, got '" + source + "'");
    }
    std::string id = crypto::uuid_v4();
    int64_t now = clock_.now_ms();
    auto job = store_.with([&](sqlite::Database& db) -> Result<Job> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto found = store::prepare(db, "SELECT revoked_at_ms FROM apps WHERE name = ?", app);
        if (!found) return std::unexpected(found.error());
        auto step = found->step();
        if (!step) return std::unexpected(step.error());
        if (*step != Statement::Step::row) {
            return sa::fail(ErrorCode::not_found, "no app named '" + app + "'");
        }
        if (!found->is_null(0)) {
            return sa::fail(ErrorCode::conflict,
                            "app '" + app + "' is revoked: its agents can no longer run jobs");
        }
        if (auto s = store::execute(db,
                                    "INSERT INTO jobs(id, app, source, operation, status, "
                                    "created_at_ms, filters, mode) VALUES (?, ?, ?, ?, 'queued', "
                                    "?, ?, ?)",
                                    id, app, source, operation, now, filters_text, mode_text);
            !s) {
            return std::unexpected(s.error());
        }
        auto loaded = load_job(db, id);
        if (!loaded) return std::unexpected(loaded.error());
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return std::move(**loaded);
    });
    if (job && notifier_ != nullptr) notifier_->notify();
    return job;
}

Result<Job> JobQueue::get(const std::string& id) {
    return store_.with([&](sqlite::Database& db) -> Result<Job> {
        auto job = load_job(db, id);
        if (!job) return std::unexpected(job.error());
        if (!*job) return sa::fail(ErrorCode::not_found, "no job with id '" + id + "'");
        return std::move(**job);
    });
}

Result<std::vector<Job>> JobQueue::list(const JobFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<Job>> {
        auto st = store::prepare(db,
                                 std::string("SELECT ") + kJobColumns +
                                     " FROM jobs WHERE (?1 IS NULL OR app = ?1) AND "
                                     "(?2 IS NULL OR status = ?2) ORDER BY n DESC LIMIT ?3",
                                 filter.app, filter.status, filter.limit);
        if (!st) return std::unexpected(st.error());
        std::vector<Job> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == Statement::Step::done) break;
            out.push_back(read_job(*st));
        }
        return out;
    });
}

Result<std::optional<LeasedJob>> JobQueue::try_lease(const std::string& app,
                                                     const std::string& agent_id) {
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> Result<std::optional<LeasedJob>> {
        // A revoked app gets nothing, and its waiting long polls end (one
        // primary-key lookup per wake).
        auto revoked = store::prepare(
            db, "SELECT 1 FROM apps WHERE name = ? AND revoked_at_ms IS NOT NULL", app);
        if (!revoked) return std::unexpected(revoked.error());
        auto is_revoked = revoked->step();
        if (!is_revoked) return std::unexpected(is_revoked.error());
        if (*is_revoked == Statement::Step::row) {
            return sa::fail(ErrorCode::permission_denied, "app '" + app + "' is revoked");
        }
        // Cheap read first: many long polls wake on every change, and most
        // find nothing; only a real candidate takes the write lock.
        auto probe = store::prepare(db,
                                    "SELECT 1 FROM jobs WHERE app = ?1 AND (status = 'queued' OR "
                                    "(status = 'leased' AND lease_expires_at_ms <= ?2)) LIMIT 1",
                                    app, now);
        if (!probe) return std::unexpected(probe.error());
        auto probed = probe->step();
        if (!probed) return std::unexpected(probed.error());
        if (*probed != Statement::Step::row) return std::nullopt;
        probe->reset();

        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        if (auto s = expire_leases(db, "app = ?1", app, now); !s) {
            return std::unexpected(s.error());
        }
        auto next = store::prepare(db,
                                   "SELECT j.id, a.client_id, j.source, j.mode FROM jobs j JOIN "
                                   "apps a ON a.name = j.app WHERE j.app = ? AND j.status = "
                                   "'queued' ORDER BY j.n LIMIT 1",
                                   app);
        if (!next) return std::unexpected(next.error());
        auto step = next->step();
        if (!step) return std::unexpected(step.error());
        if (*step != Statement::Step::row) {
            if (auto s = tx->commit(); !s) return std::unexpected(s.error());
            return std::nullopt;
        }
        std::string job_id = next->text(0);
        std::string client_id = next->text(1);
        std::string source = next->text(2);
        const bool incremental = next->optional_text(3) == mode::kIncremental;
        next->reset();
        // The baseline is the catalog version now, when the job is leased and
        // signed: a re-lease after an expiry takes the version of that moment.
        std::optional<std::string> baseline;
        if (incremental) {
            auto version = catalog_version(db, app, source);
            if (!version) return std::unexpected(version.error());
            baseline = std::move(*version);
        }
        std::string lease_id = crypto::uuid_v4();
        int64_t expires = now + int64_t{lease_lifetime_.count()} * 1000;
        // Progress belongs to a lease: a new attempt starts without one.
        if (auto s = store::execute(db,
                                    "UPDATE jobs SET status = 'leased', lease_id = ?, "
                                    "lease_expires_at_ms = ?, agent_id = ?, leased_at_ms = ?, "
                                    "attempts = attempts + 1, heartbeat_at_ms = NULL, "
                                    "progress_objects = NULL, progress_bytes = NULL, "
                                    "progress_chunks = NULL, progress_phase = NULL, "
                                    "baseline_job_id = ? WHERE id = ?",
                                    lease_id, expires, agent_id, now, baseline, job_id);
            !s) {
            return std::unexpected(s.error());
        }
        auto job = load_job(db, job_id);
        if (!job) return std::unexpected(job.error());
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return LeasedJob{std::move(**job), client_id};
    });
}

wire::WireResult<Job> JobQueue::fail(const std::string& app, const std::string& job_id,
                                     const FailReport& report) {
    if (report.outcome != status::kRefused && report.outcome != status::kFailed) {
        return wire_fail(wire::code::kInvalidRequest, "outcome must be \"refused\" or \"failed\"");
    }
    const auto& codes = agent_reason_codes();
    if (std::find(codes.begin(), codes.end(), report.reason_code) == codes.end()) {
        return wire_fail(wire::code::kInvalidRequest,
                         "unknown reason_code \"" + truncate_utf8(report.reason_code, 64) + "\"");
    }
    std::string message = truncate_utf8(report.message, kMaxMessageBytes);
    const std::string final_status =
        report.reason_code == kReasonCancelled ? status::kCancelled : report.outcome;
    int64_t now = clock_.now_ms();
    auto ended = store_.with([&](sqlite::Database& db) -> wire::WireResult<Job> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto leased = check_lease(db, app, job_id, report.lease_id, now);
        if (!leased) return leased;
        if (auto s = store::execute(db,
                                    "UPDATE jobs SET status = ?, reason_code = ?, message = ?, "
                                    "agent_id = ?, completed_at_ms = ? WHERE id = ?",
                                    final_status, report.reason_code, message, report.agent_id, now,
                                    job_id);
            !s) {
            return wire::internal_failure(s.error());
        }
        // Partial uploads of a job that will not complete are dead weight.
        if (auto s = store::execute(db, "DELETE FROM chunks WHERE job_id = ?", job_id); !s) {
            return wire::internal_failure(s.error());
        }
        auto job = load_job(db, job_id);
        if (!job || !*job)
            return wire::internal_failure(Error{ErrorCode::internal, "job vanished"});
        if (auto s = tx->commit(); !s) return wire::internal_failure(s.error());
        return std::move(**job);
    });
    if (ended && notifier_ != nullptr) notifier_->notify();
    return ended;
}

wire::WireResult<HeartbeatReply> JobQueue::heartbeat(const std::string& app,
                                                     const std::string& job_id,
                                                     const HeartbeatReport& report) {
    if (report.progress) {
        const Progress& p = *report.progress;
        if (p.objects < 0 || p.bytes < 0 || p.chunks < 0) {
            return wire_fail(wire::code::kInvalidRequest,
                             "progress objects, bytes and chunks must be >= 0");
        }
        if (!is_progress_phase(p.phase)) {
            return wire_fail(wire::code::kInvalidRequest,
                             "progress phase must be starting, extracting, uploading or "
                             "finishing");
        }
    }
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> wire::WireResult<HeartbeatReply> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto leased = check_lease(db, app, job_id, report.lease_id, now);
        if (!leased) return std::unexpected(leased.error());
        // Never shorten a lease (a restart with a shorter --lease-seconds).
        int64_t expires = std::max(now + int64_t{lease_lifetime_.count()} * 1000,
                                   leased->lease_expires_at_ms.value_or(0));
        Status s;
        if (report.progress) {
            const Progress& p = *report.progress;
            s = store::execute(db,
                               "UPDATE jobs SET lease_expires_at_ms = ?, heartbeat_at_ms = ?, "
                               "agent_id = ?, progress_objects = ?, progress_bytes = ?, "
                               "progress_chunks = ?, progress_phase = ? WHERE id = ?",
                               expires, now, report.agent_id, p.objects, p.bytes, p.chunks, p.phase,
                               job_id);
        } else {
            s = store::execute(db,
                               "UPDATE jobs SET lease_expires_at_ms = ?, heartbeat_at_ms = ?, "
                               "agent_id = ? WHERE id = ?",
                               expires, now, report.agent_id, job_id);
        }
        if (!s) return wire::internal_failure(s.error());
        if (auto c = tx->commit(); !c) return wire::internal_failure(c.error());
        return HeartbeatReply{job_id, expires, leased->cancel_requested_at_ms.has_value()};
    });
}

Result<CancelOutcome> JobQueue::cancel(const std::string& id, const std::string& actor) {
    int64_t now = clock_.now_ms();
    auto outcome = store_.with([&](sqlite::Database& db) -> Result<CancelOutcome> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        if (auto s = expire_leases(db, "id = ?1", id, now); !s) return std::unexpected(s.error());
        auto job = load_job(db, id);
        if (!job) return std::unexpected(job.error());
        if (!*job) return sa::fail(ErrorCode::not_found, "no job with id '" + id + "'");
        const Job& j = **job;
        if (is_terminal(j.status)) {
            return sa::fail(ErrorCode::conflict,
                            "job " + id + " has already ended (status " + j.status + ")");
        }
        bool ended = false;
        if (j.status == status::kQueued) {
            if (auto s = store::execute(
                    db,
                    "UPDATE jobs SET status = 'cancelled', reason_code = 'cancelled', message = "
                    "?, cancel_requested_at_ms = ?, cancel_requested_by = ?, completed_at_ms = ? "
                    "WHERE id = ?",
                    "cancelled by " + actor + " before an agent leased it", now, actor, now, id);
                !s) {
                return std::unexpected(s.error());
            }
            ended = true;
        } else if (!j.cancel_requested_at_ms) {
            if (auto s = store::execute(db,
                                        "UPDATE jobs SET cancel_requested_at_ms = ?, "
                                        "cancel_requested_by = ? WHERE id = ?",
                                        now, actor, id);
                !s) {
                return std::unexpected(s.error());
            }
        }
        auto after = load_job(db, id);
        if (!after) return std::unexpected(after.error());
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return CancelOutcome{std::move(**after), ended};
    });
    if (outcome && notifier_ != nullptr) notifier_->notify();
    return outcome;
}

Status JobQueue::settle(const std::string& id) {
    int64_t now = clock_.now_ms();
    auto changed = store_.with([&](sqlite::Database& db) -> Result<int> {
        // Read first: most calls find nothing to do and need no write lock.
        auto probe = store::prepare(
            db,
            "SELECT 1 FROM jobs WHERE id = ? AND status = 'leased' AND lease_expires_at_ms <= ?",
            id, now);
        if (!probe) return std::unexpected(probe.error());
        auto row = probe->step();
        if (!row) return std::unexpected(row.error());
        if (*row != Statement::Step::row) return 0;
        probe->reset();
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto n = expire_leases(db, "id = ?1", id, now);
        if (!n) return n;
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return n;
    });
    if (!changed) return std::unexpected(changed.error());
    if (*changed > 0 && notifier_ != nullptr) notifier_->notify();
    return {};
}

}  // namespace sa::hub::jobs
