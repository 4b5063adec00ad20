#pragma once
// How long an access token from a token endpoint may be used, when the
// answer does not say so with expires_in (RFC 6749 section 5.1 makes it
// only RECOMMENDED).
//
// The rule (in TokenClient's order):
// 1. expires_in in the answer: that many seconds from just before the request.
// 2. Else, an access token that is a JWT with an integer "exp" claim (read
//    without verifying: the token is not ours to verify): exp minus the
//    SERVER's current time, applied to our clock. The server's time is the
//    response's Date header (RFC 9110 section 5.6.7, IMF-fixdate) when it
//    parses, else the token's "iat", else our own clock (no correction).
//    Measuring the remaining lifetime on the server's clock cancels a skew
//    between the two clocks.
// 3. Else kDefaultLifetimeSeconds (5 minutes): short enough that a token the
//    server gave a shorter life is replaced soon (and a 401 invalidates it
//    anyway), long enough not to hammer the endpoint.
#include <cstdint>
#include <optional>
#include <string_view>

namespace sa::agent::auth {

inline constexpr int64_t kDefaultLifetimeSeconds = 300;

// Unix seconds of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); nullopt
// for anything else (the obsolete RFC 850 and asctime forms are not
// accepted: a wrong guess is worse than none). Strict: exact layout, valid
// calendar date, day name matching the date.
std::optional<int64_t> parse_imf_fixdate(std::string_view text);

// What a JWT access token says about its remaining lifetime (rule 2 above).
// nullopt when token is not a JWT with an integer exp claim.
// server_now: the Date header's time, if any; local_now: our clock.
// The result may be <= 0 (already expired by the server's clock).
std::optional<int64_t> jwt_remaining_lifetime(std::string_view token,
                                              std::optional<int64_t> server_now, int64_t local_now);

}  // namespace sa::agent::auth
