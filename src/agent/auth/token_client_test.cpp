#include "agent/auth/token_client.h"

#include <gtest/gtest.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "agent/auth/client_credentials.h"

namespace sa::agent::auth {
namespace {

class FakeClock final : public Clock {
  public:
    int64_t now_seconds() const override { return now; }
    int64_t now = 1'700'000'000;
};

// Hands out a different secret on each read and counts reads.
class CountingStore final : public secrets::SecretStore {
  public:
    Result<secrets::SecretValue> read(const secrets::SecretRef& ref) override {
        ++reads;
        if (ref.path != "hub") return fail(ErrorCode::not_found, "no such secret");
        return secrets::SecretValue::copy_of("secret-v" + std::to_string(reads));
    }
    int reads = 0;
};

struct Seen {
    std::string method, url, body, content_type, authorization;
};

class FakeTransport final : public egress::Transport {
  public:
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        Seen seen{request.method, request.url, std::string(request.body), "", ""};
        for (const auto& [name, value] : request.headers) {
            if (name == "Content-Type") seen.content_type = value;
        }
        if (request.authorization && request.authorization->credentials) {
            seen.authorization =
                std::string(request.authorization->scheme == egress::Authorization::Scheme::basic
                                ? "Basic "
                                : "Bearer ") +
                std::string(request.authorization->credentials->reveal());
        }
        requests.push_back(seen);
        if (responses.empty()) return fail(ErrorCode::unavailable, "cannot reach hub");
        auto next = std::move(responses.front());
        responses.pop_front();
        return next;
    }
    void reply(long status, const std::string& body) {
        egress::HttpResponse response;
        response.status = status;
        response.body = body;
        responses.push_back(response);
    }
    void token(const std::string& value, int expires_in = 900) {
        reply(200,
              nlohmann::json{
                  {"access_token", value}, {"token_type", "Bearer"}, {"expires_in", expires_in}}
                  .dump());
    }
    std::deque<Result<egress::HttpResponse>> responses;
    std::vector<Seen> requests;
};

class TokenClientTest : public ::testing::Test {
  protected:
    TokenClientTest() {
        auto store = std::make_unique<CountingStore>();
        store_ = store.get();
        stores_.add("files", std::move(store));
    }
    TokenClient make(std::string secret_path = "hub") {
        TokenClient::Options options;
        options.token_url = "https://hub.test/oauth2/token";
        options.client_id = "cid_1";
        options.client_secret = secrets::SecretRef{"files", std::move(secret_path), ""};
        options.observer = [this](std::string_view endpoint, long status) {
            observed_.emplace_back(std::string(endpoint), status);
        };
        return TokenClient(transport_, stores_, options, clock_);
    }
    FakeTransport transport_;
    FakeClock clock_;
    secrets::SecretStores stores_;
    CountingStore* store_ = nullptr;
    std::vector<std::pair<std::string, long>> observed_;
};

TEST_F(TokenClientTest, RequestsTokenWithClientSecretBasic) {
    auto client = make();
    transport_.token("tok-1");
    auto token = client.access_token();
    ASSERT_TRUE(token) << token.error().describe();
    EXPECT_EQ((*token)->reveal(), "tok-1");
    ASSERT_EQ(transport_.requests.size(), 1u);
    const Seen& seen = transport_.requests[0];
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.url, "https://hub.test/oauth2/token");
    EXPECT_EQ(seen.body, "grant_type=client_credentials");
    EXPECT_EQ(seen.content_type, "application/x-www-form-urlencoded");
    const auto secret = secrets::SecretValue::copy_of("secret-v1");
    EXPECT_EQ(seen.authorization,
              "Basic " + std::string(basic_credentials("cid_1", secret).reveal()));
    EXPECT_EQ(observed_, (std::vector<std::pair<std::string, long>>{{"token", 200}}));
}

