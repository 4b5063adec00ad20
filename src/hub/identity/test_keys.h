#pragma once
// For hub tests only: client key pairs of each accepted type and client
// assertions signed with them, independent of the agent's signer (hub_tests
// do not link agent code), so the hub's verification is checked against a
// second implementation of RFC 7515/7518.
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "common/crypto/encoding.h"
#include "common/crypto/openssl_ptr.h"
#include "common/crypto/random.h"
#include "hub/identity/client_key.h"

namespace sa::hub::identity_testing {

class TestKey {
  public:
    // alg: "EdDSA" (Ed25519), "ES256" (P-256), "RS256" (RSA 2048), or
    // "ES384" (P-384, a curve the hub refuses).
    static TestKey generate(const std::string& alg) {
        EVP_PKEY* key = nullptr;
        if (alg == "EdDSA") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
        if (alg == "ES256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
        if (alg == "ES384") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
        if (alg == "RS256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
        if (key == nullptr) throw std::runtime_error("test key generation failed for " + alg);
        return TestKey(crypto::EvpPkeyPtr(key), alg);
    }

    // One key per algorithm for the whole test binary: RSA key generation
    // is slow, and most tests only need some key of a type.
    static const TestKey& shared(const std::string& alg) {
        static std::mutex mu;
        static std::map<std::string, TestKey> keys;
        std::lock_guard<std::mutex> lock(mu);
        auto it = keys.find(alg);
        if (it == keys.end()) it = keys.emplace(alg, generate(alg)).first;
        return it->second;
    }

    const std::string& alg() const { return alg_; }

    std::string public_pem() const {
        crypto::BioPtr bio(BIO_new(BIO_s_mem()));
        PEM_write_bio_PUBKEY(bio.get(), key_.get());
        char* data = nullptr;
        long size = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<size_t>(size));
    }

    // PKCS#8 PEM: what the agent keeps in its secret store.
    std::string private_pem() const {
        crypto::BioPtr bio(BIO_new(BIO_s_mem()));
        PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr);
        char* data = nullptr;
        long size = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<size_t>(size));
    }

    identity::ClientPublicKey public_key() const {
        auto k = identity::ClientPublicKey::from_pem(public_pem());
        if (!k) throw std::runtime_error("test key does not parse: " + k.error().message);
        return std::move(*k);
    }

    // The raw JWS signature (ES256: r||s) over input.
    std::string sign_raw(const std::string& input) const {
        crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
        const EVP_MD* md = alg_ == "EdDSA" ? nullptr : EVP_sha256();
        size_t size = 0;
        const auto* in = reinterpret_cast<const unsigned char*>(input.data());
        if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1 ||
            EVP_DigestSign(ctx.get(), nullptr, &size, in, input.size()) != 1) {
            throw std::runtime_error("test signing failed");
        }
        std::string sig(size, '\0');
        if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &size, in,
                           input.size()) != 1) {
            throw std::runtime_error("test signing failed");
        }
        sig.resize(size);
        if (alg_ != "ES256") return sig;
        const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
        ECDSA_SIG* der = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
        std::string raw(64, '\0');
        BN_bn2binpad(ECDSA_SIG_get0_r(der), reinterpret_cast<unsigned char*>(raw.data()), 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(der), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
        ECDSA_SIG_free(der);
        return raw;
    }

    // A compact JWS with exactly this header and claims.
    std::string sign(const nlohmann::json& header, const nlohmann::json& claims) const {
        std::string input =
            crypto::base64url_encode(header.dump()) + "." + crypto::base64url_encode(claims.dump());
        return input + "." + crypto::base64url_encode(sign_raw(input));
    }

    // A client assertion with header {"alg": alg(), "typ": "JWT"} (+ kid).
    std::string assertion(const nlohmann::json& claims, const std::string& kid = "") const {
        nlohmann::json header = {{"alg", alg_}, {"typ", "JWT"}};
        if (!kid.empty()) header["kid"] = kid;
        return sign(header, claims);
    }

  private:
    TestKey(crypto::EvpPkeyPtr key, std::string alg) : key_(std::move(key)), alg_(std::move(alg)) {}
    crypto::EvpPkeyPtr key_;
    std::string alg_;
};

// The claims a standards-following client sends (RFC 7523 section 3), valid
// for 60 s from now (Unix seconds).
inline nlohmann::json assertion_claims(const std::string& client_id, int64_t now,
                                       const std::string& aud) {
    return {
        {"iss", client_id}, {"sub", client_id}, {"aud", aud},     {"jti", crypto::random_token(16)},
        {"iat", now},       {"nbf", now},       {"exp", now + 60}};
}

}  // namespace sa::hub::identity_testing
