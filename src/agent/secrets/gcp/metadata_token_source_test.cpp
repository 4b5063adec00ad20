#include "agent/secrets/gcp/metadata_token_source.h"

#include <gtest/gtest.h>

#include "agent/secrets/gcp/testing/gcp_test_server.h"

namespace sa::agent::secrets::gcp {
namespace {

using testing::FakeClock;
using testing::FakeMetadataServer;
using testing::TestNetwork;

constexpr int64_t kStart = 1'800'000'000;

class MetadataTokenSourceTest : public ::testing::Test {
  protected:
    void SetUp() override {
        server_.attach("agent@test-project.iam.gserviceaccount.com");
        server_.start();
        network_ = std::make_unique<TestNetwork>(1, server_.port());
    }
    void TearDown() override {
        server_.stop();
        EXPECT_TRUE(server_.problems().empty()) << server_.problems().front();
    }

    std::unique_ptr<MetadataTokenSource> source(GcpAuthSettings settings = {}) {
        if (settings.metadata_url == GcpAuthSettings{}.metadata_url) {
            settings.metadata_url = server_.url();
        }
        auto made = MetadataTokenSource::create(settings, std::chrono::seconds(5),
                                                network_->transport(), clock_);
        EXPECT_TRUE(made) << made.error().describe();
        return made ? std::move(*made) : nullptr;
    }

    FakeClock clock_{kStart};
    FakeMetadataServer server_;
    std::unique_ptr<TestNetwork> network_;
};

TEST_F(MetadataTokenSourceTest, FetchesTokenAndCachesIt) {
    auto tokens = source();
    ASSERT_NE(tokens, nullptr);
    EXPECT_EQ(tokens->token_url(),
              server_.url() + "/computeMetadata/v1/instance/service-accounts/default/token");
    auto first = tokens->access_token();
    ASSERT_TRUE(first) << first.error().describe();
    ASSERT_TRUE(first->reveal().starts_with("ya29.c.test-"));
    const std::string value(first->reveal());
    auto second = tokens->access_token();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->reveal(), value);
    EXPECT_EQ(server_.token_requests(), 1);
}

TEST_F(MetadataTokenSourceTest, SendsTheDocumentedRequestWithTheTimeout) {
    auto recording = std::make_unique<testing::RecordingTransport>(network_->transport());
    auto* recorder = recording.get();
    GcpAuthSettings settings;
    settings.metadata_url = server_.url() + "/";
    auto tokens = MetadataTokenSource::create(settings, std::chrono::seconds(3),
                                              std::move(recording), clock_);
    ASSERT_TRUE(tokens);
    ASSERT_TRUE((*tokens)->access_token());
    const auto sent = recorder->sent();
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].method, "GET");
    EXPECT_EQ(sent[0].url,
              server_.url() + "/computeMetadata/v1/instance/service-accounts/default/token");
    EXPECT_EQ(sent[0].timeout, std::chrono::seconds(3));
    EXPECT_FALSE(sent[0].bearer);
}

TEST_F(MetadataTokenSourceTest, RefreshesFiveMinutesBeforeExpiry) {
    server_.set_token_lifetime(3600);
    auto tokens = source();
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(tokens->refresh_at(), kStart + 3600 - 300);
    clock_.advance(3600 - 300 - 1);
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(server_.token_requests(), 1);
    clock_.advance(1);
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(server_.token_requests(), 2);
}

TEST_F(MetadataTokenSourceTest, ShortLivedTokenIsRefreshedHalfway) {
    server_.set_token_lifetime(100);
    auto tokens = source();
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(tokens->refresh_at(), kStart + 50);
}

TEST_F(MetadataTokenSourceTest, FailedEarlyRefreshUsesTokenUntilItExpires) {
    server_.set_token_lifetime(3600);
    auto tokens = source();
    auto first = tokens->access_token();
    ASSERT_TRUE(first);
    const std::string value(first->reveal());
    clock_.advance(3400);
    server_.fail_next(503, "try later");
    auto early = tokens->access_token();
    ASSERT_TRUE(early) << early.error().describe();
    EXPECT_EQ(early->reveal(), value);
    clock_.advance(200);  // expired now
    server_.fail_next(503, "try later");
    auto expired = tokens->access_token();
    ASSERT_FALSE(expired);
    EXPECT_EQ(expired.error().code, ErrorCode::unavailable);
    EXPECT_EQ(server_.token_requests(), 3);
}

