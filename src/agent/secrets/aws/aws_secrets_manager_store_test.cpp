#include "agent/secrets/aws/aws_secrets_manager_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/secrets/aws/testing/fake_aws.h"
#include "agent/secrets/http_store.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::aws {
namespace {

using fake::FakeAws;
using fake::FakeClock;

constexpr int64_t kStart = 1767225600;  // 2026-01-01T00:00:00Z
constexpr const char* kKeyId = "AKIDTESTSTORE";
constexpr const char* kSecretKey = "testSecretKey/ExampleOnly+0123456789abcdef";
constexpr const char* kRoleArn = "arn:aws:iam::123456789012:role/secure-agent";

// Forwards to a real HttpClient and remembers what the store asked for.
class RecordingTransport final : public egress::Transport {
  public:
    explicit RecordingTransport(egress::HttpClient client) : client_(std::move(client)) {}
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        {
            std::lock_guard lock(mutex_);
            timeouts.push_back(request.timeout);
        }
        return client_.send(request);
    }
    std::mutex mutex_;
    std::vector<std::chrono::milliseconds> timeouts;

  private:
    egress::HttpClient client_;
};

class AwsStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ca_file_ =
            agent::testing::write_test_file(dir_.file("ca.pem"), agent::testing::pki().ca.cert_pem);
        aws_.add_access_key(kKeyId, kSecretKey);
        credentials_["local/aws-key-id"] = kKeyId;
        credentials_["local/aws-secret-key"] = kSecretKey;
        aws_.start();
    }
    void TearDown() override {
        for (const auto& violation : aws_.violations()) ADD_FAILURE() << violation;
    }

    AwsSecretsManagerSettings static_settings() {
        AwsSecretsManagerSettings settings;
        settings.region = FakeAws::kRegion;
        settings.endpoint = aws_.secrets_url();
        settings.auth.method = "static";
        settings.auth.access_key_id = SecretRef{"local", "aws-key-id", ""};
        settings.auth.secret_access_key = SecretRef{"local", "aws-secret-key", ""};
        return settings;
    }

    AwsSecretsManagerSettings web_identity_settings(const std::string& token) {
        write_token(token);
        aws_.expect_web_identity(kRoleArn, token);
        AwsSecretsManagerSettings settings;
        settings.region = FakeAws::kRegion;
        settings.endpoint = aws_.secrets_url();
        settings.auth.method = "web_identity";
        settings.auth.role_arn = kRoleArn;
        settings.auth.token_file = dir_.file("token");
        settings.auth.sts_endpoint = aws_.sts_url();
        return settings;
    }

    void write_token(const std::string& token) {
        std::ofstream(dir_.file("token"), std::ios::trunc) << token << "\n";
    }

    CredentialReader reader() {
        return [this](const SecretRef& ref) -> Result<SecretValue> {
            std::lock_guard lock(credentials_mutex_);
            ++credential_reads_;
            auto it = credentials_.find(ref.to_string());
            if (it == credentials_.end()) {
                return fail(ErrorCode::not_found, "no credential " + ref.to_string());
            }
            return SecretValue::copy_of(it->second);
        };
    }

    std::unique_ptr<egress::Transport> client() {
        egress::HttpClient::Options options;
        options.ca_file = ca_file_;
        options.connect_timeout = std::chrono::milliseconds(5000);
        auto made = egress::HttpClient::create(options);
        EXPECT_TRUE(made.has_value());
        auto transport = std::make_unique<RecordingTransport>(std::move(*made));
        recorder_ = transport.get();
        return transport;
    }

    std::unique_ptr<AwsSecretsManagerStore> make(AwsSecretsManagerSettings settings) {
        auto store =
            AwsSecretsManagerStore::create("aws", std::move(settings), reader(), client(), &clock_);
        EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().describe());
        return store ? std::move(*store) : nullptr;
    }

    void set_credential(const std::string& ref, const std::string& value) {
        std::lock_guard lock(credentials_mutex_);
        credentials_[ref] = value;
    }

    static void expect_error(const Result<SecretValue>& result, ErrorCode code,
                             const std::string& path, const std::string& fragment) {
        ASSERT_FALSE(result.has_value());
        EXPECT_EQ(result.error().code, code) << result.error().describe();
        EXPECT_TRUE(result.error().message.starts_with(store_where("aws", path)))
            << result.error().message;
        EXPECT_NE(result.error().message.find(fragment), std::string::npos)
            << result.error().message;
        EXPECT_EQ(result.error().message.find(kSecretKey), std::string::npos);
    }

    sa::testing::TempDir dir_{"sa-aws-"};
    std::string ca_file_;
    FakeClock clock_{kStart};
    FakeAws aws_{clock_};
    std::mutex credentials_mutex_;
    std::map<std::string, std::string> credentials_;
    int credential_reads_ = 0;
    RecordingTransport* recorder_ = nullptr;
};

