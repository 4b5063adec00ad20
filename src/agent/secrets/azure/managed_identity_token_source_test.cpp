#include "agent/secrets/azure/managed_identity_token_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/secrets/azure/azure_test_server.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::azure {
namespace {

using testing::AzureTestServer;

class FakeClock final : public auth::Clock {
  public:
    int64_t now_seconds() const override { return now; }
    std::atomic<int64_t> now{1'700'000'000};
};

class ManagedIdentityTokenSourceTest : public ::testing::Test {
  protected:
    ManagedIdentityTokenSourceTest() {
        egress::PolicyOptions po;
        po.allow.push_back(egress::AllowRule{
            .host = "127.0.0.1", .port = server_.imds_port(), .plaintext_http = true});
        policy_ = std::make_unique<egress::EgressPolicy>(po);
    }
    void TearDown() override {
        for (const auto& v : server_.violations()) ADD_FAILURE() << "protocol violation: " << v;
    }

    std::unique_ptr<egress::Transport> transport(const egress::EgressPolicy* policy) {
        auto made = egress::HttpClient::create({.policy = policy});
        EXPECT_TRUE(made);
        return std::make_unique<egress::HttpClient>(std::move(*made));
    }

    std::unique_ptr<ManagedIdentityTokenSource> source(std::string client_id = {}) {
        ManagedIdentityTokenSource::Options options;
        options.endpoint = server_.imds_url();
        options.client_id = std::move(client_id);
        options.timeout = std::chrono::seconds(5);
        return std::make_unique<ManagedIdentityTokenSource>(transport(policy_.get()), options,
                                                            clock_);
    }

    static std::string token_of(ManagedIdentityTokenSource& source) {
        auto token = source.access_token();
        EXPECT_TRUE(token) << token.error().describe();
        return token ? std::string(token->reveal()) : std::string();
    }

    AzureTestServer server_;
    std::unique_ptr<egress::EgressPolicy> policy_;
    FakeClock clock_;
};

TEST_F(ManagedIdentityTokenSourceTest, FetchesOnceWithTheDocumentedRequestAndCaches) {
    auto tokens = source();
    const std::string first = token_of(*tokens);
    EXPECT_FALSE(first.empty());
    EXPECT_EQ(token_of(*tokens), first);
    EXPECT_EQ(server_.imds_requests(), 1);
}

TEST_F(ManagedIdentityTokenSourceTest, UserAssignedIdentityIsNamedByClientId) {
    server_.set_identities({"5a1c7c3e-0000-4000-8000-000000000001"});
    auto tokens = source("5a1c7c3e-0000-4000-8000-000000000001");
    EXPECT_FALSE(token_of(*tokens).empty());

    // The system-assigned identity is not assigned to this "VM".
    auto system = source();
    auto token = system->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_NE(token.error().message.find("Identity not found"), std::string::npos);
    EXPECT_NE(token.error().message.find("HTTP 400"), std::string::npos);
}

TEST_F(ManagedIdentityTokenSourceTest, RefreshesFiveMinutesBeforeExpiry) {
    server_.set_token_lifetime(3600);
    auto tokens = source();
    const int64_t start = clock_.now;
    const std::string first = token_of(*tokens);
    clock_.now = start + 3600 - 300 - 1;
    EXPECT_EQ(token_of(*tokens), first);
    EXPECT_EQ(server_.imds_requests(), 1);
    clock_.now = start + 3600 - 300;
    const std::string second = token_of(*tokens);
    EXPECT_NE(second, first);
    EXPECT_EQ(server_.imds_requests(), 2);
}

TEST_F(ManagedIdentityTokenSourceTest, ShortLifetimeRefreshesHalfway) {
    server_.set_token_lifetime(120);
    auto tokens = source();
    const int64_t start = clock_.now;
    const std::string first = token_of(*tokens);
    clock_.now = start + 59;
    EXPECT_EQ(token_of(*tokens), first);
    clock_.now = start + 60;
    EXPECT_NE(token_of(*tokens), first);
}

TEST_F(ManagedIdentityTokenSourceTest, InvalidateFetchesANewToken) {
    auto tokens = source();
    const std::string first = token_of(*tokens);
    tokens->invalidate();
    EXPECT_NE(token_of(*tokens), first);
    EXPECT_EQ(server_.imds_requests(), 2);
}

TEST_F(ManagedIdentityTokenSourceTest, ConcurrentCallersOnAnExpiredTokenShareOneRequest) {
    auto tokens = source();
    const std::string first = token_of(*tokens);
    clock_.now += 3600;  // expired
    std::vector<std::string> seen(8);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] { seen[t] = token_of(*tokens); });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(server_.imds_requests(), 2);
    for (const auto& token : seen) {
        EXPECT_EQ(token, seen[0]);
        EXPECT_NE(token, first);
    }
}

