#pragma once
// Access tokens: JWTs (RFC 9068 profile) signed with the hub's token-signing
// Ed25519 key. Header {"alg":"EdDSA","kid":KID,"typ":"at+jwt"}; claims iss and
// aud "agent-hub", sub and client_id, app, iat, exp = iat + lifetime (900 s
// unless the operator chose another with `serve --access-token-lifetime`),
// jti.
//
// Thread safety: const methods are safe from any thread.
#include <string>
#include <string_view>

#include "common/crypto/ed25519.h"
#include "common/protocol/protocol.h"
#include "common/result.h"
#include "hub/clock/clock.h"
#include "hub/identity/app_registry.h"

namespace sa::hub::identity {

// Bounds of a configured access-token lifetime. Short lifetimes make agents
// re-read their client secret often (tests of rotation use that); revocation
// does not depend on it (every request checks the app).
inline constexpr int kMinAccessTokenLifetime = 5;
inline constexpr int kMaxAccessTokenLifetime = 3600;

struct IssuedToken {
    std::string access_token;  // secret: never log it
    int expires_in = 0;        // seconds
    std::string jti;           // safe to log
};

// Who a verified token speaks for.
struct Principal {
    std::string client_id;
    std::string app;
    int64_t expires_at = 0;  // Unix seconds
};

class TokenService final {
  public:
    // lifetime_seconds: kMinAccessTokenLifetime..kMaxAccessTokenLifetime
    // (values outside are clamped: a broken invariant must not mint tokens
    // that never expire).
    TokenService(crypto::Ed25519PrivateKey signing_key, const clock::Clock& clock,
                 int lifetime_seconds = protocol::kAccessTokenLifetimeSeconds);

    IssuedToken issue(const App& app) const;

    // Checks signature (with this service's public key), kid, typ, iss, aud,
    // exp (no leeway: the hub issued the token with its own clock), and the
    // presence of client_id and app. It does NOT check that the app still
    // exists; callers do that with AppRegistry::is_active.
    // Errors: unauthenticated (malformed, forged, wrong type) or expired.
    Result<Principal> verify(std::string_view token) const;

    const crypto::Ed25519PublicKey& public_key() const { return public_key_; }
    const std::string& key_id() const { return key_id_; }
    int lifetime_seconds() const { return lifetime_seconds_; }

  private:
    crypto::Ed25519PrivateKey key_;
    crypto::Ed25519PublicKey public_key_;
    std::string key_id_;
    const clock::Clock& clock_;
    int lifetime_seconds_;
};

}  // namespace sa::hub::identity
