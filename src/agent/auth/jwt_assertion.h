#pragma once
// sign_jwt: a compact JWS (RFC 7515) over a JSON claims set, signed with a
// PEM private key held in a SecretValue. Used for OAuth client assertions
// (private_key_jwt, RFC 7523 section 2.2) and service-account grants.
//
// Contract:
// - private_key_pem: a PEM private key, PKCS#8 ("PRIVATE KEY") or traditional
//   ("RSA PRIVATE KEY", "EC PRIVATE KEY"); unencrypted (an encrypted key is
//   refused, never prompted for).
// - The algorithm follows the key (RFC 7518 section 3): RSA (>= 2048 bits)
//   -> RS256 (PKCS#1 v1.5, SHA-256); EC P-256 -> ES256 (signature is raw
//   r||s, 64 bytes, section 3.4); Ed25519 -> EdDSA (RFC 8037).
// - Header: {"alg":...,"typ":"JWT"} plus "kid" when kid is not empty.
// - claims must be a JSON object; it is serialised as is (the caller sets
//   iss/sub/aud/exp/...).
// - Errors: invalid_argument for an unreadable, encrypted or unsupported key
//   or a non-object claims set; internal when OpenSSL fails to sign. Error
//   messages never quote the key.
// - The PEM is parsed straight from the SecretValue's memory (a read-only
//   memory BIO): no copy of the key text is made. Thread-safe.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::auth {

Result<std::string> sign_jwt(const nlohmann::json& claims,
                             const secrets::SecretValue& private_key_pem,
                             std::string_view kid = {});

}  // namespace sa::agent::auth
