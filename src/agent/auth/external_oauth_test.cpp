// TokenClient + a real egress::HttpClient against a real, external OAuth 2.0
// server: oidc-provider (tests/integration/oidc/server.mjs), started by
// tests/integration/oauth_external_test.sh, which sets the environment below.
// Without it every test is skipped. Not registered with ctest on its own.
//
// Environment (all required):
//   SA_OIDC_TOKEN_URL, SA_OIDC_ISSUER, SA_OIDC_CA_FILE, SA_OIDC_RESOURCE
//   SA_OIDC_BASIC_CLIENT_ID, SA_OIDC_BASIC_SECRET_FILE        client_secret_basic
//   SA_OIDC_POST_CLIENT_ID, SA_OIDC_POST_SECRET_FILE          client_secret_post
//   SA_OIDC_JWT_CLIENT_ID, SA_OIDC_JWT_KEY_DIR                private_key_jwt; the
//       directory holds ec.pem, rsa.pem and ed25519.pem, registered with the
//       server under kid "ec", "rsa" and "ed25519"
//   SA_OIDC_ROTATING_CLIENT_ID, SA_OIDC_ROTATING_SECRET_FILE  a client_secret_basic
//       client whose secret file the SERVER reads at every request: this test
//       rewrites it to rotate the secret
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/auth/token_client.h"
#include "agent/egress/http_client.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"

namespace sa::agent::auth {
namespace {

using secrets::SecretRef;
using secrets::SecretValue;

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value == nullptr ? std::string() : std::string(value);
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// Replaces a file the server reads, atomically and private.
void write_private(const std::string& path, const std::string& content) {
    const std::string temp = path + ".tmp";
    {
        std::ofstream out(temp, std::ios::binary | std::ios::trunc);
        out << content;
    }
    ::chmod(temp.c_str(), 0600);
    std::filesystem::rename(temp, path);
}

nlohmann::json jwt_part(std::string_view jwt, int index) {
    size_t start = 0;
    for (int i = 0; i < index; ++i) start = jwt.find('.', start) + 1;
    const size_t end = jwt.find('.', start);
    return nlohmann::json::parse(
        crypto::base64url_decode(jwt.substr(start, end - start)).value_or("null"), nullptr, false);
}

// The credentials this test hands the TokenClient: "files/PATH" reads PATH;
// "memory/NAME" is a value the test sets (the operator's secret store).
class Credentials {
  public:
    secrets::CredentialReader reader() {
        return [this](const SecretRef& ref) -> Result<SecretValue> {
            ++reads;
            if (ref.store == "files") {
                std::string content = read_text(ref.path);
                if (content.empty()) return fail(ErrorCode::not_found, "no file " + ref.path);
                return SecretValue::from(std::move(content));
            }
            std::lock_guard lock(mutex_);
            auto it = memory_.find(ref.path);
            if (it == memory_.end()) return fail(ErrorCode::not_found, "no secret " + ref.path);
            return SecretValue::copy_of(it->second);
        };
    }
    void set(const std::string& name, std::string value) {
        std::lock_guard lock(mutex_);
        memory_[name] = std::move(value);
    }
    std::atomic<int> reads{0};

  private:
    std::mutex mutex_;
    std::map<std::string, std::string> memory_;
};

class ExternalOAuthTest : public ::testing::Test {
  protected:
    void SetUp() override {
        for (const char* name :
             {"SA_OIDC_TOKEN_URL", "SA_OIDC_ISSUER", "SA_OIDC_CA_FILE", "SA_OIDC_RESOURCE",
              "SA_OIDC_BASIC_CLIENT_ID", "SA_OIDC_BASIC_SECRET_FILE", "SA_OIDC_POST_CLIENT_ID",
              "SA_OIDC_POST_SECRET_FILE", "SA_OIDC_JWT_CLIENT_ID", "SA_OIDC_JWT_KEY_DIR",
              "SA_OIDC_ROTATING_CLIENT_ID", "SA_OIDC_ROTATING_SECRET_FILE"}) {
            if (env(name).empty()) {
                GTEST_SKIP() << name << " is not set: run tests/integration/oauth_external_test.sh";
            }
        }
        egress::HttpClient::Options options;
        options.ca_file = env("SA_OIDC_CA_FILE");
        auto http = egress::HttpClient::create(options);
        ASSERT_TRUE(http) << http.error().describe();
        http_ = std::make_unique<egress::HttpClient>(std::move(*http));
    }

    std::unique_ptr<TokenClient> client(const std::string& client_id, ClientAuthMethod method,
                                        SecretRef credential, std::string key_id = {}) {
        TokenClient::Options options;
        options.token_url = env("SA_OIDC_TOKEN_URL");
        options.client_id = client_id;
        options.client_secret = std::move(credential);
        options.auth_method = method;
        options.key_id = std::move(key_id);
        options.server_name = "identity provider";
        options.timeout = std::chrono::seconds(10);
        options.observer = [this](std::string_view, long status) {
            ++requests_;
            last_status_ = status;
        };
        return std::make_unique<TokenClient>(*http_, credentials_.reader(), std::move(options),
                                             clock_);
    }

    // The access token is a JWT access token (RFC 9068) for our resource and client.
    void expect_access_token_for(const Result<SecretValue>& token, const std::string& client_id) {
        ASSERT_TRUE(token) << token.error().describe();
        const auto header = jwt_part(token->reveal(), 0);
        const auto claims = jwt_part(token->reveal(), 1);
        ASSERT_TRUE(claims.is_object()) << "the access token is not a JWT";
        EXPECT_EQ(header.value("typ", ""), "at+jwt");
        EXPECT_EQ(claims.value("aud", ""), env("SA_OIDC_RESOURCE"));
        EXPECT_EQ(claims.value("client_id", ""), client_id);
        EXPECT_EQ(claims.value("iss", ""), env("SA_OIDC_ISSUER"));
        ASSERT_TRUE(claims.contains("exp") && claims.contains("iat"));
        EXPECT_GT(claims["exp"].get<int64_t>(), claims["iat"].get<int64_t>());
    }

