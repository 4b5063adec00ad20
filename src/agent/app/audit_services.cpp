#include "agent/app/audit_services.h"

#include <unistd.h>

#include <string>
#include <utility>

#include "agent/siem/json_lines_sink.h"
#include "agent/siem/syslog_record_sink.h"
#include "build_info.h"

namespace sa::agent::app {
namespace {

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return "";
    return name;
}

}  // namespace

Result<std::shared_ptr<const audit::FieldHasher>> load_configured_salt(
    const config::Config& config, const secrets::SecretStores& stores) {
    if (!config.audit.hmac_salt) return std::shared_ptr<const audit::FieldHasher>();
    const secrets::SecretRef& ref = *config.audit.hmac_salt;
    auto text = stores.read(ref, {.purpose = "audit hmac salt"});
    if (!text) {
        return fail(text.error().code,
                    "audit.hmac_salt " + ref.to_string() + ": " + text.error().message);
    }
    auto hasher = audit::FieldHasher::from_secret(*text, ref.to_string());
    if (!hasher) return std::unexpected(hasher.error());
    return std::make_shared<const audit::FieldHasher>(std::move(*hasher));
}

AuditServices::AuditServices(const config::Config& config, const observe::Logger& logger,
                             observe::Registry& registry, Auditor& auditor, EgressHooks egress,
                             const secrets::SecretStores* stores)
    : config_(config),
      logger_(logger),
      registry_(registry),
      auditor_(auditor),
      egress_(std::move(egress)),
      stores_(stores) {}

Result<std::unique_ptr<AuditServices>> AuditServices::create(const config::Config& config,
                                                             const observe::Logger& logger,
                                                             observe::Registry& registry,
                                                             Auditor& auditor, EgressHooks egress,
                                                             const secrets::SecretStores* stores) {
    for (const auto& spec : config.audit.siem) {
        if (spec.client_key && stores == nullptr) {
            return fail(ErrorCode::internal,
                        "audit.siem " + spec.name + ": client_key needs the secret stores");
        }
    }
    std::unique_ptr<AuditServices> services(
        new AuditServices(config, logger, registry, auditor, std::move(egress), stores));
    if (config.audit.tsa) {
        const auto& tsa = *config.audit.tsa;
        egress::HttpClient::Options http_options;
        http_options.ca_file = tsa.tls_ca_file;
        http_options.abort = &services->tsa_abort_;
        http_options.user_agent = std::string("secure-agent/") + build::kVersion;
        http_options.policy = services->egress_.policy;
        http_options.proxy = services->egress_.proxy;
        http_options.rate_limiter = services->egress_.rate_limiter;
        http_options.on_connection = services->egress_.on_connection;
        auto http = egress::HttpClient::create(http_options);
        if (!http) return std::unexpected(http.error());
        services->tsa_http_ = std::make_unique<egress::HttpClient>(std::move(*http));
        services->tsa_client_ =
            std::make_unique<timestamp::TsaClient>(*services->tsa_http_, tsa.url, tsa.ca_file);
        AuditServices* self = services.get();
        timestamp::CheckpointStamper::Options options;
        options.tsa_url = tsa.url;
        options.abort = &services->tsa_abort_;
        options.on_failure = [self](const std::string& message) {
            self->logger_.warn("audit checkpoints cannot be time-stamped; retrying",
                               {{"tsa", self->config_.audit.tsa->url}, {"error", message}});
            (void)self->auditor_.record(
                "audit.timestamp_failed",
                {{"tsa", self->config_.audit.tsa->url}, {"error", message}});
        };
        options.on_recovered = [self] {
            self->logger_.info("audit checkpoints are time-stamped again",
                               {{"tsa", self->config_.audit.tsa->url}});
            (void)self->auditor_.record("audit.timestamp_recovered",
                                        {{"tsa", self->config_.audit.tsa->url}});
        };
        auto opened = timestamp::CheckpointStamper::open(*services->tsa_client_, config.audit.dir,
                                                         std::move(options));
        if (!opened) return std::unexpected(opened.error());
        for (const auto& warning : opened->warnings)
            logger.warn("audit timestamps recovered", {{"warning", warning}});
        services->stamper_ = std::move(opened->stamper);
        logger.info("audit checkpoints are time-stamped", {{"tsa", tsa.url}});
    }
    services->collector_id_ =
        registry.add_collector([self = services.get()] { self->collect_metrics(); });
    return services;
}

AuditServices::~AuditServices() {
    stop(std::chrono::milliseconds(0));
    registry_.remove_collector(collector_id_);
}

std::function<void(const audit::Checkpoint&)> AuditServices::checkpoint_hook() {
    timestamp::CheckpointStamper* stamper = stamper_.get();
    if (stamper == nullptr) return {};
    return [stamper](const audit::Checkpoint& checkpoint) { stamper->submit(checkpoint); };
}

