#include "agent/auth/token_client.h"

#include <gtest/gtest.h>

#include <openssl/pem.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <latch>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/auth/client_credentials.h"
#include "agent/auth/token_lifetime.h"
#include "agent/secrets/secret_stores.h"
#include "common/crypto/encoding.h"
#include "common/crypto/openssl_ptr.h"

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

// The decoded fields of an application/x-www-form-urlencoded body.
std::map<std::string, std::string> form_fields(const std::string& body) {
    const auto decode = [](std::string_view text) {
        std::string out;
        for (size_t i = 0; i < text.size(); ++i) {
            if (text[i] == '+') {
                out += ' ';
            } else if (text[i] == '%' && i + 2 < text.size()) {
                out +=
                    static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
                i += 2;
            } else {
                out += text[i];
            }
        }
        return out;
    };
    std::map<std::string, std::string> fields;
    size_t start = 0;
    while (start <= body.size()) {
        size_t end = body.find('&', start);
        if (end == std::string::npos) end = body.size();
        const std::string_view pair(body.data() + start, end - start);
        const size_t eq = pair.find('=');
        EXPECT_NE(eq, std::string_view::npos) << pair;
        EXPECT_TRUE(fields.emplace(decode(pair.substr(0, eq)), decode(pair.substr(eq + 1))).second)
            << "repeated field " << pair;
        start = end + 1;
    }
    return fields;
}

// An unverified look at a JWT's part (0: header, 1: payload).
nlohmann::json jwt_part(const std::string& jwt, int index) {
    size_t start = 0;
    for (int i = 0; i < index; ++i) start = jwt.find('.', start) + 1;
    const size_t end = jwt.find('.', start);
    return nlohmann::json::parse(
        crypto::base64url_decode(jwt.substr(start, end - start)).value_or("null"));
}

std::string make_jwt(const nlohmann::json& claims) {
    return crypto::base64url_encode(R"({"alg":"EdDSA","typ":"at+jwt"})") + "." +
           crypto::base64url_encode(claims.dump()) + "." + crypto::base64url_encode("sig");
}

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
    void reply(long status, const std::string& body, std::string date = {}) {
        egress::HttpResponse response;
        response.status = status;
        response.body = body;
        if (!date.empty()) response.headers["date"] = std::move(date);
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
        return make_with([](TokenClient::Options&) {}, std::move(secret_path));
    }
    template <class Configure>
    TokenClient make_with(Configure configure, std::string secret_path = "hub") {
        TokenClient::Options options;
        options.token_url = "https://hub.test/oauth2/token";
        options.client_id = "cid_1";
        options.client_secret = secrets::SecretRef{"files", std::move(secret_path), ""};
        options.observer = [this](std::string_view endpoint, long status) {
            observed_.emplace_back(std::string(endpoint), status);
        };
        configure(options);
        return TokenClient(
            transport_, [this](const secrets::SecretRef& ref) { return stores_.read(ref); },
            options, clock_);
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
    EXPECT_EQ(token->reveal(), "tok-1");
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
    EXPECT_EQ(cached->reveal(), "tok-1");
    EXPECT_EQ(transport_.requests.size(), 1u);
    EXPECT_EQ(store_->reads, 1);

    clock_.now += 1;
    auto renewed = client.access_token();
    ASSERT_TRUE(renewed);
    EXPECT_EQ(renewed->reveal(), "tok-2");
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
    EXPECT_EQ(still->reveal(), "tok-1");
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
    EXPECT_EQ(token->reveal(), "tok-2");
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
    EXPECT_EQ(token.error().message.rfind("cannot read the hub client secret: ", 0), 0u)
        << token.error().message;
    EXPECT_TRUE(transport_.requests.empty());
}

TEST_F(TokenClientTest, ClientSecretPostSendsTheCredentialsInTheBody) {
    auto client = make_with([](TokenClient::Options& options) {
        options.auth_method = ClientAuthMethod::client_secret_post;
        options.client_id = "cid 1&x";
        options.scope = "api://hub/.default";
        options.extra_form = {{"resource", "https://vault.example/"}};
    });
    transport_.token("tok-1");
    auto token = client.access_token();
    ASSERT_TRUE(token) << token.error().describe();
    ASSERT_EQ(transport_.requests.size(), 1u);
    const Seen& seen = transport_.requests[0];
    EXPECT_TRUE(seen.authorization.empty());
    EXPECT_EQ(seen.body,
              "grant_type=client_credentials&client_id=cid+1%26x&client_secret=secret-v1"
              "&scope=api%3A%2F%2Fhub%2F.default&resource=https%3A%2F%2Fvault.example%2F");
}

