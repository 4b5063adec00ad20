#pragma once
// The control loop: token -> long-poll lease -> run the job -> again, until
// the stop flag is set. On errors it logs, marks the agent not ready and
// backs off with full jitter from 1 s up to 30 s (or as long as the hub's
// Retry-After asks). One job at a time per loop; the agent runs one loop
// per worker slot (jobs.workers), each with its own hub client.
// Fail closed: while the auditor is blocked (the audit log cannot be
// written), no token or lease request is made; the loop only waits for stop.
#include <atomic>
#include <chrono>
#include <functional>

#include "agent/app/auditor.h"
#include "agent/app/job_runner.h"
#include "agent/auth/token_client.h"
#include "agent/control/backoff.h"
#include "agent/observe/health_server.h"

namespace sa::agent::app {

class RunLoop final {
  public:
    struct Options {
        int poll_wait_seconds = 25;
        std::chrono::milliseconds backoff_base{1000};
        std::chrono::milliseconds backoff_cap{30'000};
        // Waits up to the given time; returns early when stop is set.
        // Default: sleeps in 50 ms steps, checking stop.
        std::function<void(std::chrono::milliseconds)> sleep;
        // Optional; when given, must outlive the loop.
        const Auditor* auditor = nullptr;
        // How long to wait between checks while blocked by the audit log.
        std::chrono::milliseconds blocked_wait{1000};
        // Called on every turn of the loop (the watchdog behind /livez); optional.
        std::function<void()> beat;
    };

    // All references must outlive the loop.
    RunLoop(Options options, auth::TokenSource& tokens, control::HubClient& hub, JobRunner& runner,
            observe::Readiness& readiness, observe::AgentMetrics& metrics,
            const observe::Logger& logger, const std::atomic<bool>& stop);

    RunLoop(const RunLoop&) = delete;
    RunLoop& operator=(const RunLoop&) = delete;

    // Returns when stop is set.
    void run();

  private:
    void not_ready(const char* what, const Error& error);
    void back_off(std::optional<std::chrono::seconds> retry_after = std::nullopt);
    bool audit_blocked();
    void mark_ready();

    Options options_;
    auth::TokenSource& tokens_;
    control::HubClient& hub_;
    JobRunner& runner_;
    observe::Readiness& readiness_;
    observe::AgentMetrics& metrics_;
    const observe::Logger& logger_;
    const std::atomic<bool>& stop_;
    control::Backoff backoff_;
    bool reported_blocked_ = false;
};

}  // namespace sa::agent::app