TEST_F(MetadataTokenSourceTest, InvalidateFetchesANewToken) {
    auto tokens = source();
    ASSERT_TRUE(tokens->access_token());
    tokens->invalidate();
    EXPECT_EQ(tokens->refresh_at(), 0);
    ASSERT_TRUE(tokens->access_token());
    EXPECT_EQ(server_.token_requests(), 2);
}

TEST_F(MetadataTokenSourceTest, NamedServiceAccountByEmail) {
    GcpAuthSettings settings;
    settings.service_account = "agent@test-project.iam.gserviceaccount.com";
    auto tokens = source(settings);
    EXPECT_TRUE(tokens->token_url().ends_with(
        "/service-accounts/agent%40test-project.iam.gserviceaccount.com/token"));
    auto token = tokens->access_token();
    EXPECT_TRUE(token) << token.error().describe();
}

TEST_F(MetadataTokenSourceTest, AccountNotAttachedIsPermissionDenied) {
    GcpAuthSettings settings;
    settings.service_account = "other@test-project.iam.gserviceaccount.com";
    auto token = source(settings)->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_NE(token.error().message.find("HTTP 404"), std::string::npos) << token.error().message;
}

TEST_F(MetadataTokenSourceTest, AnswerWithoutMetadataFlavorIsRefused) {
    server_.set_impostor(true);
    auto token = source()->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(token.error().message.find("not the metadata server"), std::string::npos);
}

TEST_F(MetadataTokenSourceTest, ServerErrorIsUnavailable) {
    server_.fail_next(500, "internal\nerror");
    auto token = source()->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
    EXPECT_NE(token.error().message.find("HTTP 500: internal error"), std::string::npos)
        << token.error().message;
}

TEST_F(MetadataTokenSourceTest, MalformedAnswerIsInvalidArgument) {
    for (const char* body : {"not json", R"({"access_token":"x","token_type":"Bearer"})",
                             R"({"access_token":"x","expires_in":3599,"token_type":"MAC"})",
                             R"({"expires_in":3599,"token_type":"Bearer"})", "[]"}) {
        server_.fail_next(200, body);
        auto token = source()->access_token();
        ASSERT_FALSE(token) << body;
        EXPECT_EQ(token.error().code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(MetadataTokenSourceTest, ConnectionRefusedIsUnavailable) {
    auto tokens = source();
    server_.stop();
    auto token = tokens->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
}

TEST_F(MetadataTokenSourceTest, PlainHttpNeedsAPlaintextAllowRule) {
    TestNetwork strict(1, server_.port(), /*plaintext_rule=*/false);
    GcpAuthSettings settings;
    settings.metadata_url = server_.url();
    auto tokens =
        MetadataTokenSource::create(settings, std::chrono::seconds(5), strict.transport(), clock_);
    ASSERT_TRUE(tokens);
    auto token = (*tokens)->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(server_.token_requests(), 0);
}

TEST_F(MetadataTokenSourceTest, RejectsBadSettings) {
    GcpAuthSettings bad_url;
    bad_url.metadata_url = "metadata.google.internal";
    auto a = MetadataTokenSource::create(bad_url, std::chrono::seconds(5), network_->transport(),
                                         clock_);
    ASSERT_FALSE(a);
    EXPECT_NE(a.error().message.find("auth.metadata_url"), std::string::npos);

    GcpAuthSettings bad_account;
    bad_account.service_account = "a/b";
    auto b = MetadataTokenSource::create(bad_account, std::chrono::seconds(5),
                                         network_->transport(), clock_);
    ASSERT_FALSE(b);
    EXPECT_NE(b.error().message.find("auth.service_account"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::secrets::gcp