TEST_F(TokenClientTest, ScopeAndExtraFormWorkWithClientSecretBasic) {
    auto client = make_with([](TokenClient::Options& options) {
        options.scope = "read write";
        options.extra_form = {{"audience", "https://api.example"}};
    });
    transport_.token("tok-1");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(transport_.requests[0].body,
              "grant_type=client_credentials&scope=read+write&audience=https%3A%2F%2Fapi.example");
    EXPECT_FALSE(transport_.requests[0].authorization.empty());
}

class KeyStore final : public secrets::SecretStore {
  public:
    Result<secrets::SecretValue> read(const secrets::SecretRef&) override {
        return secrets::SecretValue::copy_of(pem);
    }
    std::string pem;
};

TEST_F(TokenClientTest, PrivateKeyJwtSendsASignedAssertion) {
    crypto::EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    ASSERT_TRUE(key);
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    ASSERT_EQ(PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
              1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    auto keys = std::make_unique<KeyStore>();
    keys->pem.assign(data, static_cast<size_t>(length));
    stores_.add("keys", std::move(keys));

    TokenClient::Options options;
    options.token_url = "https://idp.test/oauth2/token";
    options.client_id = "agent-1";
    options.client_secret = secrets::SecretRef{"keys", "agent.pem", ""};
    options.auth_method = ClientAuthMethod::private_key_jwt;
    options.key_id = "k1";
    int key_reads = 0;
    TokenClient client(
        transport_,
        [&](const secrets::SecretRef& ref) {
            ++key_reads;
            return stores_.read(ref);
        },
        options, clock_);
    transport_.token("tok-1");
    transport_.token("tok-2");
    ASSERT_TRUE(client.access_token());
    client.invalidate();
    ASSERT_TRUE(client.access_token());
    ASSERT_EQ(transport_.requests.size(), 2u);
    EXPECT_EQ(key_reads, 2);  // just in time: once per token request

    const Seen& seen = transport_.requests[0];
    EXPECT_TRUE(seen.authorization.empty());
    auto fields = form_fields(seen.body);
    EXPECT_EQ(fields.size(), 4u);
    EXPECT_EQ(fields["grant_type"], "client_credentials");
    EXPECT_EQ(fields["client_id"], "agent-1");
    EXPECT_EQ(fields["client_assertion_type"],
              "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    const std::string assertion = fields["client_assertion"];
    EXPECT_EQ(jwt_part(assertion, 0),
              (nlohmann::json{{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", "k1"}}));
    const nlohmann::json claims = jwt_part(assertion, 1);
    EXPECT_EQ(claims["iss"], "agent-1");
    EXPECT_EQ(claims["sub"], "agent-1");
    EXPECT_EQ(claims["aud"], "https://idp.test/oauth2/token");
    EXPECT_EQ(claims["iat"], clock_.now);
    EXPECT_EQ(claims["exp"], clock_.now + 60);
    ASSERT_TRUE(claims["jti"].is_string());
    EXPECT_GE(claims["jti"].get<std::string>().size(), 16u);
    // Every assertion is new (RFC 7523 section 3: jti must not be replayed).
    const auto second = form_fields(transport_.requests[1].body)["client_assertion"];
    EXPECT_NE(jwt_part(second, 1)["jti"], claims["jti"]);

    // The signature verifies with the public key.
    const size_t dot = assertion.rfind('.');
    const auto signature = crypto::base64url_decode(assertion.substr(dot + 1));
    ASSERT_TRUE(signature);
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    ASSERT_EQ(EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()), 1);
    EXPECT_EQ(EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()),
                               signature->size(),
                               reinterpret_cast<const unsigned char*>(assertion.data()), dot),
              1);
}

TEST_F(TokenClientTest, PrivateKeyJwtWithAnUnusableKeyFailsBeforeAnyRequest) {
    auto client = make_with([](TokenClient::Options& options) {
        options.auth_method = ClientAuthMethod::private_key_jwt;
    });
    // The store hands out "secret-v1", which is no PEM key.
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(token.error().message.find("files/hub"), std::string::npos) << token.error().message;
    EXPECT_EQ(token.error().message.find("secret-v1"), std::string::npos);
    EXPECT_TRUE(transport_.requests.empty());
}

TEST_F(TokenClientTest, ClientSecretsWithReservedCharactersAreEncodedInThePostBody) {
    class OddStore final : public secrets::SecretStore {
      public:
        Result<secrets::SecretValue> read(const secrets::SecretRef&) override {
            return secrets::SecretValue::copy_of("a+b&c=d %e");
        }
    };
    stores_.add("odd", std::make_unique<OddStore>());
    auto client = make_with([](TokenClient::Options& options) {
        options.auth_method = ClientAuthMethod::client_secret_post;
        options.client_secret = secrets::SecretRef{"odd", "x", ""};
    });
    transport_.token("tok-1");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(form_fields(transport_.requests[0].body)["client_secret"], "a+b&c=d %e");
}

TEST(ClientAuthMethodTest, ParsesTheRegistryNames) {
    EXPECT_EQ(parse_client_auth_method("client_secret_basic"),
              ClientAuthMethod::client_secret_basic);
    EXPECT_EQ(parse_client_auth_method("client_secret_post"), ClientAuthMethod::client_secret_post);
    EXPECT_EQ(parse_client_auth_method("private_key_jwt"), ClientAuthMethod::private_key_jwt);
    auto bad = parse_client_auth_method("client_secret_jwt");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
}

TEST_F(TokenClientTest, OAuthRefusalsAreNotTransient) {
    auto client = make();
    transport_.reply(400, R"({"error":"invalid_client","error_description":"bad secret"})");
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unauthenticated);

    transport_.reply(400, R"({"error":"invalid_scope"})");
    token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(token.error().message, "token request failed: HTTP 400 invalid_scope");

    transport_.reply(400, R"({"error":"invalid_request","error_description":"no\nnewline"})");
    token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(token.error().message, "token request failed: HTTP 400 invalid_request: nonewline");

    transport_.reply(429, R"({"error":"invalid_request"})");
    token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);

    transport_.reply(400, "<html>proxy</html>");
    token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
}

TEST_F(TokenClientTest, ExpiresInMayBeADigitString) {
    auto client = make();
    transport_.reply(200, R"({"access_token":"t","token_type":"Bearer","expires_in":"3599"})");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 3599 - 60);
}

