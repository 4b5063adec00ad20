#pragma once
// Retry pacing: exponential backoff with "full jitter" (a uniformly random
// delay between 0 and min(cap, base * 2^attempt)), so many agents that lost
// the hub at the same moment do not come back in lockstep; and Retry-After.
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

namespace sa::agent::control {

class Backoff final {
  public:
    Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap);
    Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed);

    // The delay before the next attempt; each call doubles the ceiling.
    std::chrono::milliseconds next();
    // The ceiling the next call draws below.
    std::chrono::milliseconds ceiling() const;
    // After a success: start again from base.
    void reset() { attempt_ = 0; }

  private:
    std::chrono::milliseconds base_;
    std::chrono::milliseconds cap_;
    int attempt_ = 0;
    std::mt19937_64 rng_;
};

// Retry-After (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date,
// relative to now (Unix seconds). nullopt when malformed; dates in the past
// give 0. Capped at max so a hostile value cannot park the agent.
std::optional<std::chrono::seconds> parse_retry_after(
    std::string_view value, int64_t now, std::chrono::seconds max = std::chrono::seconds(300));

}  // namespace sa::agent::control
