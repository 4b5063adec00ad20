// End to end: the agent's TokenClient authenticates to a real agent-hub
// (server::Hub, in this process, over TLS on a loopback port) with
// private_key_jwt, the key read from a file secret store; the operator
// registers and replaces the app's public key with the agent-hub commands
// (hub/cli/commands.h, what `agent-hub app create --public-key` and
// `app set-key` run). Rotation happens without restarting either side: the
// TokenClient reads the key just in time for each token request.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/auth/token_client.h"
#include "agent/egress/http_client.h"
#include "agent/secrets/file_secret_store.h"
#include "common/crypto/random.h"
#include "common/util/files.h"
#include "common/util/time.h"
#include "hub/cli/commands.h"
#include "hub/clock/clock.h"
#include "hub/identity/test_keys.h"
#include "hub/server/serve.h"
#include "hub/store/layout.h"

namespace sa::agent::auth {
namespace {

namespace fs = std::filesystem;
using hub::identity_testing::TestKey;

// The agent reads the hub's clock: both sides agree on time, and the test
// moves it past a rotation overlap without sleeping.
class SharedClock final : public Clock {
  public:
    explicit SharedClock(const hub::clock::Clock& clock) : clock_(clock) {}
    int64_t now_seconds() const override { return clock_.now_seconds(); }

  private:
    const hub::clock::Clock& clock_;
};

class HubPrivateKeyJwtTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-hubjwt-" + crypto::random_token(8));
        data_ = (dir_ / "hub").string();
        ASSERT_TRUE(util::make_dirs((dir_ / "secrets").string(), 0700));

        hub::server::HubOptions options;
        options.data_dir = data_;
        options.listen = {"127.0.0.1", 0};
        options.scrypt = crypto::ScryptParams{.n = 16, .r = 8, .p = 1};
        options.threads = 4;
        auto hub = hub::server::Hub::start(options, log_, hub_clock_);
        ASSERT_TRUE(hub.has_value()) << hub.error().describe();
        hub_ = std::move(*hub);
        server_ = std::thread([this] { hub_->run(); });
        ASSERT_TRUE(hub_->wait_until_running(std::chrono::seconds(10)));

        egress::HttpClient::Options http_options;
        http_options.ca_file = hub_->layout().ca_cert;
        auto http = egress::HttpClient::create(http_options);
        ASSERT_TRUE(http.has_value()) << http.error().describe();
        http_ = std::make_unique<egress::HttpClient>(std::move(*http));
    }