TEST_F(TokenClientTest, WithoutExpiresInTheJwtExpIsCorrectedByTheDateHeader) {
    std::vector<TokenEvent> events;
    auto client = make_with([&](TokenClient::Options& options) {
        options.on_token = [&](const TokenEvent& event) { events.push_back(event); };
    });
    // The server's clock is 1000 s ahead of ours: the Date header says so,
    // and the token has 600 s left by the server's clock.
    const int64_t server_now = clock_.now + 1000;
    ASSERT_EQ(parse_imf_fixdate("Tue, 14 Nov 2023 22:30:00 GMT"), 1'700'001'000);
    ASSERT_EQ(server_now, 1'700'001'000);
    transport_.reply(
        200,
        nlohmann::json{
            {"access_token", make_jwt({{"exp", server_now + 600}, {"iat", server_now - 3000}})},
            {"token_type", "Bearer"}}
            .dump(),
        "Tue, 14 Nov 2023 22:30:00 GMT");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 600 - 60);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].expires_in, 600);
}

TEST_F(TokenClientTest, WithoutExpiresInOrDateTheJwtIatEstimatesTheServerClock) {
    auto client = make();
    // Issued "now" by a server 500 s behind us, valid 900 s.
    const int64_t iat = clock_.now - 500;
    transport_.reply(200,
                     nlohmann::json{{"access_token", make_jwt({{"exp", iat + 900}, {"iat", iat}})},
                                    {"token_type", "Bearer"}}
                         .dump(),
                     "not a date");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 900 - 60);
}

TEST_F(TokenClientTest, WithoutExpiryInformationTheTokenLivesFiveMinutes) {
    auto client = make();
    transport_.reply(200, R"({"access_token":"opaque","token_type":"Bearer"})");
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 300 - 60);

    // A JWT without exp counts as no information; no iat nor Date: our clock.
    client.invalidate();
    transport_.reply(
        200, nlohmann::json{{"access_token", make_jwt({{"sub", "x"}})}, {"token_type", "Bearer"}}
                 .dump());
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 240);

    client.invalidate();
    transport_.reply(200, nlohmann::json{{"access_token", make_jwt({{"exp", clock_.now + 120}})},
                                         {"token_type", "Bearer"}}
                              .dump());
    ASSERT_TRUE(client.access_token());
    EXPECT_EQ(client.refresh_at(), clock_.now + 60);
}

TEST_F(TokenClientTest, AJwtAlreadyExpiredByTheServerClockIsRefused) {
    auto client = make();
    transport_.reply(200,
                     nlohmann::json{{"access_token", make_jwt({{"exp", clock_.now + 100}})},
                                    {"token_type", "Bearer"}}
                         .dump(),
                     "Tue, 14 Nov 2023 22:30:00 GMT");  // our clock + 1000 s
    auto token = client.access_token();
    ASSERT_FALSE(token);
    EXPECT_EQ(token.error().code, ErrorCode::unavailable);
    EXPECT_FALSE(client.has_token());
}

