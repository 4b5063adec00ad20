#pragma once
// SHA-256 and HMAC-SHA256 over byte strings (OpenSSL EVP).
#include <string>
#include <string_view>

namespace sa::crypto {

// 32 raw bytes.
std::string sha256(std::string_view data);
std::string sha256_hex(std::string_view data);

// Incremental SHA-256 for data that arrives in pieces (files, streams).
class Sha256 final {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(std::string_view data);
    std::string finish();  // 32 raw bytes; the object is spent afterwards
  private:
    struct State;
    State* state_;
};

// Constant-time comparison for digests and tokens.
bool equal_constant_time(std::string_view a, std::string_view b);

}  // namespace sa::crypto
