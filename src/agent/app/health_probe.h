#pragma once
// HealthProber: periodic connection health checks of the hub's token
// endpoint and of the hub itself (issue #4), reported in /metrics and
// /readyz.
//
// Every interval, on its own thread, one round:
//   1. "token": the prober's own TokenClient returns a valid access token.
//      It fetches a new one only when its cached token is due for refresh,
//      so the token endpoint (and the audit log's token records) see about
//      one request per token lifetime, not one per probe. A refresh that
//      failed while the cached token is still valid counts as a failure.
//   2. "hub": GET /v1/agent/ping with that token (protocol section 6): TLS
//      handshake plus a cheap authenticated call; one attempt, no retries.
//      Skipped (and counted as failed) when there is no token.
// Each round uses a transport freshly made by the factory, so the probe
// opens a new connection (a real TLS handshake) through the same egress
// policy and network log as every other connection.
//
// Metrics, registered by the constructor so they exist at 0:
//   secure_agent_probe_success{target}                       gauge 0/1 (last probe)
//   secure_agent_probe_duration_seconds{target}              gauge (last probe)
//   secure_agent_probe_last_success_timestamp_seconds{target} gauge, Unix seconds
//   secure_agent_probe_failures_total{target}                counter
//   secure_agent_hub_clock_skew_seconds                      gauge: hub clock - agent clock
// target is "token" or "hub".
//
// Readiness: the named condition Options::condition ("hub_probe") turns
// false once a target has failed failure_threshold probes in a row, with a
// reason naming the target and its last error (never a token or secret),
// and true again after the next successful round. It is a condition of its
// own, so it neither overrides nor is overridden by the control loop's
// set_ready()/set_not_ready().
//
// Thread safety: start()/stop() from one owning thread. The prober's
// TokenClient, HubClient and transports are used only by its own thread
// (none of them is thread-safe; the control loop keeps its own). Registry,
// Readiness, Logger, SecretStores and the factory's policy and network log
// are shared and must be thread-safe (they are).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agent/auth/clock.h"
#include "agent/auth/token_client.h"
#include "agent/control/hub_client.h"
#include "agent/egress/http.h"
#include "agent/egress/http_client.h"
#include "agent/observe/health_server.h"
#include "agent/observe/logger.h"
#include "agent/observe/metrics.h"
#include "agent/secrets/secret_stores.h"

namespace sa::agent::app {

class HealthProber final {
  public:
    // Makes the transport for one round of probes. abort becomes true when
    // stop() is called; a transport should give up its request then.
    using TransportFactory =
        std::function<Result<std::unique_ptr<egress::Transport>>(const std::atomic<bool>& abort)>;

    struct Options {
        // config.health.probe_interval_seconds; zero: start() does nothing.
        std::chrono::milliseconds interval{60'000};
        // config.health.probe_failure_threshold: failures in a row before
        // the readiness condition turns false (at least 1).
        int failure_threshold = 3;
        // Time limit of each probe request (token and ping).
        std::chrono::milliseconds timeout{10'000};
        std::string hub_url;  // no trailing '/'
        std::string agent_id;
        // token_url, client_id, client_secret and the audit hooks, as for the
        // control loop's TokenClient. timeout and observer are replaced by
        // the prober's own.
        auth::TokenClient::Options token;
        // Optional: told about each probe request ("token", "ping"), for
        // secure_agent_hub_requests_total.
        egress::ResponseObserver observer;
        // Optional: called after each round with Readiness::ready(), to keep
        // secure_agent_ready in step.
        std::function<void(bool ready)> on_readiness;
        // Optional: while it returns true, rounds are skipped (nothing is
        // sent, nothing recorded), e.g. while the audit log is failing closed.
        std::function<bool()> paused;
        std::string condition = "hub_probe";
    };

    // All references must outlive the prober. Registers the metrics; does no I/O.
    HealthProber(Options options, TransportFactory transports, const secrets::SecretStores& stores,
                 const auth::Clock& clock, observe::Registry& registry,
                 observe::Readiness& readiness, const observe::Logger& logger);
    ~HealthProber();  // stop()
    HealthProber(const HealthProber&) = delete;
    HealthProber& operator=(const HealthProber&) = delete;

    // Starts the probe thread: a first round at once, then one every
    // interval. Does nothing when the interval is zero or it already runs.
    void start();
    // Wakes the thread, aborts a request in flight and joins; idempotent.
    // Returns within about the transport's abort latency. A probe cut short
    // by stop() is not recorded (it says nothing about the hub).
    void stop();
    bool running() const { return thread_.joinable(); }

    // One round on the calling thread; only while the thread is not running
    // (tests, one-shot checks).
    void probe_once();

    // A factory of HttpClients with the given options (egress policy,
    // on_connection network log, CA file...) whose abort flag is the
    // prober's (options.abort is replaced).
    static TransportFactory http_transports(egress::HttpClient::Options options);

  private:
    struct Target {
        const char* name;
        observe::Gauge& success;
        observe::Gauge& duration;
        observe::Gauge& last_success;
        observe::Counter& failures;
        int consecutive_failures = 0;
        std::string last_error;
    };
    // Hands each request to the round's transport; TokenClient and
    // HubClient hold a reference to this one for their whole life.
    class RoundTransport final : public egress::Transport {
      public:
        Result<egress::HttpResponse> send(const egress::HttpRequest& request) override;
        egress::Transport* current = nullptr;
    };

    Target make_target(const char* name);
    void run();
    void record(Target& target, std::chrono::steady_clock::duration elapsed, const Error* error);
    void update_readiness();

    Options options_;
    TransportFactory transports_;
    observe::Readiness& readiness_;
    const observe::Logger& logger_;
    observe::Registry& registry_;
    const auth::Clock& clock_;
    Target token_target_;
    Target hub_target_;
    observe::Gauge& clock_skew_;
    RoundTransport transport_;
    auth::TokenClient tokens_;
    control::HubClient hub_;
    bool condition_failed_ = false;

    std::atomic<bool> abort_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace sa::agent::app
