#pragma once
// JWS compact serialization (RFC 7515) with the EdDSA algorithm (RFC 8037),
// and the JWT claim checks (RFC 7519) the agent and hub rely on.
//
// Only "EdDSA" is accepted: a token naming any other algorithm (including
// "none") is refused before any signature work.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::jose {

struct Jws {
    nlohmann::json header;
    nlohmann::json payload;
};

// Signs payload (a JSON object) with header {"alg":"EdDSA","kid":kid,"typ":typ}.
std::string sign(const crypto::Ed25519PrivateKey& key, std::string_view kid, std::string_view typ,
                 const nlohmann::json& payload);

// Lower-level: signature over "BASE64URL(header).BASE64URL(payload)".
std::string sign_compact(const crypto::Ed25519PrivateKey& key, std::string_view header_json,
                         std::string_view payload_json);

// Splits and decodes without verifying; for reading the "kid" to choose a key.
Result<Jws> decode_unverified(std::string_view compact);

// Verifies the signature with key. Errors: invalid_argument for malformed
// input, integrity for a wrong algorithm or a bad signature.
Result<Jws> verify(std::string_view compact, const crypto::Ed25519PublicKey& key);

struct ClaimRules {
    std::string issuer;    // required "iss" value; empty = not checked
    std::string audience;  // required to appear in "aud" (string or array)
    std::string type;      // required header "typ"; empty = not checked
    int64_t now = 0;       // Unix seconds
    int64_t leeway_seconds = 60;
    bool require_jti = true;
};

// Checks exp (required), nbf/iat (if present, with leeway), iss, aud, typ, jti.
// Errors: expired for exp/nbf, permission_denied for aud/iss/typ, invalid_argument for missing
// claims.
Status check_claims(const Jws& jws, const ClaimRules& rules);

}  // namespace sa::jose