    void TearDown() override {
        tokens_.reset();
        if (hub_) {
            // run() is known to be serving (wait_until_running in SetUp).
            hub_->stop();
            if (server_.joinable()) server_.join();
        }
        hub_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // The operator's side: a public key file and the agent-hub commands.
    std::string public_key_file(const TestKey& key, const std::string& name) {
        std::string path = (dir_ / (name + ".pub")).string();
        EXPECT_TRUE(util::write_file_atomic(path, key.public_pem(), 0644));
        return path;
    }
    std::string create_app(const TestKey& key) {
        std::ostringstream out;
        std::ostringstream err;
        int code = hub::cli::app_create_with_key(data_, "edge", public_key_file(key, "first"), true,
                                                 hub::cli::Io{out, err});
        EXPECT_EQ(code, 0) << err.str();
        auto printed = nlohmann::json::parse(out.str(), nullptr, false);
        EXPECT_FALSE(printed.contains("client_secret"));
        EXPECT_EQ(printed.value("auth_method", ""), "private_key_jwt");
        return printed.value("client_id", "");
    }
    void set_key(const TestKey& key, int overlap_seconds) {
        std::ostringstream out;
        std::ostringstream err;
        EXPECT_EQ(hub::cli::app_set_key(
                      data_, "edge", public_key_file(key, crypto::random_token(4)),
                      std::chrono::seconds(overlap_seconds), true, hub::cli::Io{out, err}),
                  0)
            << err.str();
    }

    // The agent's side: its private key in the file secret store, replaced
    // in place as a secret manager would.
    void store_agent_key(const TestKey& key) {
        ASSERT_TRUE(util::write_file_atomic((dir_ / "secrets" / "hub-key").string(),
                                            key.private_pem(), 0600));
    }
    void start_agent(const std::string& client_id) {
        secrets_ = std::make_unique<secrets::FileSecretStore>("files", (dir_ / "secrets").string());
        tokens_ = std::make_unique<TokenClient>(
            *http_, [this](const secrets::SecretRef& ref) { return secrets_->read(ref); },
            TokenClient::Options{.token_url = hub_->url() + "/oauth2/token",
                                 .client_id = client_id,
                                 .client_secret = {"files", "hub-key", ""},
                                 .auth_method = ClientAuthMethod::private_key_jwt},
            agent_clock_);
    }
    // A fresh token (as after a 401 from the hub's API), and that the hub's
    // API accepts it.
    Status fresh_token_works() {
        tokens_->invalidate();
        auto token = tokens_->access_token();
        if (!token) return std::unexpected(token.error());
        egress::HttpRequest request;
        request.method = "GET";
        request.url = hub_->url() + "/v1/agent/ping?agent_id=edge-1";
        request.authorization = egress::Authorization::bearer(*token);
        auto response = http_->send(request);
        if (!response) return std::unexpected(response.error());
        if (response->status != 200) {
            return fail(ErrorCode::internal, "ping: HTTP " + std::to_string(response->status));
        }
        return {};
    }

    fs::path dir_;
    std::string data_;
    std::ostringstream log_text_;
    hub::server::JsonLog log_{log_text_};
    hub::clock::ManualClock hub_clock_{util::unix_millis()};
    SharedClock agent_clock_{hub_clock_};
    std::unique_ptr<hub::server::Hub> hub_;
    std::thread server_;
    std::unique_ptr<egress::HttpClient> http_;
    std::unique_ptr<secrets::FileSecretStore> secrets_;
    std::unique_ptr<TokenClient> tokens_;
};

TEST_F(HubPrivateKeyJwtTest, AgentGetsTokensWithItsKeyAndKeepsThemThroughRotations) {
    const TestKey first = TestKey::generate("ES256");
    const TestKey second = TestKey::generate("EdDSA");
    const TestKey third = TestKey::generate("RS256");
    const std::string client_id = create_app(first);
    ASSERT_FALSE(client_id.empty());
    store_agent_key(first);
    start_agent(client_id);
    auto ok = fresh_token_works();
    ASSERT_TRUE(ok.has_value()) << ok.error().describe();
    ok = fresh_token_works();  // a second assertion (new jti) passes too
    ASSERT_TRUE(ok.has_value()) << ok.error().describe();

    // Rotation with overlap: the hub learns the new key first; the agent
    // still on the old key keeps working, then switches without a restart.
    set_key(second, 60);
    ok = fresh_token_works();
    EXPECT_TRUE(ok.has_value()) << "old key during the overlap: " << ok.error().describe();
    store_agent_key(second);
    ok = fresh_token_works();
    EXPECT_TRUE(ok.has_value()) << "new key: " << ok.error().describe();

    // After the overlap the old key is refused, with invalid_client.
    hub_clock_.advance_ms(180'000);
    store_agent_key(first);
    auto refused = [&] {
        tokens_->invalidate();
        return tokens_->access_token();
    }();
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, ErrorCode::unauthenticated) << refused.error().describe();
    store_agent_key(second);
    ok = fresh_token_works();
    EXPECT_TRUE(ok.has_value()) << ok.error().describe();

    // Rotation without overlap to an RSA key: refused until the agent's key
    // is replaced, then tokens again, same TokenClient.
    set_key(third, 0);
    tokens_->invalidate();
    EXPECT_FALSE(tokens_->access_token().has_value());
    store_agent_key(third);
    ok = fresh_token_works();
    EXPECT_TRUE(ok.has_value()) << ok.error().describe();

    // The hub's log names the method and never the assertion.
    const std::string log = log_text_.str();
    EXPECT_NE(log.find("via private_key_jwt"), std::string::npos);
    EXPECT_EQ(log.find("eyJ"), std::string::npos);  // no JWS anywhere
}

}  // namespace
}  // namespace sa::agent::auth
