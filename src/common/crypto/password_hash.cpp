#include "common/crypto/password_hash.h"

#include <openssl/evp.h>

#include <charconv>
#include <stdexcept>
#include <vector>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"

namespace sa::crypto {
namespace {

constexpr size_t kHashLen = 32;
constexpr uint64_t kMaxMem = 256ull * 1024 * 1024;

bool derive(std::string_view password, std::string_view salt, const ScryptParams& p,
            std::string& out) {
    out.assign(kHashLen, '\0');
    return EVP_PBE_scrypt(password.data(), password.size(),
                          reinterpret_cast<const unsigned char*>(salt.data()), salt.size(), p.n,
                          p.r, p.p, kMaxMem, reinterpret_cast<unsigned char*>(out.data()),
                          out.size()) == 1;
}

}  // namespace

std::string hash_password(std::string_view password, const ScryptParams& params) {
    std::string salt = random_bytes(16);
    std::string hash;
    if (!derive(password, salt, params, hash)) throw std::runtime_error("scrypt failed");
    return "scrypt$" + std::to_string(params.n) + "$" + std::to_string(params.r) + "$" +
           std::to_string(params.p) + "$" + base64url_encode(salt) + "$" + base64url_encode(hash);
}

bool verify_password(std::string_view password, std::string_view stored) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (size_t i = 0; i <= stored.size(); ++i) {
        if (i == stored.size() || stored[i] == '$') {
            parts.push_back(stored.substr(start, i - start));
            start = i + 1;
        }
    }
    if (parts.size() != 6 || parts[0] != "scrypt") return false;
    ScryptParams p;
    auto num = [](std::string_view s, uint64_t& v) {
        auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        return r.ec == std::errc() && r.ptr == s.data() + s.size();
    };
    if (!num(parts[1], p.n) || !num(parts[2], p.r) || !num(parts[3], p.p)) return false;
    if (p.n > (1u << 20) || p.r > 32 || p.p > 16) return false;  // refuse absurd stored cost
    auto salt = base64url_decode(parts[4]);
    auto expected = base64url_decode(parts[5]);
    if (!salt || !expected) return false;
    std::string got;
    if (!derive(password, *salt, p, got)) return false;
    return equal_constant_time(got, *expected);
}

}  // namespace sa::crypto
