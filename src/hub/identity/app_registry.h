#pragma once
// The app registry: one OAuth client per app. A client secret is generated
// here, returned once to the operator, and stored only as an scrypt hash.
//
// Rotation (issue #5): rotate() issues a new secret and keeps the one it
// replaces valid for an overlap window, so agents can pick up the new secret
// without downtime. At most two secrets are valid: a rotation during an
// overlap drops the oldest one at once. Access tokens already issued stay
// valid until they expire.
//
// Revocation is permanent: a revoked app never gets a token again, and
// is_active() (checked by every API call) turns false at once, so its live
// access tokens stop working. The row stays (jobs and the catalog refer to
// it, and the name is not reused); reconnecting the agent takes a new app.
//
// Key authentication (issue #5, private_key_jwt, RFC 7523): an app created
// with a public key has no client secret at all. It authenticates with a
// client assertion, a JWT it signs with the private half (which never leaves
// the agent). set_key() replaces the key with the same overlap rules as
// rotate(): at most two keys are accepted, the replaced one until its overlap
// ends. An app authenticates either with a secret or with a key, never both.
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/password_hash.h"
#include "common/result.h"
#include "hub/clock/clock.h"
#include "hub/identity/client_key.h"
#include "hub/store/store.h"

namespace sa::hub::identity {

// How an app authenticates at the token endpoint (apps.auth_method).
inline constexpr const char* kAuthClientSecret = "client_secret";
inline constexpr const char* kAuthPrivateKeyJwt = "private_key_jwt";

struct App {
    std::string name;
    std::string client_id;
    int64_t created_at_ms = 0;
    std::optional<int64_t> rotated_at_ms;  // the last rotation
    std::optional<std::string> rotated_by;
    // Until when the secret replaced by the last rotation is still accepted;
    // set only when that time is still ahead (as of the registry's clock).
    std::optional<int64_t> previous_secret_valid_until_ms;
    std::optional<int64_t> revoked_at_ms;
    std::optional<std::string> revoked_by;
    std::string auth_method = kAuthClientSecret;  // kAuthClientSecret | kAuthPrivateKeyJwt

    bool revoked() const { return revoked_at_ms.has_value(); }
    bool uses_key() const { return auth_method == kAuthPrivateKeyJwt; }
};

// A public key of a key app (never anything secret).
struct AppKey {
    std::string thumbprint;  // RFC 7638, the key's kid
    std::string algorithm;   // EdDSA | ES256 | RS256
    int64_t added_at_ms = 0;
    // nullopt: the current key; else the replaced key, accepted until then.
    std::optional<int64_t> valid_until_ms;
};

// What set_key() did.
struct KeyChange {
    App app;
    AppKey key;                      // the new current key
    std::optional<AppKey> previous;  // the replaced key while its overlap runs
    bool dropped_older = false;      // a key still in an earlier overlap stopped at once
};

// How a client assertion is judged beyond its signature and client.
struct AssertionRules {
    // True for an "aud" value that names this hub (the caller knows its
    // issuer and token endpoint URLs). One matching value is enough.
    std::function<bool(std::string_view)> audience_ok;
    // RFC 7523 section 3 wants short-lived assertions: exp may be at most
    // this far ahead of the hub's clock.
    int64_t max_lifetime_seconds = 300;
    // Clock skew tolerated for exp, nbf and iat.
    int64_t leeway_seconds = 30;
};

inline constexpr size_t kMaxAssertionBytes = 8192;
inline constexpr size_t kMaxAssertionJti = 256;

// What `app create` / `app rotate` show the operator once. client_secret is
// secret: it must never be logged or stored.
struct NewApp {
    App app;
    std::string client_secret;
};

// One line of an app's history (never a secret).
struct AppEvent {
    std::string event;  // created | rotated | revoked | key-registered | key-rotated
    int64_t at_ms = 0;
    std::string actor;
    std::string detail;
};

// Longest overlap rotate() accepts: long enough for any change window, short
// enough that a forgotten old secret does not live on for months.
inline constexpr std::chrono::seconds kMaxRotationOverlap{30 * 24 * 3600};
inline constexpr std::chrono::seconds kDefaultRotationOverlap{3600};

class AppRegistry final {
  public:
    // params sets the scrypt cost of new secrets (tests lower it; production
    // keeps the default from password_hash.h).
    AppRegistry(store::Store& store, const clock::Clock& clock,
                crypto::ScryptParams params = crypto::ScryptParams{});