SecretRef secret_ref(const std::string& path, const std::string& key = "") {
    return SecretRef{"aws", path, key};
}

// --- static credentials ------------------------------------------------------

TEST_F(AwsStoreTest, ReadsTheWholeSecretString) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto store = make(static_settings());
    auto value = store->read(secret_ref("prod/db"));
    ASSERT_TRUE(value.has_value()) << value.error().describe();
    EXPECT_EQ(value->reveal(), "plain-secret-value");
    EXPECT_EQ(aws_.get_secret_value_calls(), 1);
    EXPECT_EQ(aws_.signature_failures(), 0);
}

TEST_F(AwsStoreTest, SelectsJsonKeysIncludingDottedOnes) {
    aws_.put_string(
        "prod/db", R"({"username":"app","password":"pw-0123456","nested":{"inner":"deep-value"}})");
    auto store = make(static_settings());
    EXPECT_EQ(store->read(secret_ref("prod/db", "password"))->reveal(), "pw-0123456");
    EXPECT_EQ(store->read(secret_ref("prod/db", "nested.inner"))->reveal(), "deep-value");
    auto missing = store->read(secret_ref("prod/db", "nope"));
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
    EXPECT_EQ(missing.error().message.find("pw-0123456"), std::string::npos);
}

TEST_F(AwsStoreTest, RotatedValueAndVersionStageSuffix) {
    aws_.put_string("prod/db", "first-value");
    auto store = make(static_settings());
    EXPECT_EQ(store->read(secret_ref("prod/db"))->reveal(), "first-value");
    aws_.put_string("prod/db", "second-value");  // rotation
    EXPECT_EQ(store->read(secret_ref("prod/db"))->reveal(), "second-value");
    EXPECT_EQ(store->read(secret_ref("prod/db@AWSPREVIOUS"))->reveal(), "first-value");
    EXPECT_EQ(store->read(secret_ref("prod/db@AWSCURRENT"))->reveal(), "second-value");
    expect_error(store->read(secret_ref("prod/db@NOSUCHSTAGE")), ErrorCode::not_found,
                 "prod/db@NOSUCHSTAGE", "ResourceNotFoundException");
    auto empty_stage = store->read(secret_ref("prod/db@"));
    ASSERT_FALSE(empty_stage.has_value());
    EXPECT_EQ(empty_stage.error().code, ErrorCode::invalid_argument);
}

TEST_F(AwsStoreTest, SecretIdMayBeAnArn) {
    aws_.put_string("team@corp/db", "arn-value");
    auto store = make(static_settings());
    EXPECT_EQ(store->read(secret_ref(FakeAws::arn_of("team@corp/db") + "@AWSCURRENT"))->reveal(),
              "arn-value");
    // A name with '@' needs the explicit stage: the last '@' starts it.
    EXPECT_EQ(store->read(secret_ref("team@corp/db@AWSCURRENT"))->reveal(), "arn-value");
}

TEST_F(AwsStoreTest, BinarySecretIsItsDecodedBytes) {
    const std::string bytes(
        "\x00\x01\xfe\xff"
        "binary",
        10);
    aws_.put_binary("certs/key", bytes);
    auto store = make(static_settings());
    auto value = store->read(secret_ref("certs/key"));
    ASSERT_TRUE(value.has_value()) << value.error().describe();
    EXPECT_EQ(value->reveal(), bytes);
    expect_error(store->read(secret_ref("certs/key", "field")), ErrorCode::invalid_argument,
                 "certs/key", "binary");
}

TEST_F(AwsStoreTest, NotFoundAndPermissionDenied) {
    aws_.put_string("locked", "locked-value");
    aws_.deny("locked");
    auto store = make(static_settings());
    expect_error(store->read(secret_ref("missing")), ErrorCode::not_found, "missing",
                 "HTTP 400: ResourceNotFoundException: Secrets Manager can't find");
    expect_error(store->read(secret_ref("locked")), ErrorCode::permission_denied, "locked",
                 "HTTP 400: AccessDeniedException: User: arn:aws:sts");
}

