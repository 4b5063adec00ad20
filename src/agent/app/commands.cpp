#include "agent/app/commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "agent/app/audit_services.h"
#include "agent/app/auditor.h"
#include "agent/app/egress_wiring.h"
#include "agent/app/health_probe.h"
#include "agent/app/job_runner.h"
#include "agent/app/job_wiring.h"
#include "agent/app/run_loop.h"
#include "agent/app/secret_store_wiring.h"
#include "agent/app/signals.h"
#include "agent/audit/audit_log.h"
#include "agent/auth/token_client.h"
#include "agent/config/config.h"
#include "agent/control/hub_client.h"
#include "agent/egress/http_client.h"
#include "agent/egress/rate_limit.h"
#include "agent/identity/agent_key.h"
#include "agent/jobs/job_verifier.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/health_server.h"
#include "agent/observe/liveness.h"
#include "agent/observe/logger.h"
#include "agent/secrets/hardening.h"
#include "agent/secrets/secret_stores.h"
#include "build_info.h"
#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/encoding.h"
#include "common/protocol/protocol.h"
#include "common/util/files.h"

namespace sa::agent::app {
namespace {

Result<config::Config> load_checked_config(const std::string& path) {
    auto config = config::load_config(path);
    if (!config) return config;
    if (auto files = config::check_files(*config); !files) return std::unexpected(files.error());
    return config;
}

observe::Level to_observe(config::LogLevel level) {
    switch (level) {
        case config::LogLevel::debug:
            return observe::Level::debug;
        case config::LogLevel::info:
            return observe::Level::info;
        case config::LogLevel::warn:
            return observe::Level::warn;
        case config::LogLevel::error:
            return observe::Level::error;
    }
    return observe::Level::info;
}

std::string source_names(const config::Config& config) {
    std::string out;
    for (const auto& source : config.sources) {
        out += (out.empty() ? "" : ", ") + source.name + " (" + source.connector + ")";
    }
    return out.empty() ? "(none)" : out;
}

// Startup step: the state directory, private to the agent (0700).
Status create_state_dir(const std::string& dir, const observe::Logger& logger) {
    if (auto made = util::make_dirs(dir, 0700); !made) return made;
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
        logger.warn("state directory is accessible to other users",
                    {{"state_dir", dir}, {"mode", st.st_mode & 0777}});
    }
    return {};
}

// A control slot that has not moved for this long is stuck: longer than a
// long poll plus the slowest chunk upload with its retries.
constexpr int kDefaultWatchdogSeconds = 300;

}  // namespace

std::string binary_sha256() {
    const int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::string("unavailable (") + std::strerror(errno) + ")";
    crypto::Sha256 hash;
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            return std::string("unavailable (") + std::strerror(errno) + ")";
        }
        if (n == 0) break;
        hash.update(std::string_view(buf, static_cast<size_t>(n)));
    }
    ::close(fd);
    return crypto::hex_encode(hash.finish());
}

int print_version(std::ostream& out) {
    out << "secure-agent " << build::kVersion << "\n"
        << "protocol " << build::kProtocolVersion << "\n"
        << "binary sha256 " << binary_sha256() << "\n";
    return kExitOk;
}

int check_config(const std::string& config_path, std::ostream& out, std::ostream& err) {
    auto config = load_checked_config(config_path);
    if (!config) {
        err << "config error: " << config.error().message << "\n";
        return kExitConfig;
    }
    out << "config OK\n"
        << "agent id: " << config->agent.id << "\n"
        << "hub url: " << config->hub.url << "\n"
        << "sources: " << source_names(*config) << "\n"
        << "config fingerprint: " << config->fingerprint << "\n";
    return kExitOk;
}

auth::TokenClient::Options hub_token_options(const config::Config& config) {
    auth::TokenClient::Options options;
    options.token_url = config.hub.url + protocol::kTokenPath;
    options.client_id = config.hub.client_id;
    options.client_secret = config.hub.client_secret;
    // The config accepts only the methods the hub supports.
    options.auth_method = auth::parse_client_auth_method(config.hub.client_auth)
                              .value_or(auth::ClientAuthMethod::client_secret_basic);
    return options;
}

