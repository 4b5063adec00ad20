#pragma once
// Cryptographically secure randomness (OpenSSL's DRBG).
#include <string>

namespace sa::crypto {

std::string random_bytes(size_t count);
// count random bytes as unpadded base64url: ids, secrets, nonces.
std::string random_token(size_t count);
// RFC 9562 version 4 UUID in its canonical text form.
std::string uuid_v4();

}  // namespace sa::crypto
