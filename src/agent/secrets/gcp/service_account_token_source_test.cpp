#include "agent/secrets/gcp/service_account_token_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "agent/secrets/gcp/testing/gcp_test_server.h"
#include "common/util/time.h"

namespace sa::agent::secrets::gcp {
namespace {

using testing::FakeClock;
using testing::FakeSecretManager;
using testing::TestNetwork;
using testing::TestServiceAccount;

const TestServiceAccount& account() {
    static const TestServiceAccount a = TestServiceAccount::generate();
    return a;
}
const TestServiceAccount& other_account() {
    static const TestServiceAccount a = TestServiceAccount::generate();
    return a;
}

class ServiceAccountTokenSourceTest : public ::testing::Test {
  protected:
    void SetUp() override {
        api_.start();
        network_ = std::make_unique<TestNetwork>(api_.port(), 0);
        key_json_ = account().key_json(api_.url("/token"));
    }
    void TearDown() override {
        api_.stop();
        EXPECT_TRUE(api_.problems().empty()) << api_.problems().front();
    }

    GcpAuthSettings settings() const {
        GcpAuthSettings s;
        s.method = "service_account_key";
        s.key = SecretRef{.store = "files", .path = "gcp/key.json", .key = ""};
        return s;
    }

    CredentialReader reader() {
        return [this](const SecretRef& ref) -> Result<SecretValue> {
            ++reads_;
            EXPECT_EQ(ref.to_string(), "files/gcp/key.json");
            if (read_error_) return std::unexpected(*read_error_);
            return SecretValue::copy_of(key_json_);
        };
    }

    std::unique_ptr<ServiceAccountTokenSource> source() {
        auto made = ServiceAccountTokenSource::create(settings(), std::chrono::seconds(5),
                                                      network_->transport(), reader(), clock_);
        EXPECT_TRUE(made) << made.error().describe();
        return made ? std::move(*made) : nullptr;
    }

    FakeClock clock_{util::unix_seconds()};
    FakeSecretManager api_{"test-project", account()};
    std::unique_ptr<TestNetwork> network_;
    std::string key_json_;
    std::optional<Error> read_error_;
    std::atomic<int> reads_{0};
};

TEST_F(ServiceAccountTokenSourceTest, ExchangesASignedAssertionForAToken) {
    auto tokens = source();
    auto token = tokens->access_token();
    ASSERT_TRUE(token) << token.error().describe();
    EXPECT_TRUE(token->reveal().starts_with("ya29.c.test-"));
    EXPECT_EQ(api_.token_requests(), 1);
    EXPECT_EQ(reads_, 1);
}

TEST_F(ServiceAccountTokenSourceTest, PostsToTheKeysTokenUriWithTheTimeout) {
    auto recording = std::make_unique<testing::RecordingTransport>(network_->transport());
    auto* recorder = recording.get();
    auto tokens = ServiceAccountTokenSource::create(settings(), std::chrono::seconds(4),
                                                    std::move(recording), reader(), clock_);
    ASSERT_TRUE(tokens);
    ASSERT_TRUE((*tokens)->access_token());
    const auto sent = recorder->sent();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].method, "POST");
    EXPECT_EQ(sent[0].url, api_.url("/token"));
    EXPECT_EQ(sent[0].timeout, std::chrono::seconds(4));
    EXPECT_FALSE(sent[0].bearer);
}

TEST_F(ServiceAccountTokenSourceTest, ReadsTheKeyJustInTimeForEachExchange) {
    api_.set_token_lifetime(3600);
    auto tokens = source();
    ASSERT_TRUE(tokens->access_token());
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(reads_, 1);  // the token is cached, the key is not
    clock_.advance(3300);
    api_.set_now(clock_.now_seconds());
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(reads_, 2);
    tokens->invalidate();
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(reads_, 3);
    EXPECT_EQ(api_.token_requests(), 3);
}

TEST_F(ServiceAccountTokenSourceTest, WrongKeyIsPermissionDeniedAndRotationIsPickedUp) {
    auto tokens = source();
    key_json_ = other_account().key_json(api_.url("/token"));
    auto refused = tokens->access_token();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::permission_denied);
    EXPECT_NE(refused.error().message.find("invalid_grant: Invalid JWT Signature."),
              std::string::npos)
        << refused.error().message;
    EXPECT_EQ(refused.error().message.find("PRIVATE KEY"), std::string::npos);
    // The key file is fixed: the next exchange reads it again.
    key_json_ = account().key_json(api_.url("/token"));
    auto token = tokens->access_token();
    EXPECT_TRUE(token) << token.error().describe();
}

TEST_F(ServiceAccountTokenSourceTest, UnreadableKeyKeepsTheStoreErrorKind) {
    read_error_ =
        Error{ErrorCode::not_found, "secret store \"files\" path \"gcp/key.json\": no file"};
    auto token = source()->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::not_found);
    EXPECT_NE(token.error().message.find("files/gcp/key.json"), std::string::npos);
    EXPECT_EQ(api_.token_requests(), 0);
}

TEST_F(ServiceAccountTokenSourceTest, NotAServiceAccountKeyIsInvalidArgument) {
    auto doc = nlohmann::json::parse(key_json_);
    doc["type"] = "authorized_user";
    key_json_ = doc.dump();
    auto token = source()->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(token.error().message.find("PRIVATE KEY"), std::string::npos);

    key_json_ = "-----BEGIN PRIVATE KEY-----\nnot json";
    auto garbage = source()->access_token();
    ASSERT_FALSE(garbage);
    EXPECT_EQ(garbage.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(garbage.error().message.find("PRIVATE KEY"), std::string::npos);

    doc = nlohmann::json::parse(account().key_json(api_.url("/token")));
    doc.erase("private_key");
    key_json_ = doc.dump();
    auto no_key = source()->access_token();
    ASSERT_FALSE(no_key);
    EXPECT_NE(no_key.error().message.find("private_key"), std::string::npos);
    EXPECT_EQ(api_.token_requests(), 0);
}

TEST_F(ServiceAccountTokenSourceTest, TokenEndpointDownIsUnavailable) {
    auto tokens = source();
    api_.stop();
    auto token = tokens->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
}

TEST_F(ServiceAccountTokenSourceTest, DefaultTokenUriMustBeAllowedByTheEgressPolicy) {
    auto doc = nlohmann::json::parse(key_json_);
    doc.erase("token_uri");
    key_json_ = doc.dump();
    auto token = source()->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_NE(token.error().message.find("oauth2.googleapis.com"), std::string::npos)
        << token.error().message;
}

TEST_F(ServiceAccountTokenSourceTest, RejectsBadSettings) {
    GcpAuthSettings no_key = settings();
    no_key.key = {};
    auto made = ServiceAccountTokenSource::create(no_key, std::chrono::seconds(5),
                                                  network_->transport(), reader(), clock_);
    ASSERT_FALSE(made);
    EXPECT_NE(made.error().message.find("auth.key"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::secrets::gcp
