#pragma once
// Clock: the seam for wall-clock time, so expiry logic is tested with a
// clock the test controls.
#include <cstdint>

#include "common/util/time.h"

namespace sa::agent::auth {

class Clock {
  public:
    virtual ~Clock() = default;
    virtual int64_t now_seconds() const = 0;  // Unix seconds
};

class SystemClock final : public Clock {
  public:
    int64_t now_seconds() const override { return util::unix_seconds(); }
};

}  // namespace sa::agent::auth
