#include "agent/auth/jwt_assertion.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <climits>
#include <cstring>
#include <memory>

#include "agent/secrets/private_key_pem.h"
#include "common/crypto/encoding.h"
#include "common/crypto/openssl_ptr.h"

namespace sa::agent::auth {
namespace {

struct EcdsaSigFree {
    void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

enum class Alg { rs256, es256, eddsa };

const char* alg_name(Alg alg) {
    switch (alg) {
        case Alg::rs256:
            return "RS256";
        case Alg::es256:
            return "ES256";
        case Alg::eddsa:
            return "EdDSA";
    }
    return "";
}

Result<Alg> algorithm_for(EVP_PKEY* key) {
    switch (EVP_PKEY_get_base_id(key)) {
        case EVP_PKEY_RSA:
            if (EVP_PKEY_get_bits(key) < 2048) {
                return fail(ErrorCode::invalid_argument,
                            "RSA private key is shorter than 2048 bits (refused)");
            }
            return Alg::rs256;
        case EVP_PKEY_EC: {
            char group[64] = {};
            size_t length = 0;
            if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1 ||
                std::strcmp(group, SN_X9_62_prime256v1) != 0) {
                ERR_clear_error();
                return fail(ErrorCode::invalid_argument,
                            "EC private key is not on curve P-256 (only ES256 is supported)");
            }
            return Alg::es256;
        }
        case EVP_PKEY_ED25519:
            return Alg::eddsa;
        default:
            return fail(ErrorCode::invalid_argument,
                        "unsupported private key type (RSA, EC P-256 or Ed25519 expected)");
    }
}

// ECDSA signatures come DER-encoded from OpenSSL; JWS wants r||s, each
// left-padded to the curve size (RFC 7518 section 3.4).
Result<std::string> der_to_raw_ecdsa(std::string_view der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig) {
        ERR_clear_error();
        return fail(ErrorCode::internal, "cannot decode the ECDSA signature");
    }
    const BIGNUM* r = nullptr;
    const BIGNUM* s = nullptr;
    ECDSA_SIG_get0(sig.get(), &r, &s);
    std::string raw(64, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    if (BN_bn2binpad(r, out, 32) != 32 || BN_bn2binpad(s, out + 32, 32) != 32) {
        return fail(ErrorCode::internal, "ECDSA signature component too large");
    }
    return raw;
}

Result<std::string> sign_input(EVP_PKEY* key, Alg alg, std::string_view input) {
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) return fail(ErrorCode::internal, "cannot allocate a digest context");
    // Ed25519 signs the message itself (no pre-hash): the digest must be null.
    const EVP_MD* md = alg == Alg::eddsa ? nullptr : EVP_sha256();
    const auto* data = reinterpret_cast<const unsigned char*>(input.data());
    size_t length = 0;
    if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &length, data, input.size()) != 1) {
        return fail(ErrorCode::internal, "cannot sign the JWT: " + crypto::openssl_error());
    }
    std::string signature(length, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, data,
                       input.size()) != 1) {
        return fail(ErrorCode::internal, "cannot sign the JWT: " + crypto::openssl_error());
    }
    signature.resize(length);
    if (alg == Alg::es256) return der_to_raw_ecdsa(signature);
    return signature;
}

// Invalid UTF-8 in a caller's string must not throw out of the signer.
std::string dump(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Result<std::string> sign_jwt(const nlohmann::json& claims,
                             const secrets::SecretValue& private_key_pem, std::string_view kid) {
    if (!claims.is_object()) {
        return fail(ErrorCode::invalid_argument, "JWT claims must be a JSON object");
    }
    auto key = secrets::load_private_key_pem(private_key_pem);
    if (!key) return std::unexpected(key.error());
    auto alg = algorithm_for(key->get());
    if (!alg) return std::unexpected(alg.error());

    nlohmann::json header = {{"alg", alg_name(*alg)}, {"typ", "JWT"}};
    if (!kid.empty()) header["kid"] = std::string(kid);
    std::string input =
        crypto::base64url_encode(dump(header)) + "." + crypto::base64url_encode(dump(claims));
    auto signature = sign_input(key->get(), *alg, input);
    if (!signature) return std::unexpected(signature.error());
    input += ".";
    input += crypto::base64url_encode(*signature);
    return input;
}

}  // namespace sa::agent::auth
