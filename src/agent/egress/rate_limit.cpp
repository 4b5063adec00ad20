#include "agent/egress/rate_limit.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

namespace sa::agent::egress {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMaxSleep = std::chrono::milliseconds(100);
constexpr int64_t kMinBurst = 64 * 1024;

}  // namespace

RateClock RateClock::system() {
    return {[] { return Clock::now(); },
            [](std::chrono::nanoseconds d) { std::this_thread::sleep_for(d); }};
}

int64_t default_burst(int64_t rate) {
    return std::max(rate, kMinBurst);
}

// ------------------------------------------------------------- TokenBucket

TokenBucket::TokenBucket(int64_t rate, int64_t burst, RateClock clock)
    : rate_(rate), burst_(burst), clock_(std::move(clock)) {
    // Callers validate configuration; a zero rate here would divide by zero.
    if (rate_ <= 0 || burst_ <= 0) throw std::invalid_argument("TokenBucket: rate and burst > 0");
    tokens_ = static_cast<double>(burst_);
    last_ = clock_.now();
}

void TokenBucket::refill(Clock::time_point now) {
    if (now <= last_) return;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(static_cast<double>(burst_), tokens_ + elapsed * static_cast<double>(rate_));
    last_ = now;
}

Clock::time_point TokenBucket::reserve(int64_t bytes) {
    std::lock_guard lock(mutex_);
    const auto now = clock_.now();
    refill(now);
    tokens_ -= static_cast<double>(bytes);
    if (tokens_ >= 0) return now;
    const double wait_ns = std::ceil(-tokens_ * 1e9 / static_cast<double>(rate_));
    return now + std::chrono::nanoseconds(static_cast<int64_t>(wait_ns));
}

void TokenBucket::refund(int64_t bytes) {
    std::lock_guard lock(mutex_);
    refill(clock_.now());
    tokens_ = std::min(static_cast<double>(burst_), tokens_ + static_cast<double>(bytes));
}

double TokenBucket::available() {
    std::lock_guard lock(mutex_);
    refill(clock_.now());
    return tokens_;
}

bool TokenBucket::acquire(int64_t bytes, const std::atomic<bool>* abort) {
    while (bytes > 0) {
        const int64_t piece = std::min(bytes, burst_);
        const auto ready = reserve(piece);
        for (;;) {
            const auto now = clock_.now();
            if (now >= ready) break;
            if (abort != nullptr && abort->load()) {
                // Nothing of this piece was sent: give its tokens back so the
                // next sender does not pay for them.
                refund(piece);
                return false;
            }
            clock_.sleep(std::min<std::chrono::nanoseconds>(ready - now, kMaxSleep));
        }
        bytes -= piece;
    }
    return true;
}

// ------------------------------------------------------- EgressRateLimiter

EgressRateLimiter::EgressRateLimiter(const PolicyOptions& options)
    : EgressRateLimiter(options, RateClock::system()) {}

EgressRateLimiter::EgressRateLimiter(const PolicyOptions& options, RateClock clock) {
    const auto burst = [&](int64_t rate) {
        return options.burst_bytes > 0 ? options.burst_bytes : default_burst(rate);
    };
    if (options.max_bytes_per_second > 0) {
        global_ = std::make_unique<TokenBucket>(options.max_bytes_per_second,
                                                burst(options.max_bytes_per_second), clock);
    }
    for (const auto& rule : options.allow) {
        if (rule.max_bytes_per_second <= 0) continue;
        rules_.push_back({rule.origin, rule.host, rule.port,
                          std::make_unique<TokenBucket>(rule.max_bytes_per_second,
                                                        burst(rule.max_bytes_per_second), clock)});
    }
}

TokenBucket* EgressRateLimiter::bucket_for(const AllowRule* rule) const {
    if (rule == nullptr) return nullptr;
    for (const auto& entry : rules_) {
        if (entry.port == rule->port && entry.host == rule->host && entry.origin == rule->origin) {
            return entry.bucket.get();
        }
    }
    return nullptr;
}

bool EgressRateLimiter::acquire(int64_t bytes, const AllowRule* rule,
                                const std::atomic<bool>* abort) {
    if (bytes <= 0) return true;
    if (TokenBucket* bucket = bucket_for(rule); bucket != nullptr) {
        if (!bucket->acquire(bytes, abort)) return false;
    }
    if (global_ && !global_->acquire(bytes, abort)) return false;
    return true;
}

bool EgressRateLimiter::limited() const {
    return global_ != nullptr || !rules_.empty();
}

int64_t EgressRateLimiter::rate_for(const AllowRule* rule) const {
    int64_t rate = global_ ? global_->rate() : 0;
    if (const TokenBucket* bucket = bucket_for(rule); bucket != nullptr) {
        rate = rate == 0 ? bucket->rate() : std::min(rate, bucket->rate());
    }
    return rate;
}

}  // namespace sa::agent::egress