    SystemClock clock_;
    std::unique_ptr<egress::HttpClient> http_;
    Credentials credentials_;
    std::atomic<int> requests_{0};
    std::atomic<long> last_status_{0};
};

TEST_F(ExternalOAuthTest, ClientSecretBasic) {
    const std::string id = env("SA_OIDC_BASIC_CLIENT_ID");
    auto tokens = client(id, ClientAuthMethod::client_secret_basic,
                         {"files", env("SA_OIDC_BASIC_SECRET_FILE"), ""});
    expect_access_token_for(tokens->access_token(), id);
    EXPECT_EQ(last_status_.load(), 200);
    // Cached: a second call sends nothing.
    EXPECT_TRUE(tokens->access_token());
    EXPECT_EQ(requests_.load(), 1);
    // The server's expires_in (600 s) sets the refresh time.
    EXPECT_NEAR(static_cast<double>(tokens->refresh_at()),
                static_cast<double>(clock_.now_seconds() + 600 - 60), 5.0);
}

TEST_F(ExternalOAuthTest, ClientSecretPost) {
    const std::string id = env("SA_OIDC_POST_CLIENT_ID");
    auto tokens = client(id, ClientAuthMethod::client_secret_post,
                         {"files", env("SA_OIDC_POST_SECRET_FILE"), ""});
    expect_access_token_for(tokens->access_token(), id);
}

TEST_F(ExternalOAuthTest, PrivateKeyJwtWithEachKeyType) {
    const std::string id = env("SA_OIDC_JWT_CLIENT_ID");
    for (const std::string kid : {"ec", "rsa", "ed25519"}) {
        SCOPED_TRACE(kid);
        auto tokens = client(id, ClientAuthMethod::private_key_jwt,
                             {"files", env("SA_OIDC_JWT_KEY_DIR") + "/" + kid + ".pem", ""}, kid);
        expect_access_token_for(tokens->access_token(), id);
        // A second assertion (new jti) is accepted too: no replay.
        tokens->invalidate();
        expect_access_token_for(tokens->access_token(), id);
    }
}

TEST_F(ExternalOAuthTest, WrongCredentialsAreUnauthenticated) {
    credentials_.set("wrong", "not-the-secret");
    for (const auto& [id, method] :
         {std::pair{env("SA_OIDC_BASIC_CLIENT_ID"), ClientAuthMethod::client_secret_basic},
          std::pair{env("SA_OIDC_POST_CLIENT_ID"), ClientAuthMethod::client_secret_post}}) {
        SCOPED_TRACE(to_string(method));
        auto tokens = client(id, method, {"memory", "wrong", ""});
        auto token = tokens->access_token();
        ASSERT_FALSE(token);
        EXPECT_EQ(token.error().code, ErrorCode::unauthenticated) << token.error().describe();
        EXPECT_EQ(token.error().message.find("not-the-secret"), std::string::npos);
        EXPECT_EQ(last_status_.load(), 401);
    }
    // A key the server does not know for this client (signed as "ec", but
    // with the RSA key) is refused the same way.
    auto tokens = client(env("SA_OIDC_JWT_CLIENT_ID"), ClientAuthMethod::private_key_jwt,
                         {"files", env("SA_OIDC_JWT_KEY_DIR") + "/ed25519.pem", ""}, "ec");
    auto token = tokens->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unauthenticated) << token.error().describe();
}

TEST_F(ExternalOAuthTest, RotatedSecretIsPickedUpAfterInvalidate) {
    const std::string id = env("SA_OIDC_ROTATING_CLIENT_ID");
    const std::string server_file = env("SA_OIDC_ROTATING_SECRET_FILE");
    credentials_.set("rotating", read_text(server_file));
    auto tokens = client(id, ClientAuthMethod::client_secret_basic, {"memory", "rotating", ""});
    expect_access_token_for(tokens->access_token(), id);

    // The server's secret changes; the agent's secret store still has the old one.
    const std::string rotated = crypto::random_token(24) + "+/:%";
    write_private(server_file, rotated);
    EXPECT_TRUE(tokens->access_token());  // the cached token is still in use
    EXPECT_EQ(requests_.load(), 1);
    tokens->invalidate();  // e.g. the resource server answered 401
    auto refused = tokens->access_token();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::unauthenticated);

    // The operator updates the secret store: no restart, no new TokenClient.
    credentials_.set("rotating", rotated);
    tokens->invalidate();
    expect_access_token_for(tokens->access_token(), id);
    EXPECT_EQ(requests_.load(), 3);
}

TEST_F(ExternalOAuthTest, ConcurrentCallersShareOneTokenRequest) {
    const std::string id = env("SA_OIDC_POST_CLIENT_ID");
    auto tokens = client(id, ClientAuthMethod::client_secret_post,
                         {"files", env("SA_OIDC_POST_SECRET_FILE"), ""});
    constexpr int kThreads = 8;
    std::latch start(kThreads);
    std::vector<std::string> seen(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            start.arrive_and_wait();
            auto token = tokens->access_token();
            if (token) seen[static_cast<size_t>(i)] = std::string(token->reveal());
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(requests_.load(), 1);
    for (const auto& token : seen) {
        EXPECT_FALSE(token.empty());
        EXPECT_EQ(token, seen[0]);
    }
}

}  // namespace
}  // namespace sa::agent::auth
