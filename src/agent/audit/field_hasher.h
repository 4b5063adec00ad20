#pragma once
// FieldHasher: turns a sensitive value (user name, source host name, secret
// path) into "hmac-sha256:" + base64(HMAC-SHA256(salt, value)), so a known
// value can be searched for in the log (`secure-agent audit hash VALUE`) but
// cannot be read from it. The salt is 32 random bytes in DIR/hmac.salt (0600),
// one per deployment, created on first start.
//
// Seam: a later increment will accept a secret-store reference for the salt;
// it only needs another factory here.
#include <string>
#include <string_view>

#include "common/result.h"

namespace sa::agent::audit {

inline constexpr const char* kHmacPrefix = "hmac-sha256:";

class FieldHasher final {
  public:
    // Reads DIR/hmac.salt, creating it (and DIR, mode 0700) when absent.
    static Result<FieldHasher> load_or_create(const std::string& dir);
    // Reads DIR/hmac.salt; not_found when absent (the CLI never creates one).
    static Result<FieldHasher> load(const std::string& dir);

    FieldHasher(FieldHasher&& other) noexcept : salt_(std::move(other.salt_)) {}
    FieldHasher& operator=(FieldHasher&&) = delete;
    FieldHasher(const FieldHasher&) = delete;
    FieldHasher& operator=(const FieldHasher&) = delete;
    ~FieldHasher();  // wipes the salt

    std::string hash(std::string_view value) const;

  private:
    explicit FieldHasher(std::string salt) : salt_(std::move(salt)) {}
    std::string salt_;
};

}  // namespace sa::agent::audit
