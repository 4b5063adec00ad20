#pragma once
// Wall-clock helpers. Time on the wire is integer Unix seconds (JWT claims)
// or RFC 3339 UTC with milliseconds (records meant for people).
#include <cstdint>
#include <string>

namespace sa::util {

int64_t unix_seconds();
int64_t unix_millis();
int64_t unix_micros();
std::string rfc3339_millis(int64_t unix_ms);

}  // namespace sa::util
