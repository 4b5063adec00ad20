#include "agent/secrets/dapr/dapr_secret_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/secrets/dapr/dapr_test_server.h"
#include "agent/secrets/http_store.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::dapr {
namespace {

using testing::DaprTestServer;

constexpr const char* kSecret = "s3cr3t-value";

class DaprSecretStoreTest : public ::testing::Test {
  protected:
    DaprSecretStoreTest() {
        ca_file_ =
            agent::testing::write_test_file(dir_.file("ca.pem"), agent::testing::pki().ca.cert_pem);
        egress::PolicyOptions po;
        po.allow.push_back(egress::AllowRule{
            .host = "127.0.0.1", .port = server_.http_port(), .plaintext_http = true});
        po.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = server_.https_port()});
        policy_ = std::make_unique<egress::EgressPolicy>(po);
        server_.put_secret("vault", "db", {{"db", kSecret}});  // name/value store
        server_.put_secret("kubernetes", "db-creds",
                           {{"username", "agent"},
                            {"password", kSecret},
                            {"tls", R"({"key":"k3y","nested":{"x":"y"}})"}});
    }
    void TearDown() override {
        for (const auto& v : server_.violations()) ADD_FAILURE() << "protocol violation: " << v;
    }

    std::unique_ptr<egress::Transport> transport(const egress::EgressPolicy* policy) {
        auto made = egress::HttpClient::create({.ca_file = ca_file_, .policy = policy});
        EXPECT_TRUE(made);
        return std::make_unique<egress::HttpClient>(std::move(*made));
    }

    DaprSettings settings(const std::string& dapr_store = "vault") const {
        DaprSettings s;
        s.address = server_.http_address();
        s.dapr_store = dapr_store;
        s.timeout_seconds = 5;
        return s;
    }

    std::unique_ptr<DaprSecretStore> store(DaprSettings s, CredentialReader reader = {}) {
        auto made = DaprSecretStore::create("dapr", std::move(s), transport(policy_.get()),
                                            std::move(reader));
        EXPECT_TRUE(made) << made.error().describe();
        return made ? std::move(*made) : nullptr;
    }

    static SecretRef ref(std::string path, std::string key = {}) {
        return SecretRef{.store = "dapr", .path = std::move(path), .key = std::move(key)};
    }
    static std::string value_of(Result<SecretValue> value) {
        EXPECT_TRUE(value) << value.error().describe();
        return value ? std::string(value->reveal()) : std::string();
    }
    static Error error_of(Result<SecretValue> value, const std::string& path) {
        EXPECT_FALSE(value);
        if (value) return Error{ErrorCode::internal, "unexpected success"};
        EXPECT_TRUE(value.error().message.starts_with(store_where("dapr", path)))
            << value.error().message;
        EXPECT_EQ(value.error().message.find(kSecret), std::string::npos);
        return value.error();
    }

    sa::testing::TempDir dir_{"sa-dapr-"};
    std::string ca_file_;
    DaprTestServer server_;
    std::unique_ptr<egress::EgressPolicy> policy_;
};

TEST_F(DaprSecretStoreTest, NameValueStoreReturnsTheOnlyEntry) {
    auto dapr = store(settings());
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
    EXPECT_EQ(value_of(dapr->read(ref("db", "db"))), kSecret);
    EXPECT_EQ(server_.requests(), 2);
}

TEST_F(DaprSecretStoreTest, MultiKeySecretNeedsAKey) {
    auto dapr = store(settings("kubernetes"));
    EXPECT_EQ(value_of(dapr->read(ref("db-creds", "password"))), kSecret);
    EXPECT_EQ(value_of(dapr->read(ref("db-creds", "username"))), "agent");
    const Error error = error_of(dapr->read(ref("db-creds")), "db-creds");
    EXPECT_EQ(error.code, ErrorCode::invalid_argument);
    EXPECT_NE(error.message.find("has 3 keys; name one with #KEY"), std::string::npos)
        << error.message;
    EXPECT_EQ(error_of(dapr->read(ref("db-creds", "missing")), "db-creds").code,
              ErrorCode::not_found);
}

TEST_F(DaprSecretStoreTest, DottedKeyWalksTheJsonOfAnEntry) {
    auto dapr = store(settings("kubernetes"));
    EXPECT_EQ(value_of(dapr->read(ref("db-creds", "tls.key"))), "k3y");
    EXPECT_EQ(value_of(dapr->read(ref("db-creds", "tls.nested.x"))), "y");
    EXPECT_EQ(error_of(dapr->read(ref("db-creds", "tls.nope")), "db-creds").code,
              ErrorCode::not_found);
    EXPECT_EQ(error_of(dapr->read(ref("db-creds", "password.x")), "db-creds").code,
              ErrorCode::invalid_argument);  // not JSON
    // An entry whose name has a dot is matched whole first.
    server_.put_secret("kubernetes", "dotted", {{"a.b", "whole"}, {"a", R"({"b":"walked"})"}});
    EXPECT_EQ(value_of(dapr->read(ref("dotted", "a.b"))), "whole");
}

