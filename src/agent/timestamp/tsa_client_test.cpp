#include "agent/timestamp/tsa_client.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/digest.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::timestamp {
namespace {

namespace fs = std::filesystem;

// A real RFC 3161 TSA: `openssl ts -reply` behind an HTTPS handler, with a
// TSA certificate (extendedKeyUsage critical timeStamping) from its own CA.
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

    static void sh(const std::string& command) {
        ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0) << command;
    }

    static void make_tsa(const fs::path& d, const std::string& ca_name) {
        fs::create_directories(d);
        std::string q = "'" + d.string() + "'";
        sh("cd " + q +
           " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
           " -keyout ca.key -out ca.pem -days 2 -subj '/CN=" +
           ca_name +
           "'"
           " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign");
        sh("cd " + q +
           " && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
           " -keyout tsa.key -out tsa.csr -subj '/CN=Test TSA'");
        util::write_file_atomic((d / "ext.cnf").string(),
                                "extendedKeyUsage=critical,timeStamping\n"
                                "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
                                0644);
        sh("cd " + q +
           " && openssl x509 -req -in tsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
           " -out tsa.pem -days 2 -extfile ext.cnf");
        util::write_file_atomic((d / "serial").string(), "01\n", 0644);
        util::write_file_atomic((d / "tsa.cnf").string(),
                                "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = " + d.string() +
                                    "\nserial = $dir/serial\ncrypto_device = builtin\n"
                                    "signer_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n"
                                    "signer_key = $dir/tsa.key\nsigner_digest = sha256\n"
                                    "default_policy = 1.2.3.4.1\ndigests = sha256\n"
                                    "accuracy = secs:1\ness_cert_id_alg = sha256\n",
                                0644);
    }

    // Serves POST /tsa with `openssl ts -reply` using the TSA in tsa_dir.
    static void serve_tsa(testing::TlsTestServer& server, fs::path tsa_dir) {
        server.http().Post("/tsa", [tsa_dir](const httplib::Request& req, httplib::Response& res) {
            std::string id = crypto::random_token(6);
            fs::path query = tsa_dir / ("q-" + id + ".tsq");
            fs::path reply = tsa_dir / ("r-" + id + ".tsr");
            std::ofstream(query, std::ios::binary) << req.body;
            std::string cmd = "openssl ts -reply -config '" + (tsa_dir / "tsa.cnf").string() +
                              "' -queryfile '" + query.string() + "' -out '" + reply.string() +
                              "' >/dev/null 2>&1";
            if (std::system(cmd.c_str()) != 0) {
                res.status = 500;
                return;
            }
            std::ifstream in(reply, std::ios::binary);
            std::stringstream body;
            body << in.rdbuf();
            res.set_content(body.str(), "application/timestamp-reply");
        });
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