Status AuditServices::start_exports(audit::AuditLog& log) {
    log_ = &log;
    std::vector<Export> started_exports;
    for (const auto& spec : config_.audit.siem) {
        siem::RecordSinkPtr sink;
        std::string where;
        if (spec.type == config::SiemExport::Type::syslog) {
            siem::SyslogRecordSink::Options options;
            options.connection.host = spec.host;
            options.connection.port = spec.port;
            options.connection.tls = spec.tls;
            options.connection.ca_file = spec.ca_file;
            options.connection.policy = egress_.policy;
            options.connection.proxy = egress_.proxy;
            options.connection.rate_limiter = egress_.rate_limiter;
            options.connection.on_connection = egress_.on_connection;
            options.hostname = host_name();
            if (spec.client_key && spec.client_cert) {
                // Mutual TLS: the key is read (and audited) for each new connection.
                options.client_certificate = siem::ClientCertificate{
                    .cert_file = *spec.client_cert,
                    .key = *spec.client_key,
                    .reader = stores_->reader("siem client key " + spec.name)};
            }
            sink = std::make_unique<siem::SyslogRecordSink>(std::move(options));
            where = (spec.tls ? "syslog+tls://" : "syslog+tcp://") + spec.host + ":" +
                    std::to_string(spec.port);
            if (spec.client_cert) where += " (client certificate " + *spec.client_cert + ")";
            if (!spec.tls) {
                logger_.warn("audit export over plain TCP: records travel unencrypted",
                             {{"export", spec.name}, {"to", where}});
            }
        } else {
            auto file = siem::JsonLinesSink::open(spec.path);
            if (!file) {
                return fail(file.error().code,
                            "audit.siem " + spec.name + ": " + file.error().message);
            }
            sink = std::move(*file);
            where = spec.path == "-" ? "stdout" : spec.path;
        }
        siem::AuditExporter::Options options;
        options.name = spec.name;
        options.max_backlog_bytes = static_cast<uint64_t>(spec.max_backlog_mb) << 20;
        options.durable_size = [&log] { return log.durable_size(); };
        const std::string name = spec.name;
        options.on_gap = [this, name](const siem::Gap& gap) {
            logger_.error("audit export skipped records", {{"export", name},
                                                           {"first_seq", gap.first_seq},
                                                           {"last_seq", gap.last_seq},
                                                           {"count", gap.count},
                                                           {"reason", gap.reason}});
            (void)auditor_.record("siem.gap", {{"export", name},
                                               {"first_seq", gap.first_seq},
                                               {"last_seq", gap.last_seq},
                                               {"count", gap.count},
                                               {"reason", gap.reason}});
        };
        options.on_unavailable = [this, name](const std::string& reason) {
            logger_.warn("audit export target unavailable; records wait in the audit log",
                         {{"export", name}, {"error", reason}});
            (void)auditor_.record("siem.unavailable", {{"export", name}, {"error", reason}});
        };
        options.on_recovered = [this, name] {
            logger_.info("audit export delivering again", {{"export", name}});
            (void)auditor_.record("siem.recovered", {{"export", name}});
        };
        options.on_warning = [this, name](const std::string& message) {
            logger_.warn("audit export", {{"export", name}, {"warning", message}});
        };
        options.on_halted = [this, name](const std::string& reason) {
            logger_.error(
                "audit export stopped at damage in the audit log; run `secure-agent "
                "audit verify`",
                {{"export", name}, {"error", reason}});
            (void)auditor_.record("siem.halted", {{"export", name}, {"error", reason}});
        };
        auto exporter = std::make_unique<siem::AuditExporter>(config_.audit.dir, std::move(sink),
                                                              std::move(options));
        if (auto started = exporter->start(); !started) {
            return fail(started.error().code,
                        "audit.siem " + spec.name + ": " + started.error().message);
        }
        logger_.info("audit export started", {{"export", spec.name}, {"to", where}});
        started_exports.push_back({spec.name, std::move(exporter), 0, 0});
    }
    // The metrics collector reads the list from the health endpoint's thread.
    std::lock_guard lock(exports_mutex_);
    exports_ = std::move(started_exports);
    return {};
}

void AuditServices::stop(std::chrono::milliseconds grace) {
    if (stamper_) stamper_->close(grace);
    // exports_ only changes in start_exports(); stopping takes no lock so
    // /metrics stays responsive while exports drain.
    for (auto& e : exports_) e.exporter->stop(grace);
}

void AuditServices::collect_metrics() {
    if (stamper_) {
        const auto stats = stamper_->stats();
        registry_
            .counter("secure_agent_audit_timestamps_total",
                     "RFC 3161 timestamp attempts for audit checkpoints, by result.",
                     {{"result", "stored"}})
            .inc(static_cast<double>(stats.stamped - stamped_reported_));
        registry_
            .counter("secure_agent_audit_timestamps_total",
                     "RFC 3161 timestamp attempts for audit checkpoints, by result.",
                     {{"result", "failed"}})
            .inc(static_cast<double>(stats.failures - failures_reported_));
        stamped_reported_ = stats.stamped;
        failures_reported_ = stats.failures;
    }
    std::lock_guard lock(exports_mutex_);
    for (auto& e : exports_) {
        const auto stats = e.exporter->stats();
        const observe::Labels labels{{"export", e.name}};
        registry_
            .counter("secure_agent_audit_export_records_total",
                     "Audit records delivered to an export target (duplicates included).", labels)
            .inc(static_cast<double>(stats.exported - e.exported_reported));
        registry_
            .counter("secure_agent_audit_export_skipped_records_total",
                     "Audit records an export had to skip (backlog bound or retention).", labels)
            .inc(static_cast<double>(stats.skipped_records - e.skipped_reported));
        registry_
            .gauge("secure_agent_audit_export_lag_records",
                   "Durable audit records not yet delivered to an export target.", labels)
            .set(static_cast<double>(stats.lag_records));
        registry_
            .gauge("secure_agent_audit_export_healthy",
                   "1 when the export target takes records (or is idle), 0 otherwise.", labels)
            .set(stats.healthy ? 1 : 0);
        e.exported_reported = stats.exported;
        e.skipped_reported = stats.skipped_records;
    }
}

}  // namespace sa::agent::app
