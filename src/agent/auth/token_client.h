#pragma once
// OAuth 2.0 client credentials (RFC 6749 section 4.4) against the hub's
// token endpoint (docs/protocol.md section 1), with client_secret_basic.
//
// - The client secret is read from its secret store just in time for each
//   token request and released (wiped) right after; it is never cached.
// - The access token is cached as a SecretValue until refresh_margin before
//   its expiry (60 s, or half the lifetime for very short tokens). If that
//   early refresh fails, the cached token is used until it really expires.
// - invalidate() (called on a 401 from the hub) drops the cached token, so
//   the next call re-reads the client secret: rotation without restart.
// Not thread-safe: one TokenClient per control loop.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "agent/auth/clock.h"
#include "agent/egress/http.h"
#include "agent/secrets/secret_stores.h"

namespace sa::agent::auth {

// What the hub client needs from a token provider (a test seam).
class TokenSource {
  public:
    virtual ~TokenSource() = default;
    // A valid access token; the pointer stays valid until the next call to
    // access_token() or invalidate(). Errors: unauthenticated when the hub
    // rejects the client credentials, unavailable for transient failures,
    // secret store errors as reported by the store.
    virtual Result<const secrets::SecretValue*> access_token() = 0;
    virtual void invalidate() = 0;
};

// What the audit hooks see of a token request (no token, no secret).
struct TokenEvent {
    bool fetched = false;  // true: token issued; false: the hub refused or sent garbage
    std::string client_id;
    int64_t expires_in = 0;  // when fetched
    std::string reason;      // when refused
};

class TokenClient final : public TokenSource {
  public:
    struct Options {
        std::string token_url;  // hub.url + "/oauth2/token"
        std::string client_id;
        secrets::SecretRef client_secret;
        int64_t refresh_margin_seconds = 60;
        std::chrono::milliseconds timeout{30'000};
        egress::ResponseObserver observer;  // optional
        // Optional audit hooks, so auth does not depend on the audit library.
        // on_token runs after each answer from the hub (not for transport
        // errors); on_secret_read after the client secret was read (the ref
        // only: the value never leaves this class).
        std::function<void(const TokenEvent&)> on_token;
        std::function<void(const secrets::SecretRef&, std::string_view purpose)> on_secret_read;
    };

    // All references must outlive the TokenClient. Does no I/O.
    TokenClient(egress::Transport& transport, const secrets::SecretStores& stores, Options options,
                const Clock& clock);

    Result<const secrets::SecretValue*> access_token() override;
    void invalidate() override;

    bool has_token() const { return token_.has_value(); }
    // When the cached token will be refreshed (Unix seconds); 0 without a token.
    int64_t refresh_at() const { return refresh_at_; }

  private:
    Status fetch();

    egress::Transport& transport_;
    const secrets::SecretStores& stores_;
    Options options_;
    const Clock& clock_;
    std::optional<secrets::SecretValue> token_;
    int64_t refresh_at_ = 0;
    int64_t expires_at_ = 0;
};

}  // namespace sa::agent::auth
