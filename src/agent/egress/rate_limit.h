#pragma once
// Egress rate limit (issue #4): token buckets on outbound (upload) bytes,
// one global and one per allow rule that sets max_bytes_per_second.
//
// A limit smooths traffic, it never fails it: a sender asks for tokens
// before each block it writes and waits until the bucket can pay. Waiting is
// by reservation: a caller takes its tokens at once (the bucket may go into
// debt) and sleeps until the debt would have been refilled. Callers are
// therefore served in the order they asked (FIFO), and a large request is
// split into pieces of at most the bucket's size, so one long upload cannot
// starve the others; it only shares the rate with them.
//
// Only bytes that HttpClient and StreamConnection send are limited (request
// bodies and stream data); headers, TLS overhead and downloads are not.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/egress/policy.h"

namespace sa::agent::egress {

// Time source and sleep, injectable so tests run on a fake clock.
struct RateClock {
    std::function<std::chrono::steady_clock::time_point()> now;
    std::function<void(std::chrono::nanoseconds)> sleep;
    // std::chrono::steady_clock and std::this_thread::sleep_for.
    static RateClock system();
};

// Thread-safe. Starts full.
class TokenBucket final {
  public:
    // rate > 0 bytes per second; burst > 0 bytes (the bucket's size).
    TokenBucket(int64_t rate, int64_t burst, RateClock clock = RateClock::system());

    // Blocks until `bytes` may be sent. bytes larger than the burst are
    // taken in pieces of at most burst (others may interleave). Sleeps in
    // slices of at most 100 ms and returns false as soon as *abort (may be
    // null) is true; tokens of the piece being waited for are then returned.
    bool acquire(int64_t bytes, const std::atomic<bool>* abort);

    int64_t rate() const { return rate_; }
    int64_t burst() const { return burst_; }
    // Current tokens (negative while callers wait); for tests.
    double available();

  private:
    // Takes bytes now and returns when they are paid for.
    std::chrono::steady_clock::time_point reserve(int64_t bytes);
    void refund(int64_t bytes);
    void refill(std::chrono::steady_clock::time_point now);

    const int64_t rate_;
    const int64_t burst_;
    RateClock clock_;
    std::mutex mutex_;
    double tokens_;
    std::chrono::steady_clock::time_point last_;
};

// The burst a limit gets when PolicyOptions::burst_bytes is 0: one second
// of the rate, at least 64 KiB.
int64_t default_burst(int64_t rate);

class EgressRateLimiter final {
  public:
    // A global bucket when options.max_bytes_per_second > 0, and one bucket
    // per allow rule with max_bytes_per_second > 0; every bucket's size is
    // options.burst_bytes, or default_burst() of its rate when that is 0.
    explicit EgressRateLimiter(const PolicyOptions& options);
    EgressRateLimiter(const PolicyOptions& options, RateClock clock);

    // Blocks until `bytes` may be sent to a destination allowed by `rule`
    // (may be null: the global limit only): takes from the rule's bucket,
    // then from the global one. A rule is recognised by its origin, host and
    // port, so `rule` may point into the EgressPolicy's copy of the options.
    // Returns false if *abort (may be null) became true while waiting
    // (checked at least every 100 ms).
    bool acquire(int64_t bytes, const AllowRule* rule, const std::atomic<bool>* abort);

    // Any limit configured.
    bool limited() const;

    // The lowest rate that applies to `rule` (bytes/s), 0 when none does;
    // lets a client stretch its timeout so a throttled upload is not failed.
    int64_t rate_for(const AllowRule* rule) const;

  private:
    struct RuleBucket {
        std::string origin;
        std::string host;
        int port = 0;
        std::unique_ptr<TokenBucket> bucket;
    };
    TokenBucket* bucket_for(const AllowRule* rule) const;

    std::unique_ptr<TokenBucket> global_;
    std::vector<RuleBucket> rules_;
};

}  // namespace sa::agent::egress
