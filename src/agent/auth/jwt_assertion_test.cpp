#include "agent/auth/jwt_assertion.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include <memory>
#include <string>
#include <vector>

#include "common/crypto/encoding.h"
#include "common/crypto/openssl_ptr.h"

namespace sa::agent::auth {
namespace {

using secrets::SecretValue;

crypto::EvpPkeyPtr generate(const char* type, const char* param = nullptr) {
    EVP_PKEY* key = nullptr;
    if (param == nullptr) {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, type);
    } else if (std::string(type) == "RSA") {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, type, static_cast<size_t>(std::stoul(param)));
    } else {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, type, param);
    }
    EXPECT_NE(key, nullptr);
    return crypto::EvpPkeyPtr(key);
}

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<size_t>(length));
}

// PKCS#8 ("BEGIN PRIVATE KEY").
std::string pkcs8_pem(EVP_PKEY* key) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr), 1);
    return bio_text(bio.get());
}

// Traditional ("BEGIN RSA PRIVATE KEY" / "BEGIN EC PRIVATE KEY").
std::string traditional_pem(EVP_PKEY* key) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    EXPECT_EQ(
        PEM_write_bio_PrivateKey_traditional(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
        1);
    return bio_text(bio.get());
}

// The public half, re-read from its own PEM so verification uses nothing of
// the private key object.
crypto::EvpPkeyPtr public_of(EVP_PKEY* key) {
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    EXPECT_EQ(PEM_write_bio_PUBKEY(bio.get(), key), 1);
    return crypto::EvpPkeyPtr(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
}

struct Parts {
    nlohmann::json header;
    nlohmann::json payload;
    std::string signing_input;
    std::string signature;
};

Parts split(const std::string& compact) {
    const auto first = compact.find('.');
    const auto second = compact.find('.', first + 1);
    EXPECT_NE(first, std::string::npos);
    EXPECT_NE(second, std::string::npos);
    EXPECT_EQ(compact.find('.', second + 1), std::string::npos);
    Parts parts;
    parts.header = nlohmann::json::parse(*crypto::base64url_decode(compact.substr(0, first)));
    parts.payload = nlohmann::json::parse(
        *crypto::base64url_decode(compact.substr(first + 1, second - first - 1)));
    parts.signing_input = compact.substr(0, second);
    parts.signature = crypto::base64url_decode(compact.substr(second + 1)).value_or("?");
    return parts;
}

// r||s (RFC 7518 section 3.4) back to the DER form OpenSSL verifies.
std::string raw_to_der(const std::string& raw) {
    EXPECT_EQ(raw.size(), 64u);
    ECDSA_SIG* sig = ECDSA_SIG_new();
    const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
    ECDSA_SIG_set0(sig, BN_bin2bn(bytes, 32, nullptr), BN_bin2bn(bytes + 32, 32, nullptr));
    unsigned char* der = nullptr;
    const int length = i2d_ECDSA_SIG(sig, &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(length));
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    return out;
}

bool verify(EVP_PKEY* public_key, const EVP_MD* md, const std::string& input,
            const std::string& signature) {
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, public_key) != 1) return false;
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(input.data()),
                            input.size()) == 1;
}

const nlohmann::json kClaims = {
    {"iss", "agent-1"},  {"sub", "agent-1"},  {"aud", "https://idp.example/token"},
    {"exp", 1700000060}, {"iat", 1700000000}, {"jti", "abc"}};

TEST(SignJwt, Rs256WithPkcs8AndTraditionalPem) {
    auto key = generate("RSA", "2048");
    auto pub = public_of(key.get());
    for (const auto& pem : {pkcs8_pem(key.get()), traditional_pem(key.get())}) {
        auto jwt = sign_jwt(kClaims, SecretValue::copy_of(pem), "key-1");
        ASSERT_TRUE(jwt) << jwt.error().describe();
        const Parts parts = split(*jwt);
        EXPECT_EQ(parts.header,
                  (nlohmann::json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "key-1"}}));
        EXPECT_EQ(parts.payload, kClaims);
        EXPECT_EQ(parts.signature.size(), 256u);
        EXPECT_TRUE(verify(pub.get(), EVP_sha256(), parts.signing_input, parts.signature));
        // The signature covers the header and payload.
        EXPECT_FALSE(verify(pub.get(), EVP_sha256(), parts.signing_input + "x", parts.signature));
    }
}

