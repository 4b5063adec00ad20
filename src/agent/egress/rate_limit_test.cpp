#include "agent/egress/rate_limit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sa::agent::egress {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

// Time moves only when someone sleeps; every sleep is recorded.
class FakeClock {
  public:
    RateClock clock() {
        return {[this] {
                    std::lock_guard lock(mutex_);
                    return now_;
                },
                [this](nanoseconds d) {
                    std::function<void()> hook;
                    {
                        std::lock_guard lock(mutex_);
                        now_ += d;
                        slept_ += d;
                        sleeps_.push_back(d);
                        hook = on_sleep_;
                    }
                    if (hook) hook();
                }};
    }
    void advance(nanoseconds d) {
        std::lock_guard lock(mutex_);
        now_ += d;
    }
    nanoseconds slept() {
        std::lock_guard lock(mutex_);
        return slept_;
    }
    nanoseconds longest_sleep() {
        std::lock_guard lock(mutex_);
        nanoseconds longest{0};
        for (auto d : sleeps_) longest = std::max(longest, d);
        return longest;
    }
    void reset_slept() {
        std::lock_guard lock(mutex_);
        slept_ = nanoseconds{0};
        sleeps_.clear();
    }
    void on_sleep(std::function<void()> hook) {
        std::lock_guard lock(mutex_);
        on_sleep_ = std::move(hook);
    }

  private:
    std::mutex mutex_;
    std::chrono::steady_clock::time_point now_{};
    nanoseconds slept_{0};
    std::vector<nanoseconds> sleeps_;
    std::function<void()> on_sleep_;
};

// Sleep totals are exact up to the nanosecond rounding of each wait.
void expect_slept(FakeClock& clock, nanoseconds expected) {
    EXPECT_NEAR(static_cast<double>(clock.slept().count()), static_cast<double>(expected.count()),
                1e3)
        << "slept " << clock.slept().count() << " ns";
}

TEST(TokenBucket, BurstIsFreeThenTheRateApplies) {
    FakeClock fake;
    TokenBucket bucket(1000, 500, fake.clock());
    EXPECT_TRUE(bucket.acquire(500, nullptr));
    expect_slept(fake, 0ns);
    EXPECT_TRUE(bucket.acquire(100, nullptr));
    expect_slept(fake, 100ms);  // 100 bytes at 1000 B/s
    EXPECT_NEAR(bucket.available(), 0.0, 1e-3);
}

TEST(TokenBucket, RefillIsCappedAtTheBurst) {
    FakeClock fake;
    TokenBucket bucket(1000, 500, fake.clock());
    ASSERT_TRUE(bucket.acquire(500, nullptr));
    fake.advance(200ms);
    EXPECT_NEAR(bucket.available(), 200.0, 1e-6);
    fake.advance(10s);  // idle for long: still only one burst
    EXPECT_NEAR(bucket.available(), 500.0, 1e-6);
    ASSERT_TRUE(bucket.acquire(500, nullptr));
    expect_slept(fake, 0ns);
    ASSERT_TRUE(bucket.acquire(1, nullptr));
    expect_slept(fake, 1ms);
}

TEST(TokenBucket, AcquireLargerThanTheBurstIsSplitAndCompletes) {
    FakeClock fake;
    TokenBucket bucket(1000, 500, fake.clock());
    EXPECT_TRUE(bucket.acquire(2500, nullptr));
    // The first 500 bytes are the burst, the other 2000 take 2 s.
    expect_slept(fake, 2s);
    // Waits are sliced so an abort flag is seen within 100 ms.
    EXPECT_LE(fake.longest_sleep(), nanoseconds(100ms));
    // Never more debt than one piece: nobody behind pays for the whole 2500.
    EXPECT_GE(bucket.available(), -1e-3);
}

TEST(TokenBucket, ConsecutiveAcquiresArePacedAtTheRate) {
    FakeClock fake;
    TokenBucket bucket(1000, 1000, fake.clock());
    ASSERT_TRUE(bucket.acquire(1000, nullptr));
    // Each acquire pays for its own bytes after the previous one's.
    std::atomic<bool> never{false};
    ASSERT_TRUE(bucket.acquire(500, &never));
    expect_slept(fake, 500ms);
    ASSERT_TRUE(bucket.acquire(500, &never));
    expect_slept(fake, 1s);
}

TEST(TokenBucket, AbortWhileWaitingReturnsFalseAndRefunds) {
    FakeClock fake;
    TokenBucket bucket(1000, 500, fake.clock());
    ASSERT_TRUE(bucket.acquire(500, nullptr));
    std::atomic<bool> abort{false};
    fake.on_sleep([&] { abort = true; });
    EXPECT_FALSE(bucket.acquire(400, &abort));
    // One slice of at most 100 ms, then the flag was seen.
    expect_slept(fake, 100ms);
    // The 400 bytes were never sent, so their tokens are back: 100 ms of
    // refill is what remains.
    EXPECT_NEAR(bucket.available(), 100.0, 1e-3);
}

TEST(TokenBucket, AbortDoesNotFailAnAcquireThatNeedsNoWait) {
    FakeClock fake;
    TokenBucket bucket(1000, 500, fake.clock());
    std::atomic<bool> abort{true};
    EXPECT_TRUE(bucket.acquire(500, &abort));
    expect_slept(fake, 0ns);
    EXPECT_FALSE(bucket.acquire(1, &abort));
}

