#pragma once
// Slow password hashing for stored client secrets: scrypt (RFC 7914) with a
// random 16-byte salt. Stored form: "scrypt$N$r$p$SALT$HASH" (base64url).
#include <string>
#include <string_view>

namespace sa::crypto {

struct ScryptParams {
    uint64_t n = 1 << 15;  // ~32 MiB and ~50-100 ms per check on one core
    uint64_t r = 8;
    uint64_t p = 1;
};

std::string hash_password(std::string_view password, const ScryptParams& params = {});
// False on mismatch or on a malformed stored hash.
bool verify_password(std::string_view password, std::string_view stored);

}  // namespace sa::crypto
