#pragma once
// SecretValue: the only type that holds a secret (client secret, access
// token, database password) in the agent.
//
// Contract:
// - Move-only. There is no copy, no operator<<, no formatter and no implicit
//   conversion: the bytes leave only through reveal(), so every use is
//   visible in review.
// - The bytes live in their own anonymous mapping (page aligned), locked into
//   RAM with mlock (so they are not swapped out) and marked MADV_DONTDUMP
//   (so they are not in core dumps). If mlock fails (RLIMIT_MEMLOCK), the
//   value still works and locked() reports false.
// - On destruction, move-from and assignment the bytes are wiped with
//   OPENSSL_cleanse before the mapping is released.
// - While alive, the value is known to redact_live_secrets() below.
// Not thread-safe: like a std::string, one owner at a time.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace sa::agent::secrets {

class SecretValue final {
  public:
    SecretValue() = default;
    ~SecretValue();

    SecretValue(SecretValue&& other) noexcept;
    SecretValue& operator=(SecretValue&& other) noexcept;
    SecretValue(const SecretValue&) = delete;
    SecretValue& operator=(const SecretValue&) = delete;

    // Takes the bytes of s and wipes s (its whole capacity) afterwards.
    static SecretValue from(std::string&& s);
    // Copies bytes that the caller wipes itself (e.g. a protected buffer).
    static SecretValue copy_of(std::string_view bytes);

    // The only accessor. The view is valid while this value is alive and not
    // moved from; do not store it.
    std::string_view reveal() const { return {data_, size_}; }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    // False when mlock failed for this value (it still works, but may be swapped).
    bool locked() const { return locked_; }

    // Test seam: called with the mapping's bytes right after they were wiped
    // and right before munmap, so a test can prove the wipe happened. Never
    // set outside tests. Not thread-safe with concurrent releases.
    using ReleaseObserver = void (*)(const unsigned char* bytes, size_t length);
    static void set_release_observer_for_testing(ReleaseObserver observer);

  private:
    void release() noexcept;

    char* data_ = nullptr;
    size_t size_ = 0;
    size_t mapped_ = 0;
    bool locked_ = false;
};

// Wipes a std::string's whole buffer (not just size()) and clears it. For
// temporaries that held secret bytes before they became a SecretValue.
void wipe(std::string& s) noexcept;

// Defence in depth behind the type: replaces every occurrence in text of a
// live SecretValue's bytes with "[REDACTED]" (the log sink runs every line
// through it). Values shorter than kMinRedactedLength are not searched for:
// they would mangle ordinary text and are no secret worth the name. When
// encode is set, the encoded form of each value (e.g. JSON-escaped) is
// replaced too; encode returns "" when the encoding changes nothing, and
// must build its result without leaving copies (it is wiped after use).
// Thread-safe; returns true when anything was replaced.
inline constexpr size_t kMinRedactedLength = 6;
bool redact_live_secrets(std::string& text,
                         const std::function<std::string(std::string_view)>& encode = {});

}  // namespace sa::agent::secrets
