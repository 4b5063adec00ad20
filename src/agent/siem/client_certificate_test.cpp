#include "agent/siem/client_certificate.h"

#include <gtest/gtest.h>
#include <openssl/err.h>

#include "agent/egress/testing/test_pki.h"
#include "agent/secrets/file_secret_store.h"
#include "agent/secrets/secret_stores.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::siem {
namespace {

using ::sa::agent::testing::pki;
using ::sa::agent::testing::write_test_file;

// A file secret store holding "siem/client.key", read through the agent's
// registry so every read is an AccessEvent.
class ClientCertificateTest : public ::testing::Test {
  protected:
    ClientCertificateTest() {
        stores_.add("files", std::make_unique<secrets::FileSecretStore>(
                                 "files", (tmp_.path() / "store").string()));
        stores_.set_observer([this](const secrets::AccessEvent& e) { events_.push_back(e); });
        write_test_file(cert_file(), pki().client.cert_pem);
    }
    std::string cert_file() const { return (tmp_.path() / "client.pem").string(); }
    void store_key(const std::string& pem) {
        write_test_file((tmp_.path() / "store" / "siem" / "client.key").string(), pem);
    }
    ClientCertificate cert() const {
        return {.cert_file = cert_file(),
                .key = {.store = "files", .path = "siem/client.key", .key = ""},
                .reader = stores_.reader("siem client key test")};
    }

    sa::testing::TempDir tmp_;
    secrets::SecretStores stores_;
    std::vector<secrets::AccessEvent> events_;
};

TEST_F(ClientCertificateTest, MatchingKeyIsAcceptedAndTheReadIsAudited) {
    store_key(pki().client.key_pem);
    ASSERT_TRUE(check_client_certificate(cert()));
    ASSERT_EQ(events_.size(), 1u);
    EXPECT_EQ(events_[0].purpose, "siem client key test");
    EXPECT_EQ(events_[0].outcome, "ok");
    EXPECT_EQ(events_[0].path, "siem/client.key");
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(ClientCertificateTest, KeyOfAnotherCertificateIsRefusedWithoutQuotingIt) {
    store_key(pki().server.key_pem);
    auto checked = check_client_certificate(cert());
    ASSERT_FALSE(checked);
    EXPECT_EQ(checked.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(checked.error().message.find("does not match the certificate in " + cert_file()),
              std::string::npos)
        << checked.error().message;
    EXPECT_EQ(checked.error().message.find("PRIVATE KEY"), std::string::npos);
    EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(ClientCertificateTest, NotAKeyMissingKeyAndBadChainAreClearErrors) {
    store_key("-----BEGIN NOTHING-----\nc2VjcmV0LXNoYXBl\n");
    auto garbage = check_client_certificate(cert());
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(garbage.error().message.find("client_key files/siem/client.key: "), std::string::npos)
        << garbage.error().message;
    EXPECT_EQ(garbage.error().message.find("c2VjcmV0"), std::string::npos);

    auto missing = cert();
    missing.key.path = "siem/absent.key";
    auto absent = check_client_certificate(missing);
    ASSERT_FALSE(absent);
    EXPECT_EQ(absent.error().code, ErrorCode::not_found);

    store_key(pki().client.key_pem);
    write_test_file(cert_file(), "not a certificate\n");
    auto chain = check_client_certificate(cert());
    ASSERT_FALSE(chain);
    EXPECT_NE(chain.error().message.find("cannot read a PEM certificate chain"), std::string::npos)
        << chain.error().message;
}

}  // namespace
}  // namespace sa::agent::siem