TEST_F(TokenClientTest, CachesUntilSixtySecondsBeforeExpiry) {
    auto client = make();
    transport_.token("tok-1", 900);
    transport_.token("tok-2", 900);
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 840);

    clock_.now += 839;
    auto cached = client.access_token();
    ASSERT_TRUE(cached);
    EXPECT_EQ((*cached)->reveal(), "tok-1");
    EXPECT_EQ(transport_.requests.size(), 1u);
    EXPECT_EQ(store_->reads, 1);

    clock_.now += 1;
    auto renewed = client.access_token();
    ASSERT_TRUE(renewed);
    EXPECT_EQ((*renewed)->reveal(), "tok-2");
    EXPECT_EQ(transport_.requests.size(), 2u);
    EXPECT_EQ(store_->reads, 2);  // the secret is read again for every token request
}

TEST_F(TokenClientTest, FailedEarlyRefreshKeepsTheValidToken) {
    auto client = make();
    transport_.token("tok-1", 900);
    ASSERT_TRUE(client.access_token());
    clock_.now += 850;  // past refresh_at, before expiry; the hub is unreachable
    auto still = client.access_token();
    ASSERT_TRUE(still) << still.error().describe();
    EXPECT_EQ((*still)->reveal(), "tok-1");
    EXPECT_EQ(transport_.requests.size(), 2u);  // it did try

    clock_.now += 50;  // now really expired
    auto gone = client.access_token();
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ErrorCode::unavailable);
    EXPECT_FALSE(client.has_token());
}

TEST_F(TokenClientTest, ShortLivedTokensRefreshAtHalfLife) {
    auto client = make();
    transport_.token("tok-1", 30);
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 15);
}

TEST_F(TokenClientTest, InvalidateRereadsTheRotatedSecret) {
    auto client = make();
    transport_.token("tok-1");
    transport_.token("tok-2");
    ASSERT_TRUE(client.access_token());
    client.invalidate();
    EXPECT_FALSE(client.has_token());
    auto token = client.access_token();
    ASSERT_TRUE(token);
    EXPECT_EQ((*token)->reveal(), "tok-2");
    ASSERT_EQ(transport_.requests.size(), 2u);
    const auto v2 = secrets::SecretValue::copy_of("secret-v2");
    EXPECT_EQ(transport_.requests[1].authorization,
              "Basic " + std::string(basic_credentials("cid_1", v2).reveal()));
}

TEST_F(TokenClientTest, RejectedCredentialsAreUnauthenticated) {
    auto client = make();
    transport_.reply(401, R"({"error":"invalid_client"})");
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unauthenticated);
    EXPECT_EQ(token.error().message, "hub rejected client credentials for client_id cid_1");
    EXPECT_EQ(token.error().message.find("secret-v"), std::string::npos);
    EXPECT_FALSE(client.has_token());
}

TEST_F(TokenClientTest, OtherFailuresAreUnavailable) {
    auto client = make();
    transport_.reply(500, R"({"error":"server_error","error_description":"db down"})");
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
    EXPECT_EQ(token.error().message, "token request failed: HTTP 500 server_error: db down");

    auto no_response = client.access_token();  // the fake has nothing queued
    ASSERT_FALSE(no_response);
    EXPECT_EQ(no_response.error().code, ErrorCode::unavailable);
    EXPECT_EQ(observed_.back(), (std::pair<std::string, long>{"token", 0}));
}

TEST_F(TokenClientTest, MalformedTokenResponsesAreRefused) {
    auto client = make();
    for (const char* body : {"not json", "[]", R"({"token_type":"Bearer","expires_in":900})",
                             R"({"access_token":"t","token_type":"MAC","expires_in":900})",
                             R"({"access_token":"t","token_type":"Bearer"})",
                             R"({"access_token":"t","token_type":"Bearer","expires_in":0})",
                             R"({"access_token":"","token_type":"Bearer","expires_in":900})"}) {
        transport_.reply(200, body);
        auto token = client.access_token();
        EXPECT_FALSE(token) << body;
        EXPECT_FALSE(client.has_token());
    }
    transport_.reply(200, R"({"access_token":"t","token_type":"bearer","expires_in":900})");
    EXPECT_TRUE(client.access_token());  // token_type is case-insensitive (RFC 6749 5.1)
}

TEST_F(TokenClientTest, SecretStoreErrorsPropagateWithoutARequest) {
    auto client = make("missing");
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::not_found);
    EXPECT_TRUE(transport_.requests.empty());
}

}  // namespace
}  // namespace sa::agent::auth
