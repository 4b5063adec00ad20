#pragma once
// Wall-clock time for the hub, behind an interface so that tests can move
// time (token expiry, lease expiry) without sleeping.
#include <atomic>
#include <cstdint>

#include "common/util/time.h"

namespace sa::hub::clock {

class Clock {
  public:
    virtual ~Clock() = default;
    // Unix time in milliseconds. Thread-safe.
    virtual int64_t now_ms() const = 0;
    int64_t now_seconds() const { return now_ms() / 1000; }
};

class SystemClock final : public Clock {
  public:
    int64_t now_ms() const override { return util::unix_millis(); }
};

// A clock that only moves when told to; for tests and tools.
class ManualClock final : public Clock {
  public:
    explicit ManualClock(int64_t start_ms) : now_(start_ms) {}
    int64_t now_ms() const override { return now_.load(); }
    void advance_ms(int64_t delta) { now_ += delta; }
    void set_ms(int64_t value) { now_ = value; }

  private:
    std::atomic<int64_t> now_;
};

}  // namespace sa::hub::clock