TEST_F(ManagedIdentityTokenSourceTest, FailedEarlyRefreshKeepsTheValidTokenUntilExpiry) {
    server_.set_token_lifetime(3600);
    auto tokens = source();
    const int64_t start = clock_.now;
    const std::string first = token_of(*tokens);
    server_.fail_imds(503, R"({"error":"service_unavailable","error_description":"busy"})", 2);
    clock_.now = start + 3400;  // inside the refresh margin
    EXPECT_EQ(token_of(*tokens), first);
    clock_.now = start + 3600;  // expired: the failure is final
    auto token = tokens->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
}

TEST_F(ManagedIdentityTokenSourceTest, ImdsErrorsMapToTheThreeKinds) {
    struct Case {
        long status;
        std::string body;
        ErrorCode code;
    };
    const std::vector<Case> cases = {
        {429, R"({"error":"too_many_requests","error_description":"throttled"})",
         ErrorCode::unavailable},
        {500, R"({"error":"unknown_error","error_description":"transient"})",
         ErrorCode::unavailable},
        {404, "", ErrorCode::unavailable},  // documented: IMDS is updating
        {410, "", ErrorCode::unavailable},
        {400, R"({"error":"invalid_resource","error_description":"AADSTS50001: no such app"})",
         ErrorCode::invalid_argument},
    };
    for (const auto& c : cases) {
        server_.fail_imds(c.status, c.body);
        auto tokens = source();
        auto token = tokens->access_token();
        ASSERT_FALSE(token) << c.status;
        EXPECT_EQ(token.error().code, c.code) << c.status << " " << token.error().message;
        EXPECT_NE(token.error().message.find("HTTP " + std::to_string(c.status)),
                  std::string::npos);
    }
}

TEST_F(ManagedIdentityTokenSourceTest, ErrorTextIsQuotedOnlyThroughErrorDetail) {
    server_.fail_imds(400,
                      nlohmann::json{{"error", "invalid_request"},
                                     {"error_description", "line1\nline2" + std::string(600, 'x')}}
                          .dump());
    auto tokens = source();
    auto token = tokens->access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().message.find('\n'), std::string::npos);
    EXPECT_NE(token.error().message.find("line1 line2"), std::string::npos);
    EXPECT_LT(token.error().message.size(), 300u);
}

TEST_F(ManagedIdentityTokenSourceTest, MalformedAnswersAreInvalidArgument) {
    for (const std::string& body :
         {std::string("not json"), std::string(R"({"token_type":"Bearer"})"),
          std::string(R"({"access_token":"t","expires_in":"soon","token_type":"Bearer"})"),
          std::string(R"({"access_token":"t","expires_in":"3599","token_type":"MAC"})")}) {
        server_.fail_imds(200, body);
        auto tokens = source();
        auto token = tokens->access_token();
        ASSERT_FALSE(token) << body;
        EXPECT_EQ(token.error().code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(ManagedIdentityTokenSourceTest, ConnectionRefusedIsUnavailable) {
    ManagedIdentityTokenSource::Options options;
    options.endpoint = server_.imds_url();
    options.timeout = std::chrono::seconds(5);
    std::string url = options.endpoint;
    {
        testing::PlainTestServer closed;
        closed.start();
        options.endpoint = closed.url(AzureTestServer::kImdsPath);
        egress::PolicyOptions po;
        po.allow.push_back(
            egress::AllowRule{.host = "127.0.0.1", .port = closed.port(), .plaintext_http = true});
        policy_ = std::make_unique<egress::EgressPolicy>(po);
    }  // stopped: the port refuses connections now
    ManagedIdentityTokenSource tokens(transport(policy_.get()), options, clock_);
    auto token = tokens.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
}

TEST_F(ManagedIdentityTokenSourceTest, PlainHttpNeedsThePlaintextRule) {
    egress::PolicyOptions po;
    po.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = server_.imds_port()});
    const egress::EgressPolicy strict(po);
    ManagedIdentityTokenSource::Options options;
    options.endpoint = server_.imds_url();
    ManagedIdentityTokenSource tokens(transport(&strict), options, clock_);
    auto token = tokens.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(server_.imds_requests(), 0);
}

TEST(ManagedIdentityOptionsTest, ValidatesTheEndpoint) {
    AzureKeyVaultSettings settings;
    settings.vault_url = "https://myvault.vault.azure.net";
    auto options = ManagedIdentityTokenSource::options_from(settings);
    ASSERT_TRUE(options);
    EXPECT_EQ(options->endpoint, "http://169.254.169.254/metadata/identity/oauth2/token");
    EXPECT_EQ(options->resource, "https://vault.azure.net");
    EXPECT_EQ(options->timeout, std::chrono::seconds(10));
    settings.auth.imds_endpoint = "ftp://169.254.169.254/x";
    auto bad = ManagedIdentityTokenSource::options_from(settings);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("auth.imds_endpoint"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::secrets::azure