TEST_F(AwsStoreTest, WrongSecretKeyFailsTheServersSignatureCheck) {
    aws_.put_string("prod/db", "plain-secret-value");
    set_credential("local/aws-secret-key", "not-the-right-secret-key-000000");
    auto store = make(static_settings());
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::permission_denied, "prod/db",
                 "InvalidSignatureException");
    EXPECT_EQ(aws_.signature_failures(), 1);

    set_credential("local/aws-key-id", "AKIDUNKNOWN");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::permission_denied, "prod/db",
                 "UnrecognizedClientException");
}

TEST_F(AwsStoreTest, CredentialsAreReadForEachRequest) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto store = make(static_settings());
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    EXPECT_EQ(credential_reads_, 2);
    // Key rotation: the next request signs with the new key.
    aws_.add_access_key("AKIDROTATED", "rotated-secret-key-0123456789");
    set_credential("local/aws-key-id", "AKIDROTATED");
    set_credential("local/aws-secret-key", "rotated-secret-key-0123456789");
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    EXPECT_EQ(credential_reads_, 4);

    credentials_.erase("local/aws-secret-key");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::not_found, "prod/db",
                 "auth.secret_access_key");
}

TEST_F(AwsStoreTest, StaticSessionTokenIsSentAndSigned) {
    aws_.put_string("prod/db", "plain-secret-value");
    aws_.add_access_key("ASIASTATIC", "session-secret-key-0123456789", "session-token-value-42");
    set_credential("local/aws-key-id", "ASIASTATIC");
    set_credential("local/aws-secret-key", "session-secret-key-0123456789");
    auto without = make(static_settings());
    expect_error(without->read(secret_ref("prod/db")), ErrorCode::permission_denied, "prod/db",
                 "UnrecognizedClientException");

    set_credential("local/aws-session-token", "session-token-value-42");
    auto settings = static_settings();
    settings.auth.session_token = SecretRef{"local", "aws-session-token", ""};
    auto with = make(settings);
    auto value = with->read(secret_ref("prod/db"));
    ASSERT_TRUE(value.has_value()) << value.error().describe();
    EXPECT_EQ(value->reveal(), "plain-secret-value");
}

TEST_F(AwsStoreTest, ExpiredTokenWithStaticCredentialsIsNotRetried) {
    aws_.put_string("prod/db", "plain-secret-value");
    aws_.fail_next(
        400,
        R"({"__type":"ExpiredTokenException","message":"The security token included in the request is expired"})");
    auto store = make(static_settings());
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::permission_denied, "prod/db",
                 "ExpiredTokenException");
    EXPECT_EQ(aws_.get_secret_value_calls(), 1);
}

TEST_F(AwsStoreTest, UnavailableAnswersAndConnectionRefused) {
    auto store = make(static_settings());
    aws_.fail_next(
        500,
        R"({"__type":"InternalServiceError","message":"An error occurred on the server side."})");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "HTTP 500: InternalServiceError");
    aws_.fail_next(
        400,
        R"({"__type":"com.amazonaws.secretsmanager#ThrottlingException","message":"Rate exceeded"})");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "HTTP 400: ThrottlingException: Rate exceeded");
    aws_.fail_next(503, "<html>Service Unavailable</html>", "text/html");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "HTTP 503: <html>Service Unavailable</html>");

    // A port where nothing listens any more.
    int closed_port = 0;
    {
        agent::testing::TlsTestServer gone(agent::testing::pki());
        gone.start();
        closed_port = gone.port();
    }
    auto settings = static_settings();
    settings.endpoint = "https://127.0.0.1:" + std::to_string(closed_port);
    auto refused = make(settings);
    expect_error(refused->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db", "");
}

TEST_F(AwsStoreTest, MalformedAnswersAreInvalidArgumentNotACrash) {
    auto store = make(static_settings());
    for (const std::string body :
         {"not json", "[]", "{}", R"({"SecretString":42})", R"({"SecretBinary":"!!!"})"}) {
        aws_.fail_next(200, body);
        auto result = store->read(secret_ref("prod/db"));
        ASSERT_FALSE(result.has_value()) << body;
        EXPECT_EQ(result.error().code, ErrorCode::invalid_argument) << body;
    }
    aws_.fail_next(400, R"({"__type": 7})");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::invalid_argument, "prod/db",
                 "HTTP 400");
}

