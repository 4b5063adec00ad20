#pragma once
// The loopback health endpoint: GET /healthz (200 "ok" while the process
// runs), GET /readyz (200 when ready, else 503 with a JSON reason) and
// GET /metrics (Prometheus text format 0.0.4), GET /livez (200 while every
// control slot moves, else 503 with the stuck slot: see liveness.h).
// SECURITY NOTE: this is the agent's only listening socket; it binds only a
// loopback IP literal (checked in config and again here) and serves nothing
// that changes state.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/observe/liveness.h"
#include "agent/observe/logger.h"
#include "agent/observe/metrics.h"
#include "common/result.h"

namespace httplib {
class Server;
}

namespace sa::agent::observe {

// Thread-safe readiness: a base flag with the reason it is not ready, plus
// named conditions that other components own.
// - set_ready()/set_not_ready() belong to the control loop.
// - set_condition(name, ok, reason) belongs to one component per name (the
//   health prober owns "hub_probe"); it does not touch the base flag, so the
//   two never overwrite each other.
// - block() is sticky: a condition only an operator can clear (the audit log
//   cannot be written) keeps the agent not ready whatever else says.
// ready() = base flag && every condition ok && not blocked.
// Reasons end up in /readyz: they must never carry secrets or tokens.
class Readiness final {
  public:
    struct Condition {
        std::string name;
        bool ok = true;
        std::string reason;  // why not ok; empty when ok
    };

    void set_ready();
    void set_not_ready(std::string reason);
    void block(std::string reason);
    // Creates or updates the named condition.
    void set_condition(const std::string& name, bool ok, std::string reason = {});
    bool ready() const;
    // Why not ready: the block reason, else the base reason, else the first
    // failing condition as "name: reason"; empty when ready.
    std::string reason() const;
    // The failing conditions, sorted by name.
    std::vector<Condition> failing_conditions() const;

  private:
    mutable std::mutex mutex_;
    bool ready_ = false;
    std::string blocked_;
    std::string reason_ = "starting";
    std::map<std::string, Condition> conditions_;
};

class HealthServer final {
  public:
    struct Options {
        std::string host = "127.0.0.1";  // loopback IP literal
        int port = 0;                    // 0: the OS picks
        // When set, the URL is written atomically to STATE_DIR/health-url.
        std::string state_dir;
    };

    // Binds and starts serving on its own thread. registry, readiness,
    // logger and liveness (optional: without it /livez is always 200) must
    // outlive the server. Errors: permission_denied for a
    // non-loopback host, unavailable when the port cannot be bound, io when
    // the URL file cannot be written.
    static Result<std::unique_ptr<HealthServer>> start(Options options, const Registry& registry,
                                                       const Readiness& readiness,
                                                       const Logger& logger,
                                                       const Liveness* liveness = nullptr);
    ~HealthServer();
    HealthServer(const HealthServer&) = delete;
    HealthServer& operator=(const HealthServer&) = delete;

    // Stops serving and joins the thread; idempotent.
    void stop();
    int port() const { return port_; }
    const std::string& url() const { return url_; }

  private:
    HealthServer() = default;

    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    std::atomic<bool> finished_{false};
    int port_ = 0;
    std::string url_;
};

}  // namespace sa::agent::observe
