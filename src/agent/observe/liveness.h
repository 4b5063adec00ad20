#pragma once
// The watchdog behind GET /livez: an agent that is alive but no longer
// polling (a control loop stuck in a call that never returns) looks healthy
// to a process supervisor; /livez tells it otherwise so it can restart us.
// Each control slot registers once and beats on every turn of its loop and
// while it runs a job; the agent is live while every slot beat within
// stale_after. Thread-safe.
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace sa::agent::observe {

class Liveness final {
  public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;

    explicit Liveness(std::chrono::milliseconds stale_after, Clock now = {});

    // A new slot, beaten now; returns its index for beat().
    size_t add(std::string name);
    void beat(size_t slot);

    struct Verdict {
        bool live = true;
        std::string reason;  // which slot is stuck and for how long; empty when live
    };
    Verdict check() const;

    std::chrono::milliseconds stale_after() const { return stale_after_; }

  private:
    struct Slot {
        std::string name;
        std::chrono::steady_clock::time_point last_beat;
    };
    const std::chrono::milliseconds stale_after_;
    Clock now_;
    mutable std::mutex mutex_;
    std::vector<Slot> slots_;
};

}  // namespace sa::agent::observe
