#pragma once
// OAuth 2.0 client credentials grant (RFC 6749 section 4.4): the agent's
// access tokens for the hub (docs/protocol.md section 1) and for other
// OAuth servers (e.g. a secret store's identity provider).
//
// Client authentication (Options::auth_method):
// - client_secret_basic (default; RFC 6749 section 2.3.1): HTTP Basic with the
//   form-urlencoded client id and secret.
// - client_secret_post (section 2.3.1): client_id and client_secret in the
//   form body. The body buffer is a SecretValue (wiped after the request).
// - private_key_jwt (RFC 7523 sections 2.2 and 3, OpenID Connect Core
//   section 9): client_secret names a PEM private key (RSA, EC P-256 or
//   Ed25519, see jwt_assertion.h); each request carries a fresh assertion
//   {iss = sub = client_id, aud = token_url, jti random, iat = nbf = now,
//   exp = now + 60}, header kid = Options::key_id when set.
//
// Caching and expiry:
// - The credential (secret or key) is read through the CredentialReader just
//   in time for each token request and wiped right after; never cached.
// - The access token is cached until refresh_margin before it expires (60 s,
//   or half the lifetime for short tokens). Lifetime: expires_in, else the
//   JWT's exp corrected for clock skew, else 5 minutes (token_lifetime.h).
//   If an early refresh fails, the cached token is used until it really
//   expires.
// - invalidate() (on a 401 from the resource server) drops the cached token,
//   so the next call re-reads the credential: rotation without restart.
//
// Thread-safe: one TokenClient may be shared by several threads. At most one
// token request runs at a time; callers arriving while it runs get the
// still-valid cached token if there is one, else wait for that request's
// result (token or error) instead of sending their own. The transport is
// only ever used by one thread of this class at a time.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/auth/clock.h"
#include "agent/egress/http.h"
#include "agent/secrets/secret_store.h"

namespace sa::agent::auth {

// What a client of a resource server needs from a token provider (a test
// seam; also implemented by the secret stores' cloud token sources).
class TokenSource {
  public:
    virtual ~TokenSource() = default;
    // A valid access token, as the caller's own copy. Errors: unauthenticated
    // when the server rejects the client credentials, unavailable for
    // transient failures, credential read errors as reported by the store.
    virtual Result<secrets::SecretValue> access_token() = 0;
    // Drops the cached token (after the resource server answered 401).
    virtual void invalidate() = 0;
};

// What the audit hooks see of a token request (no token, no secret).
struct TokenEvent {
    bool fetched = false;  // true: token issued; false: the server refused or sent garbage
    std::string client_id;
    int64_t expires_in = 0;  // when fetched: the lifetime used (see token_lifetime.h)
    std::string reason;      // when refused
};

enum class ClientAuthMethod { client_secret_basic, client_secret_post, private_key_jwt };

// "client_secret_basic" / "client_secret_post" / "private_key_jwt" (the
// OAuth registry names, RFC 7591 section 2); invalid_argument otherwise.
Result<ClientAuthMethod> parse_client_auth_method(std::string_view name);
const char* to_string(ClientAuthMethod method);

class TokenClient final : public TokenSource {
  public:
    struct Options {
        std::string token_url;  // e.g. hub.url + "/oauth2/token"
        std::string client_id;
        // The client secret; for private_key_jwt, the PEM private key.
        secrets::SecretRef client_secret;
        ClientAuthMethod auth_method = ClientAuthMethod::client_secret_basic;
        std::string key_id;  // private_key_jwt: the JWT header's kid (optional)
        std::string scope;   // optional "scope" form parameter
        // Further form parameters some servers need (resource, audience).
        std::vector<std::pair<std::string, std::string>> extra_form;
        int64_t refresh_margin_seconds = 60;
        std::chrono::milliseconds timeout{30'000};
        egress::ResponseObserver observer;  // optional, called with endpoint "token"
        // Optional audit hook, so auth does not depend on the audit library:
        // runs after each answer from the server (not for transport errors).
        // Credential reads are audited by the CredentialReader (the agent's
        // SecretStores).
        std::function<void(const TokenEvent&)> on_token;
        // Names the server in messages ("hub rejected client credentials ...").
        std::string server_name = "hub";
    };

    // transport, clock (and whatever read_credential refers to) must outlive
    // the TokenClient. Does no I/O.
    TokenClient(egress::Transport& transport, secrets::CredentialReader read_credential,
                Options options, const Clock& clock);
    // The same, owning its transport (for a component that owns its client,
    // e.g. a secret store behind an OAuth identity provider).
    TokenClient(std::unique_ptr<egress::Transport> transport,
                secrets::CredentialReader read_credential, Options options, const Clock& clock);

    Result<secrets::SecretValue> access_token() override;
    void invalidate() override;

    bool has_token() const;
    // When the cached token will be refreshed (Unix seconds); 0 without a token.
    int64_t refresh_at() const;

  private:
    struct Fetched {
        secrets::SecretValue token;
        int64_t refresh_at = 0;
        int64_t expires_at = 0;
    };
    // The outcome of one token request, shared with the callers that waited for it.
    struct Round {
        bool done = false;
        std::optional<secrets::SecretValue> token;
        std::optional<Error> error;
    };

    // One token request; touches no mutable member (runs without the lock).
    Result<Fetched> fetch() const;
    Result<secrets::SecretValue> request_body(std::optional<secrets::SecretValue>& basic) const;

    std::unique_ptr<egress::Transport> owned_transport_;
    egress::Transport& transport_;
    secrets::CredentialReader read_credential_;
    const Options options_;
    const Clock& clock_;

    mutable std::mutex mutex_;
    std::condition_variable round_done_;
    // Guarded by mutex_:
    std::optional<secrets::SecretValue> token_;
    int64_t refresh_at_ = 0;
    int64_t expires_at_ = 0;
    uint64_t epoch_ = 0;                // bumped by invalidate()
    std::shared_ptr<Round> in_flight_;  // the running token request, if any
};

}  // namespace sa::agent::auth
