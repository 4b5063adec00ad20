#include "agent/app/health_probe.h"

#include <cmath>

#include "common/util/time.h"

namespace sa::agent::app {
namespace {

constexpr const char* kSuccess = "secure_agent_probe_success";
constexpr const char* kSuccessHelp = "1 when the last connection probe of the target succeeded.";
constexpr const char* kDuration = "secure_agent_probe_duration_seconds";
constexpr const char* kDurationHelp = "Duration of the last connection probe of the target.";
constexpr const char* kLastSuccess = "secure_agent_probe_last_success_timestamp_seconds";
constexpr const char* kLastSuccessHelp =
    "Unix time of the last successful connection probe of the target (0: none yet).";
constexpr const char* kFailures = "secure_agent_probe_failures_total";
constexpr const char* kFailuresHelp = "Failed connection probes of the target.";
constexpr const char* kSkew = "secure_agent_hub_clock_skew_seconds";
constexpr const char* kSkewHelp =
    "The hub's clock minus the agent's, from the last successful hub probe.";

auth::TokenClient::Options token_options(const HealthProber::Options& options) {
    auth::TokenClient::Options token = options.token;
    token.timeout = options.timeout;
    token.observer = options.observer;
    return token;
}

control::HubClient::Options hub_options(const HealthProber::Options& options) {
    control::HubClient::Options hub;
    hub.hub_url = options.hub_url;
    hub.agent_id = options.agent_id;
    hub.upload_attempts = 1;
    hub.request_timeout = options.timeout;
    hub.observer = options.observer;
    // ping() never retries; no caller of this client waits between attempts.
    hub.sleep = [](std::chrono::milliseconds) { return false; };
    return hub;
}

double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

Result<egress::HttpResponse> HealthProber::RoundTransport::send(
    const egress::HttpRequest& request) {
    if (current == nullptr) return fail(ErrorCode::internal, "no transport for this probe round");
    return current->send(request);
}

HealthProber::TransportFactory HealthProber::http_transports(egress::HttpClient::Options options) {
    return [options = std::move(options)](
               const std::atomic<bool>& abort) -> Result<std::unique_ptr<egress::Transport>> {
        egress::HttpClient::Options round = options;
        round.abort = &abort;
        auto client = egress::HttpClient::create(std::move(round));
        if (!client) return std::unexpected(client.error());
        return std::make_unique<egress::HttpClient>(std::move(*client));
    };
}

HealthProber::Target HealthProber::make_target(const char* name) {
    const observe::Labels labels{{"target", name}};
    return Target{name, registry_.gauge(kSuccess, kSuccessHelp, labels),
                  registry_.gauge(kDuration, kDurationHelp, labels),
                  registry_.gauge(kLastSuccess, kLastSuccessHelp, labels),
                  registry_.counter(kFailures, kFailuresHelp, labels)};
}

HealthProber::HealthProber(Options options, TransportFactory transports,
                           const secrets::SecretStores& stores, const auth::Clock& clock,
                           observe::Registry& registry, observe::Readiness& readiness,
                           const observe::Logger& logger)
    : options_(std::move(options)),
      transports_(std::move(transports)),
      readiness_(readiness),
      logger_(logger),
      registry_(registry),
      clock_(clock),
      token_target_(make_target("token")),
      hub_target_(make_target("hub")),
      clock_skew_(registry.gauge(kSkew, kSkewHelp)),
      tokens_(transport_, stores.reader("hub client secret (health probe)"),
              token_options(options_), clock),
      hub_(transport_, tokens_, hub_options(options_)) {
    if (options_.failure_threshold < 1) options_.failure_threshold = 1;
}

HealthProber::~HealthProber() {
    stop();
}

void HealthProber::start() {
    if (thread_.joinable()) return;
    if (options_.interval.count() <= 0) {
        logger_.info("connection health probes are off");
        return;
    }
    {
        std::lock_guard lock(mutex_);
        stopping_ = false;
    }
    abort_ = false;
    logger_.info("connection health probes started",
                 {{"interval_ms", options_.interval.count()},
                  {"failure_threshold", options_.failure_threshold}});
    thread_ = std::thread([this] { run(); });
}

void HealthProber::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    abort_ = true;
    wake_.notify_all();
    thread_.join();
}

void HealthProber::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        const bool paused = options_.paused && options_.paused();
        if (!paused) probe_once();
        lock.lock();
        wake_.wait_for(lock, options_.interval, [this] { return stopping_; });
    }
}

