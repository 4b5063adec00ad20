#include "hub/jobs/job_queue.h"

#include <algorithm>

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
    "completed_at_ms, summary_tables, summary_views, summary_columns";

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
    return j;
}

template <class T>
nlohmann::json or_null(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

const std::vector<std::string>& agent_reason_codes() {
    static const std::vector<std::string> codes = {
        "bad_signature",     "malformed_job",  "wrong_audience", "expired",
        "wrong_type",        "replayed",       "unknown_source", "unsupported_operation",
        "extraction_failed", "delivery_failed"};
    return codes;
}

nlohmann::json to_json(const Job& j) {
    nlohmann::json summary = nullptr;
    if (j.summary) {
        summary = {{"tables", j.summary->tables},
                   {"views", j.summary->views},
                   {"columns", j.summary->columns}};
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
    };
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

JobQueue::JobQueue(store::Store& store, const clock::Clock& clock, store::ChangeNotifier* notifier)
    : store_(store), clock_(clock), notifier_(notifier) {}

Result<Job> JobQueue::create(const std::string& app, const std::string& source,
                             const std::string& operation) {
    if (operation != protocol::kOperationExtractMetadata) {
        return sa::fail(ErrorCode::invalid_argument,
                        "unsupported operation '" + operation + "' (supported: extract_metadata)");
    }
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
                                    "created_at_ms) VALUES (?, ?, ?, ?, 'queued', ?)",
                                    id, app, source, operation, now);
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
        if (auto s = store::execute(db,
                                    "UPDATE jobs SET status = 'queued', lease_id = NULL, "
                                    "lease_expires_at_ms = NULL WHERE app = ? AND status = "
                                    "'leased' AND lease_expires_at_ms <= ?",
                                    app, now);
            !s) {
            return std::unexpected(s.error());
        }
        auto next = store::prepare(db,
                                   "SELECT j.id, a.client_id FROM jobs j JOIN apps a ON a.name = "
                                   "j.app WHERE j.app = ? AND j.status = 'queued' ORDER BY j.n "
                                   "LIMIT 1",
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
        next->reset();
        std::string lease_id = crypto::uuid_v4();
        int64_t expires = now + int64_t{protocol::kLeaseLifetimeSeconds} * 1000;
        if (auto s = store::execute(db,
                                    "UPDATE jobs SET status = 'leased', lease_id = ?, "
                                    "lease_expires_at_ms = ?, agent_id = ?, leased_at_ms = ?, "
                                    "attempts = attempts + 1 WHERE id = ?",
                                    lease_id, expires, agent_id, now, job_id);
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
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> wire::WireResult<Job> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return wire::internal_failure(tx.error());
        auto leased = check_lease(db, app, job_id, report.lease_id, now);
        if (!leased) return leased;
        if (auto s = store::execute(db,
                                    "UPDATE jobs SET status = ?, reason_code = ?, message = ?, "
                                    "agent_id = ?, completed_at_ms = ? WHERE id = ?",
                                    report.outcome, report.reason_code, message, report.agent_id,
                                    now, job_id);
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
}

}  // namespace sa::hub::jobs
