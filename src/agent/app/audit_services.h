#pragma once
// AuditServices: what runs beside the audit log — RFC 3161 timestamps on its
// checkpoints (audit.tsa) and the export of its records to SIEMs
// (audit.siem) — wired to the agent's log, metrics and audit records.
//
// Order (run_agent):
//   1. create() before the audit log opens: the TSA stamper must exist when
//      the log writes its first checkpoint (checkpoint_hook()).
//   2. start_exports(log) once the log is open: exporters read its durable
//      records from their cursors.
//   3. At shutdown, after the log closed (its final checkpoint was handed to
//      the stamper): stop(grace) stamps what is pending and drains exports for
//      up to grace, then stops both.
//
// What the agent records about them: `audit.timestamp_failed` /
// `audit.timestamp_recovered` once per TSA outage (not one record per token:
// that would make a checkpoint per token, forever), `siem.unavailable` /
// `siem.recovered` once per SIEM outage, `siem.gap` whenever an exporter had to
// skip records (backlog over its bound, or segments removed by retention
// before they were exported) and `siem.halted` when it stopped at damage.
// Metrics: secure_agent_audit_timestamps_total{result},
// secure_agent_audit_export_records_total{export},
// secure_agent_audit_export_skipped_records_total{export},
// secure_agent_audit_export_lag_records{export},
// secure_agent_audit_export_healthy{export}.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "agent/app/auditor.h"
#include "agent/audit/audit_log.h"
#include "agent/audit/field_hasher.h"
#include "agent/config/config.h"
#include "agent/egress/http_client.h"
#include "agent/egress/rate_limit.h"
#include "agent/observe/logger.h"
#include "agent/observe/metrics.h"
#include "agent/secrets/secret_stores.h"
#include "agent/siem/audit_exporter.h"
#include "agent/timestamp/checkpoint_stamper.h"
#include "agent/timestamp/tsa_client.h"
#include "common/result.h"

namespace sa::agent::app {

// How the TSA and SIEM connections go out: the agent's egress policy and
// network log (both optional, for tests).
struct EgressHooks {
    const egress::EgressPolicy* policy = nullptr;
    const egress::ProxyConfig* proxy = nullptr;         // null: direct connections
    egress::EgressRateLimiter* rate_limiter = nullptr;  // null: no upload limit
    std::function<void(const egress::ConnectionRecord&)> on_connection;
};

// The salt of the audit log's hmac() values when the config takes it from a
// secret store (audit.hmac_salt), read now through `stores` (one audited read,
// purpose "audit hmac salt") and held for the process lifetime; null without
// audit.hmac_salt (the log uses AUDIT_DIR/hmac.salt). The read happens before
// the audit log can record it: run_agent's SecretAccessRecorder holds the
// event until the log is open. Errors: the store's, or invalid_argument for a
// salt that breaks audit::FieldHasher::from_secret's rules.
Result<std::shared_ptr<const audit::FieldHasher>> load_configured_salt(
    const config::Config& config, const secrets::SecretStores& stores);

class AuditServices final {
  public:
    // References (and the policy and stores) must outlive the services.
    // `stores` reads the SIEM client keys (audit.siem[].client_key) for each
    // new connection, audited with the purpose "siem client key NAME"; it may
    // be null only when no export has a client key.
    static Result<std::unique_ptr<AuditServices>> create(
        const config::Config& config, const observe::Logger& logger, observe::Registry& registry,
        Auditor& auditor, EgressHooks egress = {}, const secrets::SecretStores* stores = nullptr);
    ~AuditServices();  // stop(0)
    AuditServices(const AuditServices&) = delete;
    AuditServices& operator=(const AuditServices&) = delete;

    // For audit::Options::on_checkpoint (a no-op without a TSA).
    std::function<void(const audit::Checkpoint&)> checkpoint_hook();

    // Starts one exporter per audit.siem entry, reading `log` (which must
    // outlive them, up to stop()).
    Status start_exports(audit::AuditLog& log);

    // Lets pending work finish for up to grace, then stops. Idempotent.
    void stop(std::chrono::milliseconds grace);

  private:
    AuditServices(const config::Config& config, const observe::Logger& logger,
                  observe::Registry& registry, Auditor& auditor, EgressHooks egress,
                  const secrets::SecretStores* stores);
    void collect_metrics();

    const config::Config& config_;
    const observe::Logger& logger_;
    observe::Registry& registry_;
    Auditor& auditor_;
    EgressHooks egress_;
    const secrets::SecretStores* stores_;
    uint64_t collector_id_ = 0;

    // TSA (absent without audit.tsa).
    std::atomic<bool> tsa_abort_{false};
    std::unique_ptr<egress::HttpClient> tsa_http_;
    std::unique_ptr<timestamp::TsaClient> tsa_client_;
    std::unique_ptr<timestamp::CheckpointStamper> stamper_;
    uint64_t stamped_reported_ = 0;
    uint64_t failures_reported_ = 0;

    struct Export {
        std::string name;
        std::unique_ptr<siem::AuditExporter> exporter;
        uint64_t exported_reported = 0;
        uint64_t skipped_reported = 0;
    };
    std::mutex exports_mutex_;
    std::vector<Export> exports_;
    audit::AuditLog* log_ = nullptr;
};

}  // namespace sa::agent::app