void HealthProber::probe_once() {
    auto transport = transports_(abort_);
    if (!transport) {
        // Nothing can be probed without a transport: both targets fail.
        const Error error{transport.error().code,
                          "cannot create the probe transport: " + transport.error().message};
        record(token_target_, {}, &error);
        record(hub_target_, {}, &error);
        update_readiness();
        return;
    }
    transport_.current = transport->get();

    // 1. The token endpoint, via the cache: a request only when one is due.
    const bool refresh_due = !tokens_.has_token() || clock_.now_seconds() >= tokens_.refresh_at();
    const auto token_started = std::chrono::steady_clock::now();
    auto token = tokens_.access_token();
    const auto token_elapsed = std::chrono::steady_clock::now() - token_started;
    // A request cut short by stop() says nothing about the hub's health.
    if (abort_.load()) {
        transport_.current = nullptr;
        return;
    }
    if (!token) {
        record(token_target_, token_elapsed, &token.error());
    } else if (refresh_due && clock_.now_seconds() >= tokens_.refresh_at()) {
        // TokenClient keeps using a still-valid token when its early refresh
        // fails; the endpoint did fail, and a probe must say so.
        const Error error{ErrorCode::unavailable,
                          "token refresh failed (the cached token is still valid)"};
        record(token_target_, token_elapsed, &error);
    } else {
        record(token_target_, token_elapsed, nullptr);
    }

    // 2. The hub: TLS handshake plus one authenticated call.
    if (!token) {
        const Error error{token.error().code, "skipped: no access token"};
        record(hub_target_, {}, &error);
    } else {
        const auto ping_started = std::chrono::steady_clock::now();
        auto ping = hub_.ping();
        const auto ping_elapsed = std::chrono::steady_clock::now() - ping_started;
        if (abort_.load()) {
            transport_.current = nullptr;
            return;
        }
        if (!ping) {
            record(hub_target_, ping_elapsed, &ping.error());
        } else {
            // The hub read its clock about half a round trip before the answer arrived.
            const double local_mid = static_cast<double>(util::unix_millis()) / 1000.0 -
                                     std::chrono::duration<double>(ping->rtt).count() / 2.0;
            const double skew = static_cast<double>(ping->server_time) - local_mid;
            clock_skew_.set(std::round(skew * 1000.0) / 1000.0);
            record(hub_target_, ping_elapsed, nullptr);
        }
    }
    transport_.current = nullptr;
    update_readiness();
}

void HealthProber::record(Target& target, std::chrono::steady_clock::duration elapsed,
                          const Error* error) {
    target.duration.set(seconds(elapsed));
    if (error == nullptr) {
        if (target.consecutive_failures > 0) {
            logger_.info(
                "connection probe recovered",
                {{"target", target.name}, {"failures_in_a_row", target.consecutive_failures}});
        }
        target.success.set(1);
        target.last_success.set(static_cast<double>(util::unix_seconds()));
        target.consecutive_failures = 0;
        target.last_error.clear();
        return;
    }
    target.success.set(0);
    target.failures.inc();
    ++target.consecutive_failures;
    target.last_error = error->describe();
    // One line when a target starts failing and one when it crosses the
    // threshold; the metrics count the rest.
    if (target.consecutive_failures == 1 ||
        target.consecutive_failures == options_.failure_threshold) {
        logger_.warn("connection probe failed", {{"target", target.name},
                                                 {"failures_in_a_row", target.consecutive_failures},
                                                 {"error", target.last_error}});
    }
}

void HealthProber::update_readiness() {
    std::string reason;
    for (const Target* target : {&token_target_, &hub_target_}) {
        if (target->consecutive_failures < options_.failure_threshold) continue;
        reason += (reason.empty() ? "" : "; ") + std::string(target->name) + ": " +
                  std::to_string(target->consecutive_failures) +
                  " probes failed in a row: " + target->last_error;
    }
    const bool failed = !reason.empty();
    readiness_.set_condition(options_.condition, !failed, reason);
    if (failed != condition_failed_) {
        condition_failed_ = failed;
        if (failed) {
            logger_.error("not ready: connection probes failing",
                          {{"condition", options_.condition}, {"reason", reason}});
        } else {
            logger_.info("connection probes healthy again", {{"condition", options_.condition}});
        }
    }
    if (options_.on_readiness) options_.on_readiness(readiness_.ready());
}

}  // namespace sa::agent::app
