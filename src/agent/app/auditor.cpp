#include "agent/app/auditor.h"

namespace sa::agent::app {

Auditor::Auditor(Options options, observe::Readiness& readiness, observe::AgentMetrics& metrics,
                 const observe::Logger& logger)
    : options_(options), readiness_(&readiness), metrics_(&metrics), logger_(&logger) {}

Status Auditor::record(std::string_view type, nlohmann::json fields, const std::string& job_id) {
    return write(false, type, std::move(fields), job_id);
}

Status Auditor::record_durable(std::string_view type, nlohmann::json fields,
                               const std::string& job_id) {
    return write(true, type, std::move(fields), job_id);
}

Status Auditor::write(bool durable, std::string_view type, nlohmann::json fields,
                      const std::string& job_id) {
    audit::AuditLog* log = log_.load();
    if (log == nullptr) return {};
    audit::AppendContext context;
    context.job_id = job_id;
    auto written = durable ? log->append_durable(type, std::move(fields), context)
                           : log->append(type, std::move(fields), context);
    if (written) return {};
    // The writer thread reports a failure through on_failure; this caller may
    // see it first, and must not go on as if the record were written.
    if (log->failed()) on_failure(log->failure_reason());
    // A broken invariant (bad fields) is a bug, not a full disk: say so, but
    // only a failed log blocks the agent.
    if (logger_ != nullptr) {
        logger_->error("audit record not written",
                       {{"type", std::string(type)}, {"error", written.error().describe()}});
    }
    return std::unexpected(written.error());
}

std::string Auditor::hmac(std::string_view value) const {
    audit::AuditLog* log = log_.load();
    return log == nullptr ? std::string() : log->hmac(value);
}

void Auditor::on_failure(const std::string& reason) {
    {
        std::lock_guard lock(mutex_);
        if (failed_.load()) return;  // reported once
        reason_ = reason.empty() ? "unknown error" : reason;
        failed_.store(true);
    }
    if (metrics_ != nullptr) metrics_->set_audit_failed(true);
    if (options_.fail_closed && readiness_ != nullptr) {
        readiness_->block("audit log cannot be written: " + failure_reason());
        if (metrics_ != nullptr) metrics_->set_ready(false);
    }
    if (logger_ != nullptr) {
        logger_->error(options_.fail_closed
                           ? "audit log cannot be written; no new jobs will be taken (fail_closed)"
                           : "audit log cannot be written; continuing without it (fail_open)",
                       {{"error", failure_reason()}});
    }
}

std::string Auditor::failure_reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

void audit_token_event(Auditor& auditor, const auth::TokenEvent& event) {
    if (event.fetched) {
        (void)auditor.record("token.fetched",
                             {{"client_id", event.client_id}, {"expires_in", event.expires_in}});
    } else {
        (void)auditor.record("token.refused",
                             {{"client_id", event.client_id}, {"reason", event.reason}});
    }
}

void SecretAccessRecorder::on_access(const secrets::AccessEvent& event) {
    {
        std::lock_guard lock(mutex_);
        if (!started_) {
            held_.push_back(event);
            return;
        }
    }
    write(event);
}

void SecretAccessRecorder::start() {
    std::vector<secrets::AccessEvent> held;
    {
        std::lock_guard lock(mutex_);
        started_ = true;
        held.swap(held_);
    }
    for (const auto& event : held) write(event);
}

void SecretAccessRecorder::write(const secrets::AccessEvent& event) {
    nlohmann::json fields = {{"store", event.store},           {"path", auditor_.hmac(event.path)},
                             {"purpose", event.purpose},       {"outcome", event.outcome},
                             {"latency_ms", event.latency_ms}, {"attempts", event.attempts},
                             {"cached", event.cached}};
    if (!event.key.empty()) fields["key"] = auditor_.hmac(event.key);
    (void)auditor_.record("secret.accessed", std::move(fields), event.job_id);
}

}  // namespace sa::agent::app
