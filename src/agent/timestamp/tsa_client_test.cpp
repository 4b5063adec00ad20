#include "agent/timestamp/tsa_client.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/timestamp/tsa_test_support.h"
#include "common/crypto/digest.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::timestamp {
namespace {

namespace fs = std::filesystem;

// A real RFC 3161 TSA (tsa_test_support.h): `openssl ts -reply` behind an
// HTTPS handler, with a TSA certificate from its own CA.
class TsaTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new fs::path(fs::temp_directory_path() / ("sa-tsa-" + crypto::random_token(6)));
        fs::create_directories(*dir_);
        make_tsa(*dir_ / "tsa", "Test TSA CA");
        make_tsa(*dir_ / "other", "Other TSA CA");
    }
    static void TearDownTestSuite() {
        fs::remove_all(*dir_);
        delete dir_;
    }

    static void sh(const std::string& command) { tsa_testing::sh(command); }
    static void make_tsa(const fs::path& d, const std::string& ca_name) {
        tsa_testing::make_test_tsa(d, ca_name);
    }
    static void serve_tsa(testing::TlsTestServer& server, fs::path tsa_dir) {
        tsa_testing::serve_tsa(server, std::move(tsa_dir));
    }

    egress::HttpClient client() {
        ca_file_ = testing::write_test_file((*dir_ / "https-ca.pem").string(), pki_.ca.cert_pem);
        return *egress::HttpClient::create({.ca_file = ca_file_});
    }

    static std::string tsa_ca() { return (*dir_ / "tsa" / "ca.pem").string(); }
    static std::string other_ca() { return (*dir_ / "other" / "ca.pem").string(); }

    static fs::path* dir_;
    testing::TestPki pki_ = testing::TestPki::generate();
    std::string ca_file_;
};

fs::path* TsaTest::dir_ = nullptr;

TEST_F(TsaTest, TimestampsAndVerifiesOffline) {
    testing::TlsTestServer server(pki_);
    serve_tsa(server, *dir_ / "tsa");
    server.start();
    auto http = client();
    TsaClient tsa(http, server.url("/tsa"), tsa_ca());
    std::string digest = crypto::sha256("checkpoint 42");
    auto token = tsa.timestamp(digest);
    ASSERT_TRUE(token) << token.error().describe();
    int64_t now = std::time(nullptr);
    EXPECT_NEAR(static_cast<double>(token->gen_time_unix), static_cast<double>(now), 120.0);

    auto when = verify_token(token->der, digest, tsa_ca());
    ASSERT_TRUE(when) << when.error().describe();
    EXPECT_EQ(*when, token->gen_time_unix);

    // What the token claims, readable without the CA (and not trusted).
    auto claims = read_token_claims(token->der);
    ASSERT_TRUE(claims) << claims.error().describe();
    EXPECT_EQ(claims->imprint, digest);
    EXPECT_EQ(claims->gen_time_unix, token->gen_time_unix);
    EXPECT_EQ(read_token_claims("not DER").error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(read_token_claims(token->der + "x").error().code, ErrorCode::invalid_argument);

    // Another digest, another CA, or a flipped byte: refused.
    EXPECT_EQ(verify_token(token->der, crypto::sha256("checkpoint 43"), tsa_ca()).error().code,
              ErrorCode::integrity);
    EXPECT_EQ(verify_token(token->der, digest, other_ca()).error().code, ErrorCode::integrity);
    std::string tampered = token->der;
    // The last byte belongs to the signature value. (A byte in the middle may
    // fall in the embedded copy of the CA certificate, which verification
    // rightly ignores in favour of the locally configured one.)
    tampered.back() ^= 0x01;
    EXPECT_FALSE(verify_token(tampered, digest, tsa_ca()));
    EXPECT_FALSE(verify_token("not DER", digest, tsa_ca()));
}

TEST_F(TsaTest, ReplyFromAnUntrustedTsaIsRefused) {
    testing::TlsTestServer server(pki_);
    serve_tsa(server, *dir_ / "other");
    server.start();
    auto http = client();
    TsaClient tsa(http, server.url("/tsa"), tsa_ca());
    auto token = tsa.timestamp(crypto::sha256("x"));
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::integrity);
    EXPECT_NE(token.error().message.find("certificate verify error"), std::string::npos)
        << token.error().message;
}

TEST_F(TsaTest, ReplyForAnotherRequestIsRefused) {
    // A TSA (or a man in the middle) replaying a genuine reply to an earlier
    // request: the nonce and imprint no longer match.
    std::string stale;
    testing::TlsTestServer server(pki_);
    serve_tsa(server, *dir_ / "tsa");
    server.http().Post("/replay", [&](const httplib::Request&, httplib::Response& res) {
        res.set_content(stale, "application/timestamp-reply");
    });
    server.start();
    // Record a genuine reply of the real TSA to a query for another digest.
    auto http = client();
    {
        fs::path data = *dir_ / "replay.data";
        std::ofstream(data) << "old";
        sh("openssl ts -query -data '" + data.string() + "' -sha256 -cert -out '" +
           (*dir_ / "replay.tsq").string() + "'");
        auto query = util::read_file((*dir_ / "replay.tsq").string());
        ASSERT_TRUE(query);
        egress::HttpRequest r;
        r.method = "POST";
        r.url = server.url("/tsa");
        r.body = *query;
        r.headers = {{"Content-Type", "application/timestamp-query"}};
        auto genuine = http.send(r);
        ASSERT_TRUE(genuine);
        ASSERT_EQ(genuine->status, 200);
        stale = genuine->body;
    }
    TsaClient tsa(http, server.url("/replay"), tsa_ca());
    auto token = tsa.timestamp(crypto::sha256("new"));
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::integrity);
    EXPECT_NE(token.error().message.find("does not verify"), std::string::npos)
        << token.error().message;
}

TEST_F(TsaTest, HttpErrorsAndGarbageAreErrorsNotCrashes) {
    testing::TlsTestServer server(pki_);
    server.http().Post("/down",
                       [](const httplib::Request&, httplib::Response& res) { res.status = 503; });
    server.http().Post("/garbage", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string("\x30\x82\xff\xff garbage", 12), "application/timestamp-reply");
    });
    server.http().Post("/html", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("<html></html>", "text/html");
    });
    server.start();
    auto http = client();
    std::string digest = crypto::sha256("x");
    auto down = TsaClient(http, server.url("/down"), tsa_ca()).timestamp(digest);
    ASSERT_FALSE(down);
    EXPECT_EQ(down.error().code, ErrorCode::unavailable);
    auto garbage = TsaClient(http, server.url("/garbage"), tsa_ca()).timestamp(digest);
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::integrity);
    auto html = TsaClient(http, server.url("/html"), tsa_ca()).timestamp(digest);
    ASSERT_FALSE(html);
    EXPECT_EQ(html.error().code, ErrorCode::integrity);
    EXPECT_EQ(TsaClient(http, server.url("/down"), tsa_ca()).timestamp("short").error().code,
              ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace sa::agent::timestamp