    // actor: who asked (the operator's OS user), recorded in the history.
    // Errors: invalid_argument for a bad name ([A-Za-z0-9_.-]{1,64}),
    // conflict when the app exists, io for storage problems.
    Result<NewApp> create(const std::string& name, const std::string& actor = "unknown");
    // Creates an app that authenticates with private_key_jwt using key (no
    // secret exists). The history records key-registered with the key's
    // type and thumbprint. Errors: as create().
    Result<App> create_with_key(const std::string& name, const ClientPublicKey& key,
                                const std::string& actor = "unknown");
    // Errors: not_found, io.
    Result<App> find(const std::string& name);
    Result<std::vector<App>> list();
    // The app's history, oldest first. Errors: not_found, io.
    Result<std::vector<AppEvent>> events(const std::string& name);

    // Issues a new client secret. The current one stays valid for overlap
    // (0: it stops at once); a secret replaced earlier stops at once.
    // Errors: invalid_argument (overlap outside 0..kMaxRotationOverlap),
    // not_found, conflict (revoked), io.
    Result<NewApp> rotate(const std::string& name, std::chrono::seconds overlap,
                          const std::string& actor);

    // Replaces a key app's key. The current key stays accepted for overlap
    // (0: it stops at once); a key replaced earlier stops at once. Errors:
    // invalid_argument (overlap outside 0..kMaxRotationOverlap, or key is
    // already the current key), not_found, conflict (revoked, or the app
    // uses a client secret), io.
    Result<KeyChange> set_key(const std::string& name, const ClientPublicKey& key,
                              std::chrono::seconds overlap, const std::string& actor);
    // The keys a key app accepts now: the current one first, then the
    // replaced one during its overlap. Empty for secret apps and revoked
    // apps. Errors: not_found, io.
    Result<std::vector<AppKey>> keys(const std::string& name);

    // Revokes the app for good. Errors: not_found, conflict (already
    // revoked), io.
    Result<App> revoke(const std::string& name, const std::string& actor);

    // Checks a client id and secret against the current secret and, during an
    // overlap, the previous one. Every call checks exactly two scrypt hashes
    // (dummies stand in for missing ones), so an unknown client, a revoked
    // app, a wrong secret and an app with or without an overlap all cost the
    // same, and all give the same unauthenticated error: callers cannot probe
    // for client ids or app state. An app that uses a key has no secret and
    // is checked like an unknown client.
    Result<App> authenticate(std::string_view client_id, std::string_view client_secret);

    // Authenticates a private_key_jwt client assertion (RFC 7523 sections
    // 2.2 and 3, OpenID Connect Core section 9): a compact JWS whose alg
    // matches one of the app's accepted keys (EdDSA, ES256, RS256; never
    // "none" or HS*), selected by kid when the header has one; iss == sub ==
    // the app's client_id (and == client_id when the form carried one); aud
    // accepted by rules.audience_ok; exp required and at most
    // rules.max_lifetime_seconds ahead; nbf and iat, when present, not in the
    // future (with leeway); jti required and never seen before for this
    // client while an assertion carrying it could still be valid (the store
    // remembers it; a replay is refused). Only apps that use a key, and are
    // not revoked, pass. Every refusal is unauthenticated; the message says
    // why for the hub's log only (never the assertion itself).
    Result<App> authenticate_assertion(std::string_view assertion,
                                       std::optional<std::string_view> client_id,
                                       const AssertionRules& rules);

    // True when an app with this name and client id exists and is not
    // revoked (tokens of a revoked, deleted or re-created app stop working).
    // One primary-key lookup: cheap enough for every request. Errors: io.
    Result<bool> is_active(const std::string& app, const std::string& client_id);

  private:
    const std::string& dummy_hash();
    Status insert_app(const App& app, const std::string& secret_hash, const ClientPublicKey* key,
                      const std::string& actor);

    store::Store& store_;
    const clock::Clock& clock_;
    crypto::ScryptParams params_;
    // Hashed on first use: commands that never authenticate skip the cost.
    std::once_flag dummy_once_;
    std::string dummy_hash_;
};

}  // namespace sa::hub::identity
