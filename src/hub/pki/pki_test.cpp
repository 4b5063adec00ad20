#include "hub/pki/pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/util/files.h"
#include "hub/testing/test_support.h"

namespace sa::hub::pki {
namespace {

unsigned mode_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
}

crypto::X509Ptr read_cert(const std::string& path) {
    auto pem = util::read_file(path);
    EXPECT_TRUE(pem.has_value()) << path;
    crypto::BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    return crypto::X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

TEST(Pki, FirstStartCreatesEverythingWithPrivateKeysOnly0600) {
    testing::TempDir tmp;
    std::string dir = tmp.file("data");  // does not exist yet
    auto m = ensure(dir, {});
    ASSERT_TRUE(m.has_value()) << m.error().describe();
    const auto& l = m->layout;
    EXPECT_EQ(mode_of(dir), 0700u);
    for (const auto& key : {l.ca_key, l.server_key, l.token_key, l.job_key}) {
        EXPECT_EQ(mode_of(key), 0600u) << key;
    }
    for (const auto& pub : {l.ca_cert, l.server_cert, l.token_public, l.job_public}) {
        EXPECT_TRUE(std::filesystem::exists(pub)) << pub;
    }
    EXPECT_EQ(m->created.size(), 8u);

    auto ca_pem = util::read_file(l.ca_cert);
    auto server_pem = util::read_file(l.server_cert);
    ASSERT_TRUE(ca_pem && server_pem);
    auto verified = verify_server_certificate(*ca_pem, *server_pem);
    EXPECT_TRUE(verified.has_value()) << verified.error().describe();

    // The published public keys belong to the private keys.
    auto job_pub = crypto::Ed25519PublicKey::from_pem_file(l.job_public);
    ASSERT_TRUE(job_pub.has_value());
    EXPECT_EQ(job_pub->raw(), m->job_key.public_key().raw());
    auto token_pub = crypto::Ed25519PublicKey::from_pem_file(l.token_public);
    ASSERT_TRUE(token_pub.has_value());
    EXPECT_EQ(token_pub->raw(), m->token_key.public_key().raw());
    EXPECT_NE(job_pub->raw(), token_pub->raw());
}

TEST(Pki, AnExistingEmptyDirectoryIsMadePrivate) {
    testing::TempDir tmp;
    std::string dir = tmp.file("loose");
    std::filesystem::create_directories(dir);
    ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
    ASSERT_TRUE(ensure(dir, {}).has_value());
    EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(Pki, CertificatesHaveTheRequiredProfile) {
    testing::TempDir tmp;
    auto m = ensure(tmp.path(), {"hub.example.test", "10.1.2.3"});
    ASSERT_TRUE(m.has_value()) << m.error().describe();
    auto ca = read_cert(m->layout.ca_cert);
    auto server = read_cert(m->layout.server_cert);
    ASSERT_TRUE(ca && server);

    EXPECT_EQ(X509_check_ca(ca.get()), 1);
    EXPECT_EQ(X509_check_ca(server.get()), 0);
    EXPECT_EQ(X509_check_purpose(server.get(), X509_PURPOSE_SSL_SERVER, 0), 1);
    EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(ca.get())), EVP_PKEY_EC);
    EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(server.get())), EVP_PKEY_EC);
    EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
    EXPECT_EQ(X509_check_host(server.get(), "hub.example.test", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(server.get(), "10.1.2.3", 0), 1);
    EXPECT_NE(X509_check_host(server.get(), "evil.example", 0, 0, nullptr), 1);

    // Validity: the CA about ten years, the server about one.
    int days = 0;
    int secs = 0;
    ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(ca.get())), 1);
    EXPECT_GT(days, 3600);
    ASSERT_EQ(ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(server.get())), 1);
    EXPECT_GT(days, 360);
    EXPECT_LT(days, 370);
}

TEST(Pki, LaterStartsReuseTheMaterial) {
    testing::TempDir tmp;
    auto first = ensure(tmp.path(), {});
    ASSERT_TRUE(first.has_value());
    auto ca_before = util::read_file(first->layout.ca_cert);
    auto server_before = util::read_file(first->layout.server_cert);
    auto second = ensure(tmp.path(), {});
    ASSERT_TRUE(second.has_value()) << second.error().describe();
    EXPECT_TRUE(second->created.empty());
    EXPECT_EQ(util::read_file(second->layout.ca_cert).value(), ca_before.value());
    EXPECT_EQ(util::read_file(second->layout.server_cert).value(), server_before.value());
    EXPECT_EQ(second->job_key.public_key().raw(), first->job_key.public_key().raw());
    EXPECT_EQ(second->token_key.public_key().raw(), first->token_key.public_key().raw());
}

TEST(Pki, NewSanReissuesOnlyTheServerCertificate) {
    testing::TempDir tmp;
    auto first = ensure(tmp.path(), {});
    ASSERT_TRUE(first.has_value());
    auto ca_before = util::read_file(first->layout.ca_cert);
    auto second = ensure(tmp.path(), {"hub.internal"});
    ASSERT_TRUE(second.has_value()) << second.error().describe();
    EXPECT_EQ(util::read_file(second->layout.ca_cert).value(), ca_before.value());
    ASSERT_EQ(second->created.size(), 2u);  // server.key and server.pem
    auto server = read_cert(second->layout.server_cert);
    ASSERT_TRUE(server);
    EXPECT_EQ(X509_check_host(server.get(), "hub.internal", 0, 0, nullptr), 1);
}

TEST(Pki, HalfAKeyPairIsAnErrorNotASilentReplacement) {
    testing::TempDir tmp;
    auto first = ensure(tmp.path(), {});
    ASSERT_TRUE(first.has_value());
    std::filesystem::remove(first->layout.ca_key);
    auto again = ensure(tmp.path(), {});
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, ErrorCode::integrity);

    testing::TempDir tmp2;
    auto other = ensure(tmp2.path(), {});
    ASSERT_TRUE(other.has_value());
    std::filesystem::remove(other->layout.job_key);
    auto refused = ensure(tmp2.path(), {});
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, ErrorCode::integrity);
}

TEST(Pki, RejectsSanThatCouldInjectExtensionSyntax) {
    testing::TempDir tmp;
    auto m = ensure(tmp.path(), {"ok.test,DNS:evil.test"});
    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, ErrorCode::invalid_argument);
}

TEST(Pki, ForeignCertificateDoesNotVerify) {
    testing::TempDir a;
    testing::TempDir b;
    auto ma = ensure(a.path(), {});
    auto mb = ensure(b.path(), {});
    ASSERT_TRUE(ma && mb);
    auto ca = util::read_file(ma->layout.ca_cert);
    auto server = util::read_file(mb->layout.server_cert);
    auto verified = verify_server_certificate(*ca, *server);
    ASSERT_FALSE(verified.has_value());
    EXPECT_EQ(verified.error().code, ErrorCode::integrity);
}

}  // namespace
}  // namespace sa::hub::pki
