#include "agent/auth/token_lifetime.h"

#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/secrets/json_wipe.h"
#include "common/crypto/encoding.h"

namespace sa::agent::auth {
namespace {

constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Exactly count ASCII digits at text[pos...]; -1 otherwise.
int digits(std::string_view text, size_t pos, size_t count) {
    int value = 0;
    for (size_t i = pos; i < pos + count; ++i) {
        if (text[i] < '0' || text[i] > '9') return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

template <size_t N>
int index_of(const std::array<std::string_view, N>& names, std::string_view name) {
    for (size_t i = 0; i < N; ++i) {
        if (names[i] == name) return static_cast<int>(i);
    }
    return -1;
}

}  // namespace

std::optional<int64_t> parse_imf_fixdate(std::string_view text) {
    // "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, fixed positions.
    if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' ||
        text[16] != ' ' || text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT") {
        return std::nullopt;
    }
    const int day_name = index_of(kDays, text.substr(0, 3));
    const int month = index_of(kMonths, text.substr(8, 3));
    const int day = digits(text, 5, 2);
    const int year = digits(text, 12, 4);
    const int hour = digits(text, 17, 2);
    const int minute = digits(text, 20, 2);
    const int second = digits(text, 23, 2);
    // RFC 9110 allows second 60 (a leap second); it is read as the next second.
    if (day_name < 0 || month < 0 || day < 0 || year < 0 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 60) {
        return std::nullopt;
    }
    using namespace std::chrono;
    const year_month_day date{std::chrono::year{year},
                              std::chrono::month{static_cast<unsigned>(month + 1)},
                              std::chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok()) return std::nullopt;
    const sys_days days{date};
    if (weekday{days}.c_encoding() != static_cast<unsigned>(day_name)) return std::nullopt;
    return days.time_since_epoch().count() * int64_t{86400} + hour * 3600 + minute * 60 + second;
}

std::optional<int64_t> jwt_remaining_lifetime(std::string_view token,
                                              std::optional<int64_t> server_now,
                                              int64_t local_now) {
    const size_t first = token.find('.');
    if (first == std::string_view::npos) return std::nullopt;
    const size_t second = token.find('.', first + 1);
    if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
        return std::nullopt;
    }
    auto payload = crypto::base64url_decode(token.substr(first + 1, second - first - 1));
    if (!payload) return std::nullopt;
    // The claims are part of a bearer token: wipe what was decoded.
    nlohmann::json claims = nlohmann::json::parse(*payload, nullptr, false);
    secrets::wipe(*payload);
    std::optional<int64_t> exp;
    std::optional<int64_t> iat;
    if (claims.is_object()) {
        if (auto it = claims.find("exp"); it != claims.end() && it->is_number_integer()) {
            exp = it->get<int64_t>();
        }
        if (auto it = claims.find("iat"); it != claims.end() && it->is_number_integer()) {
            iat = it->get<int64_t>();
        }
    }
    secrets::wipe_json(claims);
    // Out-of-range times (before 1970, after year ~36800) are garbage and
    // must not overflow the subtraction below.
    constexpr int64_t kMaxTime = int64_t{1} << 40;
    const auto sane = [](std::optional<int64_t> t) { return !t || (*t >= 0 && *t < kMaxTime); };
    if (!exp || !sane(exp) || !sane(iat) || !sane(server_now)) return std::nullopt;
    const int64_t now = server_now ? *server_now : iat ? *iat : local_now;
    return *exp - now;
}

}  // namespace sa::agent::auth
