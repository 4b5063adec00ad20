#include "hub/identity/token_service.h"

#include <algorithm>

#include "common/crypto/random.h"
#include "common/jose/jws.h"
#include "common/protocol/protocol.h"

namespace sa::hub::identity {

TokenService::TokenService(crypto::Ed25519PrivateKey signing_key, const clock::Clock& clock,
                           int lifetime_seconds)
    : key_(std::move(signing_key)),
      public_key_(key_.public_key()),
      key_id_(public_key_.key_id()),
      clock_(clock),
      lifetime_seconds_(
          std::clamp(lifetime_seconds, kMinAccessTokenLifetime, kMaxAccessTokenLifetime)) {}

IssuedToken TokenService::issue(const App& app) const {
    int64_t iat = clock_.now_seconds();
    std::string jti = crypto::random_token(16);
    nlohmann::json claims = {
        {"iss", protocol::kIssuer},
        {"aud", protocol::kTokenAudience},
        {"sub", app.client_id},
        {"client_id", app.client_id},
        {"app", app.name},
        {"iat", iat},
        {"exp", iat + lifetime_seconds_},
        {"jti", jti},
    };
    return IssuedToken{jose::sign(key_, key_id_, protocol::kAccessTokenType, claims),
                       lifetime_seconds_, jti};
}

Result<Principal> TokenService::verify(std::string_view token) const {
    // Bound the work an unauthenticated caller can cause.
    if (token.empty() || token.size() > 8192) {
        return fail(ErrorCode::unauthenticated, "access token is missing or too long");
    }
    auto jws = jose::verify(token, public_key_);
    if (!jws) return fail(ErrorCode::unauthenticated, "access token: " + jws.error().message);
    auto kid = jws->header.find("kid");
    if (kid == jws->header.end() || !kid->is_string() || *kid != key_id_) {
        return fail(ErrorCode::unauthenticated, "access token names an unknown key");
    }
    auto claims = jose::check_claims(*jws, jose::ClaimRules{
                                               .issuer = protocol::kIssuer,
                                               .audience = protocol::kTokenAudience,
                                               .type = protocol::kAccessTokenType,
                                               .now = clock_.now_seconds(),
                                               .leeway_seconds = 0,
                                               .require_jti = true,
                                           });
    if (!claims) {
        ErrorCode code = claims.error().code == ErrorCode::expired ? ErrorCode::expired
                                                                   : ErrorCode::unauthenticated;
        return fail(code, "access token: " + claims.error().message);
    }
    const auto& p = jws->payload;
    auto text = [&](const char* name) -> std::string {
        auto it = p.find(name);
        return it != p.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    Principal out{text("client_id"), text("app"), p.at("exp").get<int64_t>()};
    if (out.client_id.empty() || out.app.empty() || text("sub") != out.client_id) {
        return fail(ErrorCode::unauthenticated, "access token lacks client_id, sub or app");
    }
    return out;
}

}  // namespace sa::hub::identity