TEST(TokenLifetimeTest, ImfFixdateIsParsedStrictly) {
    EXPECT_EQ(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    EXPECT_EQ(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    EXPECT_EQ(parse_imf_fixdate("Thu, 29 Feb 2024 23:59:59 GMT"), 1709251199);
    for (const char* bad : {"", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                            "Mon, 06 Nov 1994 08:49:37 GMT",  // wrong weekday
                            "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 24:00:00 GMT",
                            "Thu, 30 Feb 2023 10:00:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT ",
                            "Sun, 06 Nov 1994 08:49:3x GMT", "Sun, 06 nov 1994 08:49:37 GMT"}) {
        EXPECT_EQ(parse_imf_fixdate(bad), std::nullopt) << bad;
    }
}

TEST(TokenLifetimeTest, JwtRemainingLifetime) {
    const std::string jwt = make_jwt({{"exp", 2000}, {"iat", 1000}});
    EXPECT_EQ(jwt_remaining_lifetime(jwt, 1500, 9999), 500);           // Date wins
    EXPECT_EQ(jwt_remaining_lifetime(jwt, std::nullopt, 9999), 1000);  // then iat
    EXPECT_EQ(jwt_remaining_lifetime(make_jwt({{"exp", 2000}}), std::nullopt, 1800), 200);
    EXPECT_EQ(jwt_remaining_lifetime("opaque-token", 1, 1), std::nullopt);
    EXPECT_EQ(jwt_remaining_lifetime("a.b", 1, 1), std::nullopt);
    EXPECT_EQ(jwt_remaining_lifetime("a.!!.c", 1, 1), std::nullopt);
    EXPECT_EQ(jwt_remaining_lifetime(make_jwt({{"exp", "2000"}}), 1, 1), std::nullopt);
    EXPECT_EQ(jwt_remaining_lifetime(make_jwt({{"exp", INT64_MAX}}), -5, 1), std::nullopt);
}

// A clock that counts its readers: TokenClient reads it once per
// access_token() call, under its lock, before deciding to wait.
class CountingClock final : public Clock {
  public:
    int64_t now_seconds() const override {
        reads.fetch_add(1);
        return now.load();
    }
    mutable std::atomic<int> reads{0};
    std::atomic<int64_t> now{1'700'000'000};
};

// Blocks the token request until enough clock reads show that every other
// caller is queued behind it (bounded, so a broken client fails, not hangs).
class GatedTransport final : public egress::Transport {
  public:
    explicit GatedTransport(const CountingClock& clock) : clock_(clock) {}
    Result<egress::HttpResponse> send(const egress::HttpRequest&) override {
        const int n = ++requests;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (clock_.reads.load() < wait_for_reads.load() &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::yield();
        }
        if (fail) return sa::fail(ErrorCode::unavailable, "hub down");
        egress::HttpResponse response;
        response.status = 200;
        response.body = nlohmann::json{
            {"access_token", "tok-" + std::to_string(n)},
            {"token_type", "Bearer"},
            {"expires_in",
             900}}.dump();
        return response;
    }
    std::atomic<int> requests{0};
    std::atomic<int> wait_for_reads{0};
    std::atomic<bool> fail{false};

  private:
    const CountingClock& clock_;
};

void concurrent_callers(bool fail_refresh) {
    constexpr int kThreads = 8;
    CountingClock clock;
    GatedTransport transport(clock);
    TokenClient::Options options;
    options.token_url = "https://hub.test/oauth2/token";
    options.client_id = "cid_1";
    options.client_secret = secrets::SecretRef{"files", "hub", ""};
    TokenClient client(
        transport,
        [](const secrets::SecretRef&) -> Result<secrets::SecretValue> {
            return secrets::SecretValue::copy_of("secret");
        },
        options, clock);
    ASSERT_TRUE(client.access_token());
    ASSERT_EQ(transport.requests.load(), 1);
    clock.now += 1000;  // expired: every caller needs a new token

    transport.fail = fail_refresh;
    // The refreshing caller reads the clock twice (entry, request time),
    // each of the other seven once before it waits.
    transport.wait_for_reads = clock.reads.load() + kThreads + 1;
    std::latch start(kThreads);
    std::vector<std::string> tokens(kThreads);
    std::vector<std::optional<ErrorCode>> errors(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            start.arrive_and_wait();
            auto token = client.access_token();
            if (token) {
                tokens[static_cast<size_t>(i)] = std::string(token->reveal());
            } else {
                errors[static_cast<size_t>(i)] = token.error().code;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(transport.requests.load(), 2) << "exactly one refresh for all eight callers";
    EXPECT_GE(clock.reads.load(), transport.wait_for_reads.load()) << "callers did not overlap";
    for (int i = 0; i < kThreads; ++i) {
        if (fail_refresh) {
            EXPECT_EQ(errors[static_cast<size_t>(i)], ErrorCode::unavailable);
        } else {
            EXPECT_EQ(tokens[static_cast<size_t>(i)], "tok-2");
        }
    }
}

TEST(TokenClientThreadsTest, ConcurrentCallersOnAnExpiredTokenShareOneRefresh) {
    concurrent_callers(false);
}

TEST(TokenClientThreadsTest, ConcurrentCallersShareTheRefreshError) {
    concurrent_callers(true);
}

// Holds each token request until the test releases it, and says when one
// has arrived: lets a test act while a refresh is in flight, without sleeps.
class HeldTransport final : public egress::Transport {
  public:
    Result<egress::HttpResponse> send(const egress::HttpRequest&) override {
        const int n = ++requests;
        std::unique_lock lock(mutex_);
        arrived_ = true;
        changed_.notify_all();
        changed_.wait(lock, [&] { return released_; });
        released_ = false;
        egress::HttpResponse response;
        response.status = 200;
        response.body = nlohmann::json{
            {"access_token", "tok-" + std::to_string(n)},
            {"token_type", "Bearer"},
            {"expires_in",
             900}}.dump();
        return response;
    }
    void wait_for_request() {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return arrived_; });
        arrived_ = false;
    }
    void release() {
        std::lock_guard lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }
    std::atomic<int> requests{0};

  private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool arrived_ = false;
    bool released_ = false;
};

class TokenClientInFlightTest : public ::testing::Test {
  protected:
    TokenClientInFlightTest()
        : client_(
              transport_,
              [](const secrets::SecretRef&) -> Result<secrets::SecretValue> {
                  return secrets::SecretValue::copy_of("secret");
              },
              TokenClient::Options{.token_url = "https://hub.test/oauth2/token",
                                   .client_id = "cid_1",
                                   .client_secret = {"files", "hub", ""}},
              clock_) {}
    // The first token, fetched with the gate opened by a helper thread.
    void first_token() {
        std::thread opener([&] {
            transport_.wait_for_request();
            transport_.release();
        });
        auto token = client_.access_token();
        opener.join();
        ASSERT_TRUE(token);
        ASSERT_EQ(token->reveal(), "tok-1");
    }
    HeldTransport transport_;
    FakeClock clock_;
    TokenClient client_;
};

TEST_F(TokenClientInFlightTest, AValidTokenServesOtherCallersDuringAnEarlyRefresh) {
    first_token();
    clock_.now += 850;  // past refresh_at, before expiry
    std::optional<Result<secrets::SecretValue>> refreshed;
    std::thread refresher([&] { refreshed.emplace(client_.access_token()); });
    transport_.wait_for_request();
    // The refresh is held in flight: another caller is not blocked by it.
    auto meanwhile = client_.access_token();
    ASSERT_TRUE(meanwhile);
    EXPECT_EQ(meanwhile->reveal(), "tok-1");
    EXPECT_EQ(transport_.requests.load(), 2);
    transport_.release();
    refresher.join();
    ASSERT_TRUE(refreshed && *refreshed);
    EXPECT_EQ((*refreshed)->reveal(), "tok-2");
    auto after = client_.access_token();
    ASSERT_TRUE(after);
    EXPECT_EQ(after->reveal(), "tok-2");
}

TEST_F(TokenClientInFlightTest, InvalidateDuringARefreshKeepsItsTokenOutOfTheCache) {
    first_token();
    clock_.now += 1000;  // expired
    std::optional<Result<secrets::SecretValue>> refreshed;
    std::thread refresher([&] { refreshed.emplace(client_.access_token()); });
    transport_.wait_for_request();
    client_.invalidate();  // e.g. a 401 for tok-1 while the refresh (maybe with an old secret) runs
    transport_.release();
    refresher.join();
    ASSERT_TRUE(refreshed && *refreshed);
    EXPECT_EQ((*refreshed)->reveal(), "tok-2");  // its caller still gets it
    EXPECT_FALSE(client_.has_token());           // but the next call asks again
    std::thread opener([&] {
        transport_.wait_for_request();
        transport_.release();
    });
    auto next = client_.access_token();
    opener.join();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->reveal(), "tok-3");
}

}  // namespace
}  // namespace sa::agent::auth