TEST(SignJwt, Es256SignatureIsRawRAndS) {
    auto key = generate("EC", "P-256");
    auto pub = public_of(key.get());
    for (const auto& pem : {pkcs8_pem(key.get()), traditional_pem(key.get())}) {
        // ECDSA signatures vary; several runs also catch r or s with leading zeros.
        for (int i = 0; i < 20; ++i) {
            auto jwt = sign_jwt(kClaims, SecretValue::copy_of(pem));
            ASSERT_TRUE(jwt) << jwt.error().describe();
            const Parts parts = split(*jwt);
            EXPECT_EQ(parts.header, (nlohmann::json{{"alg", "ES256"}, {"typ", "JWT"}}));
            EXPECT_FALSE(parts.header.contains("kid"));
            ASSERT_EQ(parts.signature.size(), 64u);
            EXPECT_TRUE(
                verify(pub.get(), EVP_sha256(), parts.signing_input, raw_to_der(parts.signature)));
        }
    }
}

TEST(SignJwt, EdDsaWithEd25519) {
    auto key = generate("ED25519");
    auto pub = public_of(key.get());
    auto jwt = sign_jwt(kClaims, SecretValue::copy_of(pkcs8_pem(key.get())), "ed");
    ASSERT_TRUE(jwt) << jwt.error().describe();
    const Parts parts = split(*jwt);
    EXPECT_EQ(parts.header, (nlohmann::json{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", "ed"}}));
    EXPECT_EQ(parts.signature.size(), 64u);
    EXPECT_TRUE(verify(pub.get(), nullptr, parts.signing_input, parts.signature));
}

TEST(SignJwt, UnusableKeysGiveCleanErrorsWithoutKeyMaterial) {
    const std::string garbage =
        "-----BEGIN PRIVATE "
        "KEY-----\nTUlJQ2RnSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbUF3Z2dKY0FnRUFBb0dC\n"
        "-----END PRIVATE KEY-----\n";
    auto rsa1024 = generate("RSA", "1024");
    auto p384 = generate("EC", "P-384");
    auto x25519 = generate("X25519");
    const std::vector<std::string> pems = {
        "",
        "not a pem",
        garbage,
        pkcs8_pem(rsa1024.get()),
        pkcs8_pem(p384.get()),
        pkcs8_pem(x25519.get()),
    };
    for (const auto& pem : pems) {
        auto jwt = sign_jwt(kClaims, SecretValue::copy_of(pem));
        ASSERT_FALSE(jwt);
        EXPECT_EQ(jwt.error().code, ErrorCode::invalid_argument) << jwt.error().describe();
        EXPECT_EQ(jwt.error().message.find("MII"), std::string::npos);
        EXPECT_EQ(jwt.error().message.find("BEGIN"), std::string::npos);
    }
    EXPECT_NE(sign_jwt(kClaims, SecretValue::copy_of(pkcs8_pem(rsa1024.get())))
                  .error()
                  .message.find("2048"),
              std::string::npos);
}

TEST(SignJwt, EncryptedKeyIsRefusedWithoutPrompting) {
    auto key = generate("EC", "P-256");
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    char passphrase[] = "correct horse";
    ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(), nullptr, 0,
                                            nullptr, passphrase),
              1);
    auto jwt = sign_jwt(kClaims, SecretValue::copy_of(bio_text(bio.get())));
    ASSERT_FALSE(jwt);
    EXPECT_EQ(jwt.error().code, ErrorCode::invalid_argument);
}

TEST(SignJwt, ClaimsMustBeAnObject) {
    auto key = generate("ED25519");
    auto jwt = sign_jwt(nlohmann::json::array({1, 2}), SecretValue::copy_of(pkcs8_pem(key.get())));
    ASSERT_FALSE(jwt);
    EXPECT_EQ(jwt.error().code, ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace sa::agent::auth
