#pragma once
// Access tokens for a service-account key (the JSON downloaded from IAM),
// with the JWT bearer authorization grant (RFC 7523 section 2.1) as Google's
// OAuth 2.0 server-to-server flow describes it:
//   POST {token_uri}  (form)
//   grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=JWT
// where JWT is RS256-signed (header kid = private_key_id) over
//   {"iss": client_email, "scope": SCOPE, "aud": token_uri, "iat": now,
//    "exp": now + 3600}.
//
// Just in time: the key JSON is read through the CredentialReader at every
// token exchange and wiped right after signing; only the access token is
// cached (refreshed 5 minutes before expiry, see RefreshingTokenSource).
// token_uri comes from the key (default https://oauth2.googleapis.com/token).
//
// Errors: the reader's error for an unreadable key (code kept, message names
// the reference); invalid_argument for a key JSON that is not a service
// account key (never quoting it); OAuth errors invalid_grant,
// invalid_client, unauthorized_client, access_denied -> permission_denied,
// other 400s -> invalid_argument; HTTP statuses per http_store_error.
// Token requests are serialised by RefreshingTokenSource.
#include <chrono>
#include <memory>
#include <string>

#include "agent/egress/http.h"
#include "agent/secrets/gcp/gcp_settings.h"
#include "agent/secrets/gcp/gcp_token.h"

namespace sa::agent::secrets::gcp {

inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";
inline constexpr int64_t kAssertionLifetimeSeconds = 3600;  // Google's maximum

class ServiceAccountTokenSource final : public RefreshingTokenSource {
  public:
    // Does no I/O. Errors: invalid_argument naming the setting (auth.key
    // missing, auth.scope empty). clock must outlive the source.
    static Result<std::unique_ptr<ServiceAccountTokenSource>> create(
        const GcpAuthSettings& settings, std::chrono::milliseconds timeout,
        std::unique_ptr<egress::Transport> transport, CredentialReader read_credential,
        const auth::Clock& clock);

  private:
    ServiceAccountTokenSource(SecretRef key, std::string scope, std::chrono::milliseconds timeout,
                              std::unique_ptr<egress::Transport> transport,
                              CredentialReader read_credential, const auth::Clock& clock);
    Result<AccessToken> fetch() override;

    SecretRef key_;
    std::string scope_;
    std::string where_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<egress::Transport> transport_;
    CredentialReader read_credential_;
};

}  // namespace sa::agent::secrets::gcp
