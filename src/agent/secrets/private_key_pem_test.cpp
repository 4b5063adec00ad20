#include "agent/secrets/private_key_pem.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace sa::agent::secrets {
namespace {

std::string ec_key_pem() {
    crypto::EvpPkeyPtr key(EVP_EC_gen("P-256"));
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

TEST(PrivateKeyPem, LoadsAPkcs8Key) {
    auto key = load_private_key_pem(SecretValue::from(ec_key_pem()));
    ASSERT_TRUE(key) << key.error().describe();
    EXPECT_EQ(EVP_PKEY_get_base_id(key->get()), EVP_PKEY_EC);
}

TEST(PrivateKeyPem, RefusesGarbageWithoutQuotingIt) {
    auto key = load_private_key_pem(SecretValue::from(std::string("not-a-key-XYZZY")));
    ASSERT_FALSE(key);
    EXPECT_EQ(key.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(key.error().message.find("XYZZY"), std::string::npos);
    EXPECT_EQ(ERR_peek_error(), 0u);
    EXPECT_FALSE(load_private_key_pem(SecretValue{}));
}

}  // namespace
}  // namespace sa::agent::secrets
