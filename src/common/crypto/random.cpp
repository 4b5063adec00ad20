#include "common/crypto/random.h"

#include <openssl/rand.h>

#include <stdexcept>

#include "common/crypto/encoding.h"

namespace sa::crypto {

std::string random_bytes(size_t count) {
    std::string out(count, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1) {
        // No randomness means no safe keys or ids: a broken invariant.
        throw std::runtime_error("RAND_bytes failed");
    }
    return out;
}

std::string random_token(size_t count) {
    return base64url_encode(random_bytes(count));
}

std::string uuid_v4() {
    std::string b = random_bytes(16);
    b[6] = static_cast<char>((static_cast<unsigned char>(b[6]) & 0x0F) | 0x40);
    b[8] = static_cast<char>((static_cast<unsigned char>(b[8]) & 0x3F) | 0x80);
    std::string h = hex_encode(b);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
           "-" + h.substr(20);
}

}  // namespace sa::crypto