TEST_F(DaprSecretStoreTest, SlashInANameTravelsAsOneEncodedSegment) {
    server_.put_secret("vault", "db/prod", {{"db/prod", kSecret}});
    server_.put_secret("vault", "with space", {{"with space", "ok"}});
    auto dapr = store(settings());
    EXPECT_EQ(value_of(dapr->read(ref("db/prod"))), kSecret);
    EXPECT_EQ(value_of(dapr->read(ref("with space"))), "ok");
}

TEST_F(DaprSecretStoreTest, HttpsAddressWorks) {
    auto s = settings();
    s.address = server_.https_address();
    auto dapr = store(s);
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
}

TEST_F(DaprSecretStoreTest, RotatedValueIsReturnedByTheNextRead) {
    auto dapr = store(settings());
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
    server_.put_secret("vault", "db", {{"db", "rotated-value"}});
    EXPECT_EQ(value_of(dapr->read(ref("db"))), "rotated-value");
}

TEST_F(DaprSecretStoreTest, MissingSecretIsNotFound) {
    auto dapr = store(settings());
    const Error error = error_of(dapr->read(ref("nope")), "nope");
    EXPECT_EQ(error.code, ErrorCode::not_found);
    EXPECT_NE(error.message.find("HTTP 204"), std::string::npos);
}

TEST_F(DaprSecretStoreTest, MissingComponentIsInvalidArgumentNamingIt) {
    auto dapr = store(settings("no-such-component"));
    const Error error = error_of(dapr->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::invalid_argument);
    EXPECT_NE(error.message.find("HTTP 400: ERR_SECRET_STORE_NOT_FOUND: failed finding"),
              std::string::npos)
        << error.message;
    EXPECT_NE(error.message.find("component \"no-such-component\""), std::string::npos);
}

TEST_F(DaprSecretStoreTest, SecretScopeDenialIsPermissionDenied) {
    server_.deny("vault", "db");
    auto dapr = store(settings());
    const Error error = error_of(dapr->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("HTTP 403: ERR_PERMISSION_DENIED: access denied by policy"),
              std::string::npos)
        << error.message;
}

TEST_F(DaprSecretStoreTest, ApiTokenIsReadJustInTimeAndSent) {
    server_.require_api_token("dapr-token-1");
    std::string current = "dapr-token-1";
    int reads = 0;
    auto s = settings();
    s.api_token = SecretRef{.store = "env", .path = "DAPR_API_TOKEN"};
    auto dapr = store(s, [&](const SecretRef& r) -> Result<SecretValue> {
        EXPECT_EQ(r.path, "DAPR_API_TOKEN");
        ++reads;
        return SecretValue::copy_of(current);
    });
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
    EXPECT_EQ(reads, 2);

    // The sidecar's token rotated but the agent's copy did not: 401.
    server_.require_api_token("dapr-token-2");
    const Error error = error_of(dapr->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("HTTP 401"), std::string::npos);
    EXPECT_EQ(error.message.find("dapr-token"), std::string::npos);
    current = "dapr-token-2";  // rotated where the agent reads it: works at once
    EXPECT_EQ(value_of(dapr->read(ref("db"))), kSecret);
}

TEST_F(DaprSecretStoreTest, MissingTokenIsPermissionDeniedAndUnreadableTokenKeepsItsKind) {
    server_.require_api_token("dapr-token-1");
    auto without = store(settings());
    EXPECT_EQ(error_of(without->read(ref("db")), "db").code, ErrorCode::permission_denied);

    auto s = settings();
    s.api_token = SecretRef{.store = "env", .path = "DAPR_API_TOKEN"};
    auto unreadable = store(s, [](const SecretRef&) -> Result<SecretValue> {
        return fail(ErrorCode::not_found, "environment variable DAPR_API_TOKEN is not set");
    });
    const int before = server_.requests();
    const Error error = error_of(unreadable->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::not_found);
    EXPECT_NE(error.message.find("cannot read the Dapr API token"), std::string::npos);
    EXPECT_EQ(server_.requests(), before);
}

