#pragma once
// Auditor: the app's one-line way to write audit records, and the shared
// "audit log cannot be written" state the control loop and job runner obey.
//
// - record(type, fields[, job_id]) enqueues; record_durable() returns once the
//   record is on disk (for records that close a custody step). Both return
//   an error when the record could not be written.
// - Without an attached log (tests, commands that write no audit) every
//   record is dropped and nothing ever fails.
// - on_failure(reason) is what AuditLog::Options::on_failure calls (on the
//   log's writer thread). It logs an error and sets secure_agent_audit_failed;
//   with fail_closed it also blocks readiness, after which blocked() is true:
//   the control loop stops leasing and a job in progress aborts its delivery.
//   with fail_open the agent keeps working.
// - hmac() is for sensitive, non-secret values (secret paths). Secret values
//   are never recorded.
#include <atomic>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/audit_log.h"
#include "agent/auth/token_client.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/health_server.h"
#include "agent/observe/logger.h"
#include "agent/secrets/secret_stores.h"
#include "common/result.h"

namespace sa::agent::app {

class Auditor final {
  public:
    struct Options {
        bool fail_closed = true;
    };

    // A no-op auditor: no log, never fails.
    Auditor() = default;
    // The references must outlive the auditor.
    Auditor(Options options, observe::Readiness& readiness, observe::AgentMetrics& metrics,
            const observe::Logger& logger);

    Auditor(const Auditor&) = delete;
    Auditor& operator=(const Auditor&) = delete;

    // The log to write to (may be null to detach); must outlive its use here.
    void attach(audit::AuditLog* log) { log_.store(log); }

    Status record(std::string_view type, nlohmann::json fields, const std::string& job_id = {});
    Status record_durable(std::string_view type, nlohmann::json fields,
                          const std::string& job_id = {});

    // "hmac-sha256:..." of value; "" without a log.
    std::string hmac(std::string_view value) const;

    // The AuditLog::Options::on_failure callback.
    void on_failure(const std::string& reason);

    bool failed() const { return failed_.load(); }
    // True when failed in fail_closed mode: take no new work, deliver nothing more.
    bool blocked() const { return failed_.load() && options_.fail_closed; }
    std::string failure_reason() const;

  private:
    Status write(bool durable, std::string_view type, nlohmann::json fields,
                 const std::string& job_id);

    Options options_;
    observe::Readiness* readiness_ = nullptr;
    observe::AgentMetrics* metrics_ = nullptr;
    const observe::Logger* logger_ = nullptr;
    std::atomic<audit::AuditLog*> log_{nullptr};
    std::atomic<bool> failed_{false};
    mutable std::mutex mutex_;
    std::string reason_;
};

// Hook for a capability that must not depend on the audit library:
// token.fetched / token.refused.
void audit_token_event(Auditor& auditor, const auth::TokenEvent& event);

// Writes secret.accessed for every read of the secret stores (it is the
// registry's observer): store, HMAC of path and key, purpose, outcome,
// latency, attempts, cache hit, and the job id when the read served a job;
// never the value, the plain path or the store's error text (which names
// the path). Reads made before the audit log is open (the agent key, the
// proxy password) are held in memory and written by start().
// Thread-safe.
class SecretAccessRecorder final {
  public:
    explicit SecretAccessRecorder(Auditor& auditor) : auditor_(auditor) {}
    void on_access(const secrets::AccessEvent& event);
    // The audit log is open: writes the held events, then records directly.
    void start();

  private:
    void write(const secrets::AccessEvent& event);

    Auditor& auditor_;
    std::mutex mutex_;
    bool started_ = false;
    std::vector<secrets::AccessEvent> held_;
};

}  // namespace sa::agent::app