TEST(TokenBucket, RejectsANonPositiveRate) {
    EXPECT_THROW(TokenBucket(0, 10), std::invalid_argument);
    EXPECT_THROW(TokenBucket(10, 0), std::invalid_argument);
}

AllowRule rule(const std::string& origin, int64_t rate) {
    AllowRule out;
    out.host = origin + ".example.com";
    out.port = 443;
    out.origin = origin;
    out.max_bytes_per_second = rate;
    return out;
}

TEST(EgressRateLimiter, DefaultsAndLimited) {
    EXPECT_EQ(default_burst(8'000'000), 8'000'000);
    EXPECT_EQ(default_burst(1000), 64 * 1024);

    PolicyOptions none;
    none.allow = {rule("a", 0)};
    EgressRateLimiter unlimited(none);
    EXPECT_FALSE(unlimited.limited());
    EXPECT_EQ(unlimited.rate_for(&none.allow[0]), 0);
    EXPECT_TRUE(unlimited.acquire(1 << 30, &none.allow[0], nullptr));  // returns at once

    PolicyOptions per_rule;
    per_rule.allow = {rule("a", 0), rule("b", 5000)};
    EgressRateLimiter limiter(per_rule);
    EXPECT_TRUE(limiter.limited());
    EXPECT_EQ(limiter.rate_for(&per_rule.allow[0]), 0);
    EXPECT_EQ(limiter.rate_for(&per_rule.allow[1]), 5000);
    EXPECT_EQ(limiter.rate_for(nullptr), 0);

    per_rule.max_bytes_per_second = 20000;
    EgressRateLimiter both(per_rule);
    EXPECT_EQ(both.rate_for(&per_rule.allow[0]), 20000);
    EXPECT_EQ(both.rate_for(&per_rule.allow[1]), 5000);  // the lower one
    EXPECT_EQ(both.rate_for(nullptr), 20000);
}

TEST(EgressRateLimiter, GlobalLimitAppliesToEveryDestination) {
    PolicyOptions options;
    options.allow = {rule("a", 1000), rule("b", 0)};
    options.max_bytes_per_second = 10'000;
    options.burst_bytes = 1000;
    const std::vector<const AllowRule*> rules = {nullptr, &options.allow[1]};
    for (const AllowRule* r : rules) {
        FakeClock fake;
        EgressRateLimiter limiter(options, fake.clock());
        EXPECT_TRUE(limiter.acquire(3000, r, nullptr));
        // 1000 of burst, then 2000 at 10000 B/s.
        expect_slept(fake, 200ms);
    }
}

TEST(EgressRateLimiter, RuleAndGlobalLimitsBothApply) {
    PolicyOptions options;
    options.allow = {rule("a", 1000), rule("b", 0)};
    options.max_bytes_per_second = 10'000;
    options.burst_bytes = 1000;
    FakeClock fake;
    EgressRateLimiter limiter(options, fake.clock());
    // The rule's bucket: 1000 of burst, 2000 at 1000 B/s = 2 s. The global
    // bucket refilled only up to its burst meanwhile: 2000 more at
    // 10000 B/s = 0.2 s.
    EXPECT_TRUE(limiter.acquire(3000, &options.allow[0], nullptr));
    expect_slept(fake, 2200ms);

    // A copy of the rule (as in the EgressPolicy's own options) is the same
    // destination: its bucket refilled only 200 bytes during the global
    // wait, so 300 more take another 100 ms (the global bucket is full by
    // then).
    fake.reset_slept();
    const AllowRule copy = options.allow[0];
    EXPECT_TRUE(limiter.acquire(300, &copy, nullptr));
    expect_slept(fake, 100ms);

    // Another rule with the same origin but a different host is not.
    fake.reset_slept();
    AllowRule other = options.allow[0];
    other.host = "elsewhere.example.com";
    fake.advance(1s);  // refill the global bucket
    EXPECT_TRUE(limiter.acquire(1000, &other, nullptr));
    expect_slept(fake, 0ns);
}

TEST(EgressRateLimiter, AbortWhileWaitingForTheRuleReturnsFalse) {
    PolicyOptions options;
    options.allow = {rule("a", 1000)};
    options.burst_bytes = 1000;
    FakeClock fake;
    EgressRateLimiter limiter(options, fake.clock());
    std::atomic<bool> abort{false};
    ASSERT_TRUE(limiter.acquire(1000, &options.allow[0], &abort));
    fake.on_sleep([&] { abort = true; });
    EXPECT_FALSE(limiter.acquire(5000, &options.allow[0], &abort));
    EXPECT_LE(fake.slept(), nanoseconds(100ms));
}

// Real threads and the real clock: a sender of one huge block and a sender
// of small blocks share the rate; the small one is not starved until the
// huge one is done.
TEST(EgressRateLimiter, ALargeAcquireDoesNotStarveOthers) {
    PolicyOptions options;
    options.max_bytes_per_second = 1'000'000;
    options.burst_bytes = 64 * 1024;
    EgressRateLimiter limiter(options);
    ASSERT_TRUE(limiter.acquire(64 * 1024, nullptr, nullptr));  // empty the bucket
    std::atomic<bool> big_done{false};
    std::thread big([&] {
        EXPECT_TRUE(limiter.acquire(1'000'000, nullptr, nullptr));  // ~1 s
        big_done = true;
    });
    // Give the big sender the first reservation; correctness does not
    // depend on it (FIFO either way), only what is being shown.
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(limiter.acquire(16 * 1024, nullptr, nullptr));
    EXPECT_FALSE(big_done.load());
    big.join();
}

}  // namespace
}  // namespace sa::agent::egress