TEST_F(DaprSecretStoreTest, ServerErrorsAndRefusedConnectionsAreUnavailable) {
    auto dapr = store(settings());
    server_.fail(
        500,
        R"({"errorCode":"ERR_SECRET_GET","message":"failed getting secret with key db from secret store vault: connection refused"})");
    const Error error = error_of(dapr->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::unavailable);
    EXPECT_NE(error.message.find("HTTP 500: ERR_SECRET_GET: failed getting secret"),
              std::string::npos);
    server_.fail(503, "");
    EXPECT_EQ(error_of(dapr->read(ref("db")), "db").code, ErrorCode::unavailable);

    int closed_port = 0;
    {
        DaprTestServer closed;
        closed_port = closed.http_port();
    }
    egress::PolicyOptions po;
    po.allow.push_back(
        egress::AllowRule{.host = "127.0.0.1", .port = closed_port, .plaintext_http = true});
    const egress::EgressPolicy policy(po);
    auto s = settings();
    s.address = "http://127.0.0.1:" + std::to_string(closed_port);
    auto refused = DaprSecretStore::create("dapr", s, transport(&policy));
    ASSERT_TRUE(refused);
    EXPECT_EQ(error_of((*refused)->read(ref("db")), "db").code, ErrorCode::unavailable);
}

TEST_F(DaprSecretStoreTest, PlainHttpWithoutThePlaintextRuleIsRefused) {
    egress::PolicyOptions po;
    po.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = server_.http_port()});
    const egress::EgressPolicy strict(po);
    auto dapr = DaprSecretStore::create("dapr", settings(), transport(&strict));
    ASSERT_TRUE(dapr);
    EXPECT_EQ(error_of((*dapr)->read(ref("db")), "db").code, ErrorCode::permission_denied);
    EXPECT_EQ(server_.requests(), 0);
}

TEST_F(DaprSecretStoreTest, ErrorBodiesAreQuotedOnlyThroughErrorDetail) {
    auto dapr = store(settings());
    server_.fail(500, nlohmann::json{{"errorCode", "ERR_SECRET_GET"},
                                     {"message", "x\ny" + std::string(1000, 'z')}}
                          .dump());
    const Error error = error_of(dapr->read(ref("db")), "db");
    EXPECT_EQ(error.message.find('\n'), std::string::npos);
    EXPECT_NE(error.message.find("ERR_SECRET_GET: x y"), std::string::npos);
    EXPECT_LT(error.message.size(), store_where("dapr", "db").size() + 230);
    server_.fail(502, std::string("<html>") + kSecret + "</html>");
    EXPECT_EQ(error_of(dapr->read(ref("db")), "db").message,
              store_where("dapr", "db") + ": HTTP 502");
}

TEST_F(DaprSecretStoreTest, MalformedAnswersAreInvalidArgument) {
    auto dapr = store(settings());
    for (const std::string& body : {std::string("not json"), std::string("[\"a\"]"),
                                    std::string(R"({"db":5})"), std::string("{}")}) {
        server_.fail(200, body);
        EXPECT_EQ(error_of(dapr->read(ref("db")), "db").code, ErrorCode::invalid_argument) << body;
    }
}

TEST_F(DaprSecretStoreTest, ConcurrentReadsFromFourThreads) {
    auto dapr = store(settings("kubernetes"));
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                const std::string key = t % 2 ? "password" : "username";
                auto value = dapr->read(ref("db-creds", key));
                if (value && value->reveal() == (t % 2 ? kSecret : "agent")) ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok, 40);
    EXPECT_EQ(server_.requests(), 40);
}

TEST(DaprSettingsTest, ValidationNamesTheField) {
    DaprSettings good;
    good.dapr_store = "vault";
    EXPECT_TRUE(validate(good));
    const auto message = [](DaprSettings s) {
        auto result = validate(s);
        return result ? std::string("ok") : result.error().message;
    };
    auto s = good;
    s.address = "127.0.0.1:3500";
    EXPECT_TRUE(message(s).starts_with("address"));
    s.address = "http://127.0.0.1:3500/v1.0";
    EXPECT_TRUE(message(s).starts_with("address"));
    s = good;
    s.dapr_store = "";
    EXPECT_TRUE(message(s).starts_with("dapr_store"));
    s = good;
    s.api_token = SecretRef{};
    EXPECT_TRUE(message(s).starts_with("api_token"));
    s = good;
    s.timeout_seconds = -1;
    EXPECT_TRUE(message(s).starts_with("timeout_seconds"));

    auto no_transport = DaprSecretStore::create("dapr", good, nullptr);
    ASSERT_FALSE(no_transport);
    EXPECT_EQ(no_transport.error().code, ErrorCode::invalid_argument);
    s = good;
    s.api_token = SecretRef{.store = "env", .path = "DAPR_API_TOKEN"};
    auto made = egress::HttpClient::create({});
    ASSERT_TRUE(made);
    auto no_reader =
        DaprSecretStore::create("dapr", s, std::make_unique<egress::HttpClient>(std::move(*made)));
    ASSERT_FALSE(no_reader);
    EXPECT_NE(no_reader.error().message.find("credential reader"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::secrets::dapr