TEST_F(AwsStoreTest, ErrorBodiesAreQuotedOnlyThroughErrorDetail) {
    auto store = make(static_settings());
    const std::string long_message = "line one\nline two\r\n" + std::string(600, 'x');
    aws_.fail_next(
        400,
        nlohmann::json{{"__type", "InvalidRequestException"}, {"message", long_message}}.dump());
    auto result = store->read(secret_ref("prod/db"));
    expect_error(result, ErrorCode::invalid_argument, "prod/db",
                 "InvalidRequestException: line one line two");
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().message.find('\n'), std::string::npos);
    EXPECT_LT(result.error().message.size(), store_where("aws", "prod/db").size() + 230);
}

TEST_F(AwsStoreTest, ConcurrentReadsFromFourThreads) {
    aws_.put_string("prod/db", R"({"password":"concurrent-value"})");
    auto store = make(static_settings());
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 5; ++i) {
                auto value = store->read(secret_ref("prod/db", "password"));
                if (value && value->reveal() == "concurrent-value") ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok.load(), 20);
    EXPECT_EQ(aws_.get_secret_value_calls(), 20);
}

TEST_F(AwsStoreTest, EveryRequestCarriesTheConfiguredTimeout) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto settings = static_settings();
    settings.timeout_seconds = 7;
    auto store = make(settings);
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    ASSERT_EQ(recorder_->timeouts.size(), 1U);
    EXPECT_EQ(recorder_->timeouts[0], std::chrono::milliseconds(7000));
}

TEST_F(AwsStoreTest, CreateValidatesSettingsNamingTheField) {
    const auto error_of = [&](AwsSecretsManagerSettings settings) {
        auto store =
            AwsSecretsManagerStore::create("aws", std::move(settings), reader(), client(), &clock_);
        EXPECT_FALSE(store.has_value());
        return store ? std::string() : store.error().message;
    };
    auto s = static_settings();
    s.region = "";
    EXPECT_NE(error_of(s).find("region"), std::string::npos);
    s = static_settings();
    s.endpoint = "http://127.0.0.1:1";
    EXPECT_NE(error_of(s).find("endpoint"), std::string::npos);
    s = static_settings();
    s.endpoint = "https://secretsmanager.eu-west-1.amazonaws.com/path";
    EXPECT_NE(error_of(s).find("endpoint"), std::string::npos);
    s = static_settings();
    s.auth.method = "instance_profile";
    EXPECT_NE(error_of(s).find("auth.method"), std::string::npos);
    s = static_settings();
    s.auth.secret_access_key = {};
    EXPECT_NE(error_of(s).find("auth.secret_access_key"), std::string::npos);
    s = static_settings();
    s.timeout_seconds = 0;
    EXPECT_NE(error_of(s).find("timeout_seconds"), std::string::npos);
    s = web_identity_settings("token");
    s.auth.role_arn = "secure-agent";
    EXPECT_NE(error_of(s).find("auth.role_arn"), std::string::npos);
    s = web_identity_settings("token");
    s.auth.token_file = "";
    EXPECT_NE(error_of(s).find("auth.token_file"), std::string::npos);
    s = web_identity_settings("token");
    s.auth.session_name = "bad name";
    EXPECT_NE(error_of(s).find("auth.session_name"), std::string::npos);
    s = web_identity_settings("token");
    s.auth.sts_endpoint = "ftp://sts";
    EXPECT_NE(error_of(s).find("auth.sts_endpoint"), std::string::npos);
}

TEST(AwsEndpointTest, HostHeaderLeavesTheDefaultPortOut) {
    auto plain = parse_aws_endpoint("https://secretsmanager.eu-west-1.amazonaws.com");
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(plain->url, "https://secretsmanager.eu-west-1.amazonaws.com/");
    EXPECT_EQ(plain->host, "secretsmanager.eu-west-1.amazonaws.com");
    auto with_port = parse_aws_endpoint("https://Vpce.Example:443/");
    ASSERT_TRUE(with_port.has_value());
    EXPECT_EQ(with_port->host, "vpce.example");
    EXPECT_EQ(parse_aws_endpoint("https://127.0.0.1:8443")->host, "127.0.0.1:8443");
    EXPECT_FALSE(parse_aws_endpoint("https://user@host"));
    EXPECT_FALSE(parse_aws_endpoint("https://host?x=1"));
    EXPECT_FALSE(parse_aws_endpoint("https://"));
}

// --- web identity (EKS IRSA) ---------------------------------------------------

