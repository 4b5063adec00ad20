#include "hub/identity/client_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

namespace sa::hub::identity {
namespace {

struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

constexpr int kMinRsaBits = 2048;
// Larger keys only cost verification time; 16384 bits is far beyond use.
constexpr int kMaxRsaBits = 16384;
constexpr size_t kMaxPemBytes = 16 * 1024;

Result<std::string> bn_param(EVP_PKEY* key, const char* name, int pad_to) {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &raw) != 1 || raw == nullptr) {
        ERR_clear_error();
        return fail(ErrorCode::internal, std::string("cannot read key parameter ") + name);
    }
    BnPtr bn(raw);
    const int size = pad_to > 0 ? pad_to : BN_num_bytes(bn.get());
    std::string out(static_cast<size_t>(size), '\0');
    const int written =
        pad_to > 0 ? BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), size)
                   : BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(out.data()));
    if (written != size) return fail(ErrorCode::internal, "cannot encode a key parameter");
    return out;
}

// The required members of the key's JWK (RFC 7638 section 3.2); nlohmann
// keeps object members sorted, so dump() is the canonical form.
Result<nlohmann::json> required_jwk_members(EVP_PKEY* key, const std::string& algorithm) {
    using crypto::base64url_encode;
    if (algorithm == "EdDSA") {
        unsigned char raw[32];
        size_t length = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key, raw, &length) != 1 || length != sizeof raw) {
            ERR_clear_error();
            return fail(ErrorCode::internal, "cannot read the Ed25519 public key");
        }
        return nlohmann::json{
            {"crv", "Ed25519"},
            {"kty", "OKP"},
            {"x", base64url_encode(std::string_view(reinterpret_cast<char*>(raw), length))}};
    }
    if (algorithm == "ES256") {
        auto x = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        if (!x) return std::unexpected(x.error());
        auto y = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        if (!y) return std::unexpected(y.error());
        return nlohmann::json{{"crv", "P-256"},
                              {"kty", "EC"},
                              {"x", base64url_encode(*x)},
                              {"y", base64url_encode(*y)}};
    }
    auto n = bn_param(key, OSSL_PKEY_PARAM_RSA_N, 0);
    if (!n) return std::unexpected(n.error());
    auto e = bn_param(key, OSSL_PKEY_PARAM_RSA_E, 0);
    if (!e) return std::unexpected(e.error());
    return nlohmann::json{{"e", base64url_encode(*e)}, {"kty", "RSA"}, {"n", base64url_encode(*n)}};
}

Result<std::string> to_pem(EVP_PKEY* key) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
        ERR_clear_error();
        return fail(ErrorCode::internal, "cannot encode the public key as PEM");
    }
    char* data = nullptr;
    long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(size));
}

}  // namespace

Result<ClientPublicKey> ClientPublicKey::from_pem(std::string_view pem) {
    if (pem.empty() || pem.size() > kMaxPemBytes) {
        return fail(ErrorCode::invalid_argument, "is empty or larger than 16 KiB");
    }
    // Common mistakes get their own message (the private key never leaves
    // the agent; a certificate is not a key).
    if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
        return fail(ErrorCode::invalid_argument,
                    "holds a private key; register the public key only "
                    "(openssl pkey -in KEY -pubout -out KEY.pub)");
    }
    if (pem.find("-----BEGIN CERTIFICATE-----") != std::string_view::npos) {
        return fail(ErrorCode::invalid_argument,
                    "holds a certificate, not a public key "
                    "(openssl x509 -in CERT -pubkey -noout)");
    }
    crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) return fail(ErrorCode::internal, "cannot allocate a memory BIO");
    EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    if (raw == nullptr) {
        return fail(ErrorCode::invalid_argument,
                    "is not a PEM public key (SubjectPublicKeyInfo, \"BEGIN PUBLIC KEY\")");
    }
    ClientPublicKey out;
    out.key_.reset(raw, EVP_PKEY_free);
    EVP_PKEY* key = out.key_.get();
    switch (EVP_PKEY_get_base_id(key)) {
        case EVP_PKEY_ED25519:
            out.algorithm_ = "EdDSA";
            out.description_ = "Ed25519";
            break;
        case EVP_PKEY_EC: {
            char group[64] = {};
            size_t length = 0;
            if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1 ||
                std::strcmp(group, SN_X9_62_prime256v1) != 0) {
                ERR_clear_error();
                return fail(ErrorCode::invalid_argument, std::string("is an EC key on curve ") +
                                                             (group[0] ? group : "?") +
                                                             "; only P-256 (ES256) is accepted");
            }
            out.algorithm_ = "ES256";
            out.description_ = "EC P-256";
            break;
        }
        case EVP_PKEY_RSA: {
            const int bits = EVP_PKEY_get_bits(key);
            if (bits < kMinRsaBits || bits > kMaxRsaBits) {
                return fail(ErrorCode::invalid_argument, "is an RSA key of " +
                                                             std::to_string(bits) +
                                                             " bits; RSA keys must have 2048.." +
                                                             std::to_string(kMaxRsaBits) + " bits");
            }
            out.algorithm_ = "RS256";
            out.description_ = "RSA " + std::to_string(bits);
            break;
        }
        default:
            return fail(ErrorCode::invalid_argument,
                        "is a key of an unsupported type; use Ed25519, EC P-256 or RSA >= 2048 "
                        "bits");
    }
    auto jwk = required_jwk_members(key, out.algorithm_);
    if (!jwk) return std::unexpected(jwk.error());
    out.thumbprint_ = crypto::base64url_encode(crypto::sha256(jwk->dump()));
    auto text = to_pem(key);
    if (!text) return std::unexpected(text.error());
    out.pem_ = std::move(*text);
    return out;
}

bool ClientPublicKey::verify(std::string_view algorithm, std::string_view signing_input,
                             std::string_view signature) const {
    if (!key_ || algorithm != algorithm_) return false;
    std::string der;
    if (algorithm_ == "ES256") {
        // JWS carries r||s (RFC 7518 section 3.4); OpenSSL verifies DER.
        if (signature.size() != 64) return false;
        const auto* bytes = reinterpret_cast<const unsigned char*>(signature.data());
        EcdsaSigPtr sig(ECDSA_SIG_new());
        BIGNUM* r = BN_bin2bn(bytes, 32, nullptr);
        BIGNUM* s = BN_bin2bn(bytes + 32, 32, nullptr);
        if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ERR_clear_error();
            return false;
        }
        unsigned char* out = nullptr;
        const int length = i2d_ECDSA_SIG(sig.get(), &out);
        if (length <= 0) {
            ERR_clear_error();
            return false;
        }
        der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(length));
        OPENSSL_free(out);
        signature = der;
    }
    if (signing_input.size() > INT_MAX) return false;
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    // EdDSA hashes internally (no digest); ES256 and RS256 use SHA-256, RSA
    // with its default PKCS#1 v1.5 padding.
    const EVP_MD* md = algorithm_ == "EdDSA" ? nullptr : EVP_sha256();
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key_.get()) == 1 &&
              EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                               signature.size(),
                               reinterpret_cast<const unsigned char*>(signing_input.data()),
                               signing_input.size()) == 1;
    ERR_clear_error();
    return ok;
}

}  // namespace sa::hub::identity
