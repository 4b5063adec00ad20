// HubClient + TokenClient + HttpClient against a small fake hub over real
// TLS on 127.0.0.1:0: the wire shapes as a server sees them.
#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/auth/token_client.h"
#include "agent/control/hub_client.h"
#include "agent/egress/http_client.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/secrets/file_secret_store.h"
#include "agent/secrets/secret_stores.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/protocol/content_digest.h"

namespace sa::agent::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A fake hub with just enough behaviour: client_secret_basic check, bearer
// check with revocation, one queued job, digest-checked chunk uploads.
class FakeHub {
  public:
    explicit FakeHub(const testing::TestPki& pki) : server_(pki) {
        auto& http = server_.http();
        http.Post("/oauth2/token", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mutex_);
            const std::string expected =
                "Basic " + crypto::base64_encode("cid_1:" + accepted_secret);
            if (req.get_header_value("Authorization") != expected ||
                req.body != "grant_type=client_credentials" ||
                req.get_header_value("Content-Type") != "application/x-www-form-urlencoded") {
                res.status = 401;
                res.set_header("WWW-Authenticate", "Basic realm=\"agent-hub\"");
                res.set_content(R"({"error":"invalid_client"})", "application/json");
                return;
            }
            const std::string token = "tok-" + std::to_string(++tokens_issued);
            res.set_content(
                json{{"access_token", token}, {"token_type", "Bearer"}, {"expires_in", 900}}.dump(),
                "application/json");
        });
        http.Post("/v1/agent/lease", [this](const httplib::Request& req, httplib::Response& res) {
            if (!authorized(req, res)) return;
            std::lock_guard lock(mutex_);
            const json body = json::parse(req.body);
            lease_bodies.push_back(body);
            if (jobs_queued == 0) {
                res.status = 204;
                return;
            }
            --jobs_queued;
            res.set_content(json{{"lease_id", "L1"},
                                 {"job_id", "J1"},
                                 {"lease_expires_at", 1764403800},
                                 {"job", "h.p.s"}}
                                .dump(),
                            "application/json");
        });
        http.Get("/v1/agent/ping", [this](const httplib::Request& req, httplib::Response& res) {
            if (!authorized(req, res)) return;
            res.set_content(
                json{{"agent_id", req.get_param_value("agent_id")}, {"server_time", 1764403200}}
                    .dump(),
                "application/json");
        });
        http.Put(R"(/v1/jobs/([^/]+)/chunks/(\d+))", [this](const httplib::Request& req,
                                                            httplib::Response& res) {
            if (!authorized(req, res)) return;
            auto digest =
                protocol::parse_content_digest_sha256(req.get_header_value("Content-Digest"));
            if (!digest || *digest != crypto::sha256(req.body)) {
                res.status = 400;
                res.set_content(R"({"error":"digest_mismatch"})", "application/json");
                return;
            }
            std::lock_guard lock(mutex_);
            chunks.push_back(
                {req.matches[1], req.matches[2], req.get_header_value("X-Lease-Id"), req.body});
            res.status = 201;
            res.set_content(json{{"seq", std::stoi(req.matches[2])},
                                 {"sha256", crypto::sha256_hex(req.body)},
                                 {"size", req.body.size()}}
                                .dump(),
                            "application/json");
        });
        server_.start();
    }

    std::string url() const { return server_.url(); }

    struct StoredChunk {
        std::string job_id, seq, lease_id, body;
    };
    std::mutex mutex_;
    std::string accepted_secret = "s3cret";
    std::set<std::string> revoked;
    int tokens_issued = 0;
    int jobs_queued = 1;
    std::vector<json> lease_bodies;
    std::vector<StoredChunk> chunks;
    std::vector<std::string> bearers;

  private:
    bool authorized(const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex_);
        const std::string header = req.get_header_value("Authorization");
        bearers.push_back(header);
        if (header.rfind("Bearer tok-", 0) != 0 || revoked.contains(header.substr(7))) {
            res.status = 401;
            res.set_content(R"({"error":"invalid_token"})", "application/json");
            return false;
        }
        return true;
    }

    testing::TlsTestServer server_;
};

class HubClientTlsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        static const testing::TestPki pki = testing::TestPki::generate();
        dir_ = fs::temp_directory_path() / ("sa-control-" + crypto::random_token(8));
        testing::write_test_file((dir_ / "secrets" / "hub").string(), "s3cret\n");
        const std::string ca =
            testing::write_test_file((dir_ / "ca.pem").string(), pki.ca.cert_pem);
        hub_ = std::make_unique<FakeHub>(pki);

        stores_ = std::make_unique<secrets::SecretStores>();
        stores_->add("files", std::make_unique<secrets::FileSecretStore>(
                                  "files", (dir_ / "secrets").string()));
        egress::HttpClient::Options http_options;
        http_options.ca_file = ca;
        auto http = egress::HttpClient::create(http_options);
        ASSERT_TRUE(http);
        http_ = std::make_unique<egress::HttpClient>(std::move(*http));
        tokens_ = std::make_unique<auth::TokenClient>(
            *http_, [this](const secrets::SecretRef& ref) { return stores_->read(ref); },
            auth::TokenClient::Options{.token_url = hub_->url() + "/oauth2/token",
                                       .client_id = "cid_1",
                                       .client_secret = {"files", "hub", ""}},
            clock_);
        client_ = std::make_unique<HubClient>(
            *http_, *tokens_, HubClient::Options{.hub_url = hub_->url(), .agent_id = "edge-1"});
    }
    void TearDown() override {
        client_.reset();
        tokens_.reset();
        http_.reset();
        hub_.reset();
        fs::remove_all(dir_);
    }

    fs::path dir_;
    auth::SystemClock clock_;
    std::unique_ptr<FakeHub> hub_;
    std::unique_ptr<secrets::SecretStores> stores_;
    std::unique_ptr<egress::HttpClient> http_;
    std::unique_ptr<auth::TokenClient> tokens_;
    std::unique_ptr<HubClient> client_;
};

TEST_F(HubClientTlsTest, LeasesAJobThenGets204) {
    auto first = client_->lease(0);
    ASSERT_TRUE(first) << first.error().describe();
    ASSERT_TRUE(first->has_value());
    EXPECT_EQ((*first)->job_id, "J1");
    EXPECT_EQ((*first)->job_jws, "h.p.s");

    auto second = client_->lease(0);
    ASSERT_TRUE(second) << second.error().describe();
    EXPECT_FALSE(second->has_value());

    std::lock_guard lock(hub_->mutex_);
    EXPECT_EQ(hub_->tokens_issued, 1);  // the token was cached between calls
    ASSERT_EQ(hub_->lease_bodies.size(), 2u);
    EXPECT_EQ(hub_->lease_bodies[0], (json{{"agent_id", "edge-1"}, {"wait_seconds", 0}}));
}

TEST_F(HubClientTlsTest, UploadsChunkWithCorrectDigest) {
    const std::string body = "{\"name\":\"t\"}\n";
    auto status = client_->upload_chunk("J1", "L1", delivery::Chunk{0, body, crypto::sha256(body)});
    ASSERT_TRUE(status) << status.error().describe();
    std::lock_guard lock(hub_->mutex_);
    ASSERT_EQ(hub_->chunks.size(), 1u);
    EXPECT_EQ(hub_->chunks[0].job_id, "J1");
    EXPECT_EQ(hub_->chunks[0].seq, "0");
    EXPECT_EQ(hub_->chunks[0].lease_id, "L1");
    EXPECT_EQ(hub_->chunks[0].body, body);
}

TEST_F(HubClientTlsTest, RevokedTokenAndRotatedSecretReauthenticateOnce) {
    ASSERT_TRUE(client_->lease(0));
    {
        // The hub revokes the token and the operator rotates the secret.
        std::lock_guard lock(hub_->mutex_);
        hub_->revoked.insert("tok-1");
        hub_->accepted_secret = "n3w-secret";
    }
    testing::write_test_file((dir_ / "secrets" / "hub").string(), "n3w-secret\n");

    auto lease = client_->lease(0);
    ASSERT_TRUE(lease) << lease.error().describe();
    std::lock_guard lock(hub_->mutex_);
    EXPECT_EQ(hub_->tokens_issued, 2);
    EXPECT_EQ(hub_->bearers,
              (std::vector<std::string>{"Bearer tok-1", "Bearer tok-1", "Bearer tok-2"}));
}

TEST_F(HubClientTlsTest, PingOverTlsAndRevokedTokenIsReportedNotRetried) {
    auto ping = client_->ping();
    ASSERT_TRUE(ping) << ping.error().describe();
    EXPECT_EQ(ping->server_time, 1764403200);
    {
        std::lock_guard lock(hub_->mutex_);
        hub_->revoked.insert("tok-1");
    }
    auto refused = client_->ping();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::unauthenticated);
    auto again = client_->ping();
    ASSERT_TRUE(again) << again.error().describe();
    std::lock_guard lock(hub_->mutex_);
    EXPECT_EQ(hub_->tokens_issued, 2);
    EXPECT_EQ(hub_->bearers,
              (std::vector<std::string>{"Bearer tok-1", "Bearer tok-1", "Bearer tok-2"}));
}

TEST_F(HubClientTlsTest, WrongClientSecretIsUnauthenticated) {
    {
        std::lock_guard lock(hub_->mutex_);
        hub_->accepted_secret = "something-else";
    }
    auto lease = client_->lease(0);
    ASSERT_FALSE(lease);
    EXPECT_EQ(lease.error().code, ErrorCode::unauthenticated);
    EXPECT_EQ(lease.error().message, "hub rejected client credentials for client_id cid_1");
}

}  // namespace
}  // namespace sa::agent::control