// The startup steps, in order; each failure ends the process with a log
// line naming the step.
int run_agent(const std::string& config_path) {
    // 1. Load config (exit 2 on error, before anything else happens).
    auto loaded = load_checked_config(config_path);
    if (!loaded) {
        std::cerr << "config error: " << loaded.error().message << "\n";
        return kExitConfig;
    }
    const config::Config config = std::move(*loaded);
    const observe::Logger logger(config.agent.id, to_observe(config.log_level));
    const auto startup_failed = [&](const char* step, const Error& error) {
        logger.error("startup failed", {{"step", step}, {"error", error.describe()}});
        return kExitFailure;
    };

    // 2. Harden the process before any secret is read; take over signals.
    if (auto hardened = secrets::harden_process(); !hardened) {
        return startup_failed("harden process", hardened.error());
    }
    install_signal_handlers();
    const std::string binary_digest = binary_sha256();
    logger.info("secure-agent starting", {{"version", build::kVersion},
                                          {"protocol", build::kProtocolVersion},
                                          {"binary_sha256", binary_digest},
                                          {"config_fingerprint", config.fingerprint},
                                          {"hub_url", config.hub.url},
                                          {"sources", source_names(config)}});

    // 3. What the customer set up for jobs: the pinned job-signing keys (the
    // only trust anchors for jobs), the policy, and the worker sandbox this
    // host gives (strict mode refuses to start without every layer).
    auto trust = load_job_trust(config, logger);
    if (!trust && trust.error().code == ErrorCode::invalid_argument) {
        std::cerr << "config error: " << trust.error().message << "\n";
        logger.error("startup failed",
                     {{"step", "load job trust"}, {"error", trust.error().describe()}});
        return kExitConfig;
    }
    if (!trust) return startup_failed("load job trust", trust.error());

    // 4. State directory.
    if (auto made = create_state_dir(config.agent.state_dir, logger); !made) {
        return startup_failed("create state directory", made.error());
    }

    // 5. Metrics and the loopback health endpoint.
    observe::Registry registry;
    observe::AgentMetrics metrics(registry, build::kVersion);
    for (const auto& layer : trust->sandbox.layers) {
        metrics.sandbox_layer(sandbox::layer_name(layer.layer), layer.applied);
    }
    observe::Readiness readiness;
    observe::Liveness liveness(std::chrono::seconds(
        config.jobs.watchdog_seconds > 0 ? config.jobs.watchdog_seconds : kDefaultWatchdogSeconds));
    auto health = observe::HealthServer::start(
        {config.health.host, config.health.port, config.agent.state_dir}, registry, readiness,
        logger, &liveness);
    if (!health) return startup_failed("start health endpoint", health.error());

    // 6. The secret stores, the agent key and the audit log, before any hub
    // contact, so every later step is on the record.
    const bool fail_closed = config.audit.on_failure == config::AuditOnFailure::fail_closed;
    Auditor auditor({.fail_closed = fail_closed}, readiness, metrics, logger);

    // The secret stores: the local ones now (no secret is read yet), the
    // remote ones once the egress policy exists. Every read is audited;
    // reads before the audit log is open are held until it is.
    SecretAccessRecorder access_recorder(auditor);
    secrets::SecretStores secret_stores;
    secret_stores.set_observer([&access_recorder](const secrets::AccessEvent& event) {
        access_recorder.on_access(event);
    });
    add_local_secret_stores(secret_stores, config);

    // The egress policy: every outbound connection below is checked against
    // it before a packet is sent, and logged.
    // The proxy (config, else HTTPS_PROXY) is part of the policy: its host
    // is an allowed destination and every tunnel is checked on the real one.
    auto proxy = AgentProxy::load(config, secret_stores);
    if (!proxy) return startup_failed("set up egress proxy", proxy.error());
    const egress::ProxyConfig* proxy_config = *proxy ? &(*proxy)->config() : nullptr;
    if (proxy_config) {
        logger.info("egress proxy", {{"proxy", proxy_config->where()},
                                     {"source", (*proxy)->source()},
                                     {"authenticated", !proxy_config->username.empty()},
                                     {"no_proxy", proxy_config->no_proxy}});
    }
    auto policy_options = egress_policy_options(config, proxy_config);
    if (!policy_options) return startup_failed("build egress policy", policy_options.error());
    // Upload limits (global and per destination) shared by every client.
    egress::EgressRateLimiter rate_limiter(*policy_options);
    const egress::EgressPolicy egress_policy(std::move(*policy_options));
    NetworkLog network_log(logger, registry, auditor);
    // The remote secret stores, each with its own client under the policy.
    {
        egress::HttpClient::Options store_http;
        store_http.abort = &stop_requested();
        store_http.user_agent = std::string("secure-agent/") + build::kVersion;
        store_http.policy = &egress_policy;
        store_http.proxy = proxy_config;
        store_http.rate_limiter = &rate_limiter;
        store_http.on_connection = network_log.callback();
        if (auto added = add_remote_secret_stores(secret_stores, config,
                                                  http_store_transports(std::move(store_http)));
            !added) {
            return startup_failed("build secret stores", added.error());
        }
    }
    auto agent_key = [&]() -> Result<identity::AgentKey> {
        if (!config.agent.key) return identity::AgentKey::load_or_create(config.agent.state_dir);
        // Just in time: the PEM exists only inside this call.
        auto pem = secret_stores.read(*config.agent.key, {.purpose = "agent signing key"});
        if (!pem) return std::unexpected(pem.error());
        return identity::AgentKey::from_pem(pem->reveal(), config.agent.state_dir);
    }();
    if (!agent_key) return startup_failed("load agent key", agent_key.error());
    logger.info("agent key ready",
                {{"key_id", agent_key->key_id()},
                 {"public_key_file", config.agent.state_dir + "/" + identity::kPublicKeyFile}});
    audit::Options audit_options;
    audit_options.agent_id = config.agent.id;
    audit_options.batch_interval_ms = static_cast<uint32_t>(config.audit.batch_interval_ms);
    audit_options.checkpoint_every_records =
        static_cast<uint64_t>(config.audit.checkpoint_every_records);
    audit_options.checkpoint_interval_ms =
        static_cast<uint32_t>(config.audit.checkpoint_interval_ms);
    audit_options.on_failure = [&auditor](const std::string& reason) {
        auditor.on_failure(reason);
    };
    audit_options.retention_days = static_cast<uint32_t>(config.audit.retention_days);
    audit_options.on_pruned = [&logger](const std::vector<std::string>& segments,
                                        uint64_t first_seq, uint64_t last_seq) {
        logger.info("audit retention removed old segments",
                    {{"segments", segments}, {"first_seq", first_seq}, {"last_seq", last_seq}});
    };
    // Timestamps and SIEM export beside the log; the stamper must exist before
    // the log writes its first checkpoint. Their connections obey the egress
    // policy like every other.
    auto audit_services = AuditServices::create(config, logger, registry, auditor,
                                                {.policy = &egress_policy,
                                                 .proxy = proxy_config,
                                                 .rate_limiter = &rate_limiter,
                                                 .on_connection = network_log.callback()},
                                                &secret_stores);
    if (!audit_services) return startup_failed("set up audit timestamps", audit_services.error());
    audit_options.on_checkpoint = (*audit_services)->checkpoint_hook();
    // The hmac() salt from the secret store (audit.hmac_salt), held for the
    // process lifetime; absent: AUDIT_DIR/hmac.salt. open() refuses a
    // directory whose HMACs were made with another salt source.
    auto audit_salt = load_configured_salt(config, secret_stores);
    if (!audit_salt) return startup_failed("read audit.hmac_salt", audit_salt.error());
    audit_options.hasher = *audit_salt;
    auto audit_log = audit::AuditLog::open(config.audit.dir, std::move(audit_options), *agent_key);
    if (!audit_log) return startup_failed("open audit log", audit_log.error());
    for (const auto& warning : audit_log->warnings) {
        logger.warn("audit log recovered", {{"warning", warning}});
    }
    auditor.attach(audit_log->log.get());
    logger.info("audit log open", {{"dir", config.audit.dir},
                                   {"on_failure", config::to_string(config.audit.on_failure)}});
    if (!fail_closed) {
        logger.warn(
            "audit.on_failure is fail_open: the agent keeps working when its audit log "
            "cannot be written");
    }
    if (auto started = auditor.record_durable(
            "agent.started", {{"version", build::kVersion},
                              {"protocol", build::kProtocolVersion},
                              {"binary_sha256", binary_digest},
                              {"config_fingerprint", config.fingerprint},
                              {"audit_on_failure", config::to_string(config.audit.on_failure)},
                              {"agent_key_id", agent_key->key_id()}});
        !started && fail_closed) {
        return startup_failed("write audit record agent.started", started.error());
    }
    // The key, the proxy password and the audit salt were read before the log
    // could record it.
    access_recorder.start();
    if (auto exporting = (*audit_services)->start_exports(*audit_log->log); !exporting) {
        return startup_failed("start audit export", exporting.error());
    }

    // 7. Hub clients and the job pipeline, wired explicitly.
    egress::HttpClient::Options http_options;
    http_options.ca_file = config.hub.ca_file;
    http_options.abort = &stop_requested();
    http_options.user_agent = std::string("secure-agent/") + build::kVersion;
    http_options.policy = &egress_policy;
    http_options.proxy = proxy_config;
    http_options.rate_limiter = &rate_limiter;
    http_options.on_connection = network_log.callback();
    auto http = egress::HttpClient::create(http_options);
    if (!http) return startup_failed("create HTTP client", http.error());
    const auto observer = [&metrics](std::string_view endpoint, long status) {
        metrics.hub_request(endpoint, status);
    };
    const auth::SystemClock clock;
    // The control slots share one token client (it refreshes one at a time);
    // the health prober has its own. Both are audited the same way.
    auth::TokenClient::Options token_options = hub_token_options(config);
    token_options.observer = observer;
    token_options.on_token = [&auditor](const auth::TokenEvent& event) {
        audit_token_event(auditor, event);
    };
    auth::TokenClient tokens(*http, secret_stores.reader("hub client secret"), token_options,
                             clock);
    const control::HubClient::Options hub_options{
        .hub_url = config.hub.url,
        .agent_id = config.agent.id,
        .observer = observer,
        .sleep = [](std::chrono::milliseconds delay) {
            const auto until = std::chrono::steady_clock::now() + delay;
            while (!stop_requested().load() && std::chrono::steady_clock::now() < until) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            return !stop_requested().load();
        }};
    auto verifier = make_job_verifier(config, std::move(trust->keys));
    if (!verifier) return startup_failed("open job replay store", verifier.error());
    (void)auditor.record_durable("policy.loaded", {{"policy", trust->policy.source_name},
                                                   {"sha256", trust->policy.sha256_hex},
                                                   {"rules", trust->policy.rules.size()}});
    // Connection health probes of the token endpoint and the hub, on their
    // own thread with their own clients; failures turn /readyz red.
    HealthProber prober({.interval = std::chrono::seconds(config.health.probe_interval_seconds),
                         .failure_threshold = config.health.probe_failure_threshold,
                         .hub_url = config.hub.url,
                         .agent_id = config.agent.id,
                         .token = token_options,
                         .observer = observer,
                         .on_readiness = [&metrics](bool ready) { metrics.set_ready(ready); },
                         .paused = [&auditor] { return auditor.blocked(); }},
                        HealthProber::http_transports(http_options), secret_stores, clock, registry,
                        readiness, logger);
    prober.start();

    // 8. The control slots, until SIGTERM/SIGINT: one long-polling loop per
    // job that may run at once, each job in its own sandboxed worker process.
    // A watchdog turns /livez red when a slot stops moving.
    auto slots = ControlSlots::create({.config = config,
                                       .policy = trust->policy,
                                       .verifier = **verifier,
                                       .tokens = tokens,
                                       .http = http_options,
                                       .hub = hub_options,
                                       .logger = logger,
                                       .metrics = metrics,
                                       .readiness = readiness,
                                       .liveness = liveness,
                                       .auditor = auditor,
                                       .stop = stop_requested(),
                                       .egress = egress_policy,
                                       .secrets = secret_stores,
                                       .on_connection = network_log.callback()});
    if (!slots) return startup_failed("start control slots", slots.error());
    (*slots)->run();
    prober.stop();  // before the last record and the audit log's close

    // 9. Orderly shutdown: the last record, then the final checkpoint.
    (void)auditor.record_durable("agent.stopped", {{"version", build::kVersion}});
    auditor.attach(nullptr);
    if (auto closed = audit_log->log->close(); !closed) {
        logger.error("audit log not closed cleanly", {{"error", closed.error().describe()}});
    }
    // The final checkpoint gets its timestamp and the last records reach the
    // SIEMs, if they can within a few seconds; what is left waits for the
    // next start (the cursor and the unstamped checkpoint are on disk).
    (*audit_services)->stop(std::chrono::seconds(5));
    (*health)->stop();
    logger.info("secure-agent stopped");
    return kExitOk;
}

}  // namespace sa::agent::app
