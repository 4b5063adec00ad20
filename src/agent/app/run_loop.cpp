#include "agent/app/run_loop.h"

#include <thread>

namespace sa::agent::app {

RunLoop::RunLoop(Options options, auth::TokenSource& tokens, control::HubClient& hub,
                 JobRunner& runner, observe::Readiness& readiness, observe::AgentMetrics& metrics,
                 const observe::Logger& logger, const std::atomic<bool>& stop)
    : options_(std::move(options)),
      tokens_(tokens),
      hub_(hub),
      runner_(runner),
      readiness_(readiness),
      metrics_(metrics),
      logger_(logger),
      stop_(stop),
      backoff_(options_.backoff_base, options_.backoff_cap) {
    if (!options_.sleep) {
        options_.sleep = [this](std::chrono::milliseconds delay) {
            const auto until = std::chrono::steady_clock::now() + delay;
            while (!stop_.load() && std::chrono::steady_clock::now() < until) {
                std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
                    std::chrono::milliseconds(50), until - std::chrono::steady_clock::now()));
            }
        };
    }
}

void RunLoop::not_ready(const char* what, const Error& error) {
    readiness_.set_not_ready(std::string(what) + ": " + error.describe());
    metrics_.set_ready(false);
    // Rejected credentials need an operator; a network blip does not.
    const observe::Level level =
        error.code == ErrorCode::unauthenticated ? observe::Level::error : observe::Level::warn;
    logger_.log(level, what, {{"error", error.describe()}});
}

void RunLoop::back_off(std::optional<std::chrono::seconds> retry_after) {
    auto delay = backoff_.next();
    if (retry_after && *retry_after > delay) delay = *retry_after;
    logger_.debug("backing off", {{"delay_ms", delay.count()}});
    options_.sleep(delay);
}

bool RunLoop::audit_blocked() {
    if (options_.auditor == nullptr || !options_.auditor->blocked()) return false;
    metrics_.set_ready(false);
    if (!reported_blocked_) {
        reported_blocked_ = true;
        logger_.error("not leasing jobs: audit log cannot be written",
                      {{"error", options_.auditor->failure_reason()}});
    }
    return true;
}

void RunLoop::mark_ready() {
    readiness_.set_ready();
    metrics_.set_ready(readiness_.ready());
}

void RunLoop::run() {
    logger_.info("control loop started", {{"poll_wait_seconds", options_.poll_wait_seconds}});
    while (!stop_.load()) {
        if (options_.beat) options_.beat();
        if (audit_blocked()) {
            options_.sleep(options_.blocked_wait);
            continue;
        }
        auto token = tokens_.access_token();
        if (!token) {
            if (stop_.load()) break;
            not_ready("cannot obtain an access token", token.error());
            back_off();
            continue;
        }
        // Token obtained: the last hub contact succeeded.
        mark_ready();
        if (audit_blocked()) continue;

        const auto asked = std::chrono::steady_clock::now();
        auto lease = hub_.lease(options_.poll_wait_seconds);
        if (stop_.load()) break;
        if (!lease) {
            not_ready("lease request failed", lease.error());
            back_off(hub_.last_retry_after());
            continue;
        }
        backoff_.reset();
        mark_ready();
        if (!lease->has_value()) continue;  // 204: nothing queued, poll again

        metrics_.lease_latency(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count());
        runner_.run(**lease);
    }
    logger_.info("control loop stopped");
}

}  // namespace sa::agent::app