TEST_F(AwsStoreTest, WebIdentityAssumesTheRoleOnceAndReusesTheCredentials) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto store = make(web_identity_settings("eyJhbGciOiJSUzI1NiJ9.projected-token.sig"));
    for (int i = 0; i < 3; ++i) {
        auto value = store->read(secret_ref("prod/db"));
        ASSERT_TRUE(value.has_value()) << value.error().describe();
        EXPECT_EQ(value->reveal(), "plain-secret-value");
    }
    EXPECT_EQ(aws_.assume_role_calls(), 1);
    EXPECT_EQ(aws_.get_secret_value_calls(), 3);
    EXPECT_EQ(aws_.last_session_name(), "secure-agent");
    EXPECT_EQ(credential_reads_, 0);  // the reader is for static keys only
}

TEST_F(AwsStoreTest, WebIdentityRenewsFiveMinutesBeforeExpiryWithAFreshToken) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto settings = web_identity_settings("token-one");
    settings.auth.session_name = "agent-7";
    auto store = make(settings);
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    EXPECT_EQ(aws_.assume_role_calls(), 1);

    clock_.advance(3600 - 301);  // still more than 5 minutes left
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    EXPECT_EQ(aws_.assume_role_calls(), 1);

    // The kubelet rotated the projected token; STS now only accepts the new one.
    write_token("token-two");
    aws_.expect_web_identity(kRoleArn, "token-two");
    clock_.advance(2);  // within 5 minutes of Expiration
    auto value = store->read(secret_ref("prod/db"));
    ASSERT_TRUE(value.has_value()) << value.error().describe();
    EXPECT_EQ(aws_.assume_role_calls(), 2);
    EXPECT_EQ(aws_.last_session_name(), "agent-7");
}

TEST_F(AwsStoreTest, WebIdentityExpiredTokenReassumesAndRetriesOnce) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto store = make(web_identity_settings("token-one"));
    ASSERT_TRUE(store->read(secret_ref("prod/db")).has_value());
    aws_.expire_issued_credentials();  // e.g. the session was revoked
    auto value = store->read(secret_ref("prod/db"));
    ASSERT_TRUE(value.has_value()) << value.error().describe();
    EXPECT_EQ(value->reveal(), "plain-secret-value");
    EXPECT_EQ(aws_.assume_role_calls(), 2);
    EXPECT_EQ(aws_.get_secret_value_calls(), 3);
    EXPECT_EQ(aws_.signature_failures(), 1);
}

TEST_F(AwsStoreTest, WebIdentityStsErrors) {
    aws_.put_string("prod/db", "plain-secret-value");
    auto settings = web_identity_settings("the-right-token");
    auto store = make(settings);

    write_token("a-wrong-token");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::permission_denied, "prod/db",
                 "AssumeRoleWithWebIdentity: HTTP 400: InvalidIdentityToken");
    write_token("the-right-token");

    aws_.fail_next_sts(400,
                       "<ErrorResponse><Error><Type>Sender</Type><Code>IDPCommunicationError</Code>"
                       "<Message>The request could not be fulfilled because the identity "
                       "provider (IDP) that was asked to verify the incoming identity token could "
                       "not be reached.</Message></Error></ErrorResponse>");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "IDPCommunicationError");
    aws_.fail_next_sts(400,
                       "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded"
                       "</Message></Error></ErrorResponse>");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "Throttling");
    aws_.fail_next_sts(200, "<AssumeRoleWithWebIdentityResponse><broken>");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::invalid_argument, "prod/db",
                 "AssumeRoleWithWebIdentity");
    aws_.fail_next_sts(502, "bad gateway");
    expect_error(store->read(secret_ref("prod/db")), ErrorCode::unavailable, "prod/db",
                 "HTTP 502: bad gateway");
    EXPECT_EQ(aws_.get_secret_value_calls(), 0);

    auto other_role = web_identity_settings("the-right-token");
    other_role.auth.role_arn = "arn:aws:iam::123456789012:role/not-trusted";
    expect_error(make(other_role)->read(secret_ref("prod/db")), ErrorCode::permission_denied,
                 "prod/db", "HTTP 403: AccessDenied");

    std::filesystem::remove(dir_.file("token"));
    auto result = store->read(secret_ref("prod/db"));
    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().message.find("auth.token_file"), std::string::npos);
    EXPECT_EQ(aws_.get_secret_value_calls(), 0);
}

}  // namespace
}  // namespace sa::agent::secrets::aws
