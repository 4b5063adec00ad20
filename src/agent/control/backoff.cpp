#include "agent/control/backoff.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <string>

namespace sa::agent::control {

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap)
    : Backoff(base, cap, std::random_device{}()) {}

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed)
    : base_(base), cap_(cap), rng_(seed) {}

std::chrono::milliseconds Backoff::ceiling() const {
    // base * 2^attempt without overflow: stop doubling once past the cap.
    std::chrono::milliseconds value = base_;
    for (int i = 0; i < attempt_ && value < cap_; ++i) value *= 2;
    return std::min(value, cap_);
}

std::chrono::milliseconds Backoff::next() {
    const auto top = ceiling();
    if (attempt_ < 62) ++attempt_;
    std::uniform_int_distribution<int64_t> pick(0, top.count());
    return std::chrono::milliseconds(pick(rng_));
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, int64_t now,
                                                      std::chrono::seconds max) {
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        int64_t seconds = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
        if (ec == std::errc::result_out_of_range) return max;
        if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
        return std::min(std::chrono::seconds(seconds), max);
    }
    // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    std::tm tm{};
    const std::string text(value);
    const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == nullptr || *end != '\0') return std::nullopt;
    const int64_t at = ::timegm(&tm);
    if (at <= now) return std::chrono::seconds(0);
    return std::min(std::chrono::seconds(at - now), max);
}

}  // namespace sa::agent::control
