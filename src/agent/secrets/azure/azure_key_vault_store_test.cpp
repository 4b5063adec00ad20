#include "agent/secrets/azure/azure_key_vault_store.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/secrets/azure/azure_test_server.h"
#include "agent/secrets/azure/managed_identity_token_source.h"
#include "agent/secrets/http_store.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::azure {
namespace {

using testing::AzureTestServer;

// A token source that always hands out the same (wrong) token.
class FixedTokenSource final : public auth::TokenSource {
  public:
    Result<SecretValue> access_token() override { return SecretValue::copy_of(token_.reveal()); }
    void invalidate() override { ++invalidations; }
    SecretValue token_ = SecretValue::copy_of("not-a-token-the-vault-issued");
    int invalidations = 0;
};

// A transport that must never be used (factories do no I/O).
class FixedTransport final : public egress::Transport {
  public:
    Result<egress::HttpResponse> send(const egress::HttpRequest&) override {
        ADD_FAILURE() << "unexpected request";
        return fail(ErrorCode::unavailable, "no network in this test");
    }
};

class AzureKeyVaultStoreTest : public ::testing::Test {
  protected:
    AzureKeyVaultStoreTest() {
        ca_file_ =
            agent::testing::write_test_file(dir_.file("ca.pem"), agent::testing::pki().ca.cert_pem);
        allow_vault(server_.vault_port());
    }
    void TearDown() override {
        for (const auto& v : server_.violations()) ADD_FAILURE() << "protocol violation: " << v;
    }

    void allow_vault(int port) {
        egress::PolicyOptions po;
        po.allow.push_back(egress::AllowRule{.host = "127.0.0.1", .port = port});
        po.allow.push_back(egress::AllowRule{
            .host = "127.0.0.1", .port = server_.imds_port(), .plaintext_http = true});
        policies_.push_back(std::make_unique<egress::EgressPolicy>(po));
    }

    std::unique_ptr<egress::Transport> transport() {
        auto made =
            egress::HttpClient::create({.ca_file = ca_file_, .policy = policies_.back().get()});
        EXPECT_TRUE(made);
        return std::make_unique<egress::HttpClient>(std::move(*made));
    }

    AzureKeyVaultSettings settings() const {
        AzureKeyVaultSettings s;
        s.vault_url = server_.vault_url() + "/";
        s.timeout_seconds = 5;
        s.auth.imds_endpoint = server_.imds_url();
        return s;
    }

    std::unique_ptr<AzureKeyVaultStore> store(AzureKeyVaultSettings s,
                                              std::unique_ptr<auth::TokenSource> tokens = nullptr) {
        if (!tokens) {
            auto made = make_token_source(s, transport(), {}, clock_);
            EXPECT_TRUE(made) << made.error().describe();
            if (!made) return nullptr;
            tokens = std::move(*made);
        }
        auto made = AzureKeyVaultStore::create("kv", std::move(s), transport(), std::move(tokens));
        EXPECT_TRUE(made) << made.error().describe();
        return made ? std::move(*made) : nullptr;
    }
    std::unique_ptr<AzureKeyVaultStore> store() { return store(settings()); }

    static SecretRef ref(std::string path, std::string key = {}) {
        return SecretRef{.store = "kv", .path = std::move(path), .key = std::move(key)};
    }

    static std::string value_of(Result<SecretValue> value) {
        EXPECT_TRUE(value) << value.error().describe();
        return value ? std::string(value->reveal()) : std::string();
    }

    // The error, checked for the common contract: it names store and path
    // and never contains the given secret text.
    static Error error_of(Result<SecretValue> value, const std::string& path,
                          const std::string& secret = "s3cr3t-value") {
        EXPECT_FALSE(value);
        if (value) return Error{ErrorCode::internal, "unexpected success"};
        EXPECT_TRUE(value.error().message.starts_with(store_where("kv", path)))
            << value.error().message;
        EXPECT_EQ(value.error().message.find(secret), std::string::npos);
        return value.error();
    }

    sa::testing::TempDir dir_{"sa-azure-"};
    std::string ca_file_;
    AzureTestServer server_;
    std::vector<std::unique_ptr<egress::EgressPolicy>> policies_;
    auth::SystemClock clock_;
};

TEST_F(AzureKeyVaultStoreTest, ReadsTheWholeSecret) {
    server_.put_secret("db-password", "s3cr3t-value");
    auto kv = store();
    EXPECT_EQ(value_of(kv->read(ref("db-password"))), "s3cr3t-value");
    EXPECT_EQ(server_.imds_requests(), 1);
    EXPECT_EQ(server_.vault_requests(), 1);
}

TEST_F(AzureKeyVaultStoreTest, SelectsAKeyAndADottedKeyOfAJsonSecret) {
    server_.put_secret("db", R"({"user":"agent","password":"p4ss","tls":{"key":"k3y"},"n":5})");
    auto kv = store();
    EXPECT_EQ(value_of(kv->read(ref("db", "password"))), "p4ss");
    EXPECT_EQ(value_of(kv->read(ref("db", "tls.key"))), "k3y");
    EXPECT_EQ(error_of(kv->read(ref("db", "missing")), "db").code, ErrorCode::not_found);
    EXPECT_EQ(error_of(kv->read(ref("db", "n")), "db").code, ErrorCode::invalid_argument);
}

TEST_F(AzureKeyVaultStoreTest, ReadsAVersionAndTheRotatedCurrentValue) {
    server_.put_secret("api-key", "first-value");
    auto kv = store();
    EXPECT_EQ(value_of(kv->read(ref("api-key"))), "first-value");
    server_.put_secret("api-key", "second-value");  // rotation: a new current version
    EXPECT_EQ(value_of(kv->read(ref("api-key"))), "second-value");
    EXPECT_EQ(value_of(kv->read(ref("api-key/v1"))), "first-value");
    EXPECT_EQ(error_of(kv->read(ref("api-key/v9")), "api-key/v9").code, ErrorCode::not_found);
}

TEST_F(AzureKeyVaultStoreTest, MissingSecretIsNotFound) {
    auto kv = store();
    const Error error = error_of(kv->read(ref("nope")), "nope");
    EXPECT_EQ(error.code, ErrorCode::not_found);
    EXPECT_NE(error.message.find(": HTTP 404: SecretNotFound: A secret with"), std::string::npos)
        << error.message;
}

TEST_F(AzureKeyVaultStoreTest, MissingPermissionIsPermissionDenied) {
    server_.put_secret("locked", "s3cr3t-value");
    server_.forbid_secret("locked");
    auto kv = store();
    const Error error = error_of(kv->read(ref("locked")), "locked");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("HTTP 403: Forbidden (AccessDenied): "), std::string::npos)
        << error.message;
}

TEST_F(AzureKeyVaultStoreTest, DisabledSecretIsPermissionDeniedSayingSo) {
    server_.put_secret("old", "s3cr3t-value");
    server_.disable_secret("old");
    auto kv = store();
    const Error error = error_of(kv->read(ref("old")), "old");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("SecretDisabled"), std::string::npos);
    EXPECT_NE(error.message.find("disabled in Key Vault"), std::string::npos);
}

TEST_F(AzureKeyVaultStoreTest, ThrottlingAndServerErrorsAreUnavailable) {
    server_.put_secret("db", "s3cr3t-value");
    auto kv = store();
    server_.fail_vault(429, R"({"error":{"code":"Throttled","message":"Rate limit exceeded"}})");
    EXPECT_EQ(error_of(kv->read(ref("db")), "db").code, ErrorCode::unavailable);
    server_.fail_vault(503, R"({"error":{"code":"ServiceUnavailable","message":"try later"}})");
    const Error error = error_of(kv->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::unavailable);
    EXPECT_NE(error.message.find("HTTP 503: ServiceUnavailable: try later"), std::string::npos);
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");  // one attempt each, no retry
}

TEST_F(AzureKeyVaultStoreTest, ConnectionRefusedIsUnavailable) {
    int closed_port = 0;
    {
        agent::testing::TlsTestServer closed(agent::testing::pki());
        closed.start();
        closed_port = closed.port();
    }
    allow_vault(closed_port);
    auto s = settings();
    s.vault_url = "https://127.0.0.1:" + std::to_string(closed_port);
    auto kv = store(s);
    EXPECT_EQ(error_of(kv->read(ref("db")), "db").code, ErrorCode::unavailable);
}

TEST_F(AzureKeyVaultStoreTest, EgressRefusalIsPermissionDenied) {
    egress::PolicyOptions po;  // allows IMDS only
    po.allow.push_back(egress::AllowRule{
        .host = "127.0.0.1", .port = server_.imds_port(), .plaintext_http = true});
    policies_.push_back(std::make_unique<egress::EgressPolicy>(po));
    auto kv = store();
    EXPECT_EQ(error_of(kv->read(ref("db")), "db").code, ErrorCode::permission_denied);
    EXPECT_EQ(server_.vault_requests(), 0);
}

TEST_F(AzureKeyVaultStoreTest, RevokedTokenIsReplacedOnceAfterA401) {
    server_.put_secret("db", "s3cr3t-value");
    auto kv = store();
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    server_.revoke_tokens();
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    EXPECT_EQ(server_.imds_requests(), 2);
    EXPECT_EQ(server_.vault_requests(), 3);
}

TEST_F(AzureKeyVaultStoreTest, A401AfterTheRetryIsPermissionDenied) {
    server_.put_secret("db", "s3cr3t-value");
    auto fixed = std::make_unique<FixedTokenSource>();
    FixedTokenSource* tokens = fixed.get();
    auto kv = store(settings(), std::move(fixed));
    const Error error = error_of(kv->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("HTTP 401: Unauthorized: AKV10000"), std::string::npos)
        << error.message;
    EXPECT_EQ(error.message.find("not-a-token"), std::string::npos);
    EXPECT_EQ(tokens->invalidations, 1);
    EXPECT_EQ(server_.vault_requests(), 2);
}

TEST_F(AzureKeyVaultStoreTest, TokenFailureNamesStoreAndKeepsItsKind) {
    server_.fail_imds(503, R"({"error":"service_unavailable","error_description":"busy"})");
    auto kv = store();
    const Error error = error_of(kv->read(ref("db")), "db");
    EXPECT_EQ(error.code, ErrorCode::unavailable);
    EXPECT_NE(error.message.find("cannot get an access token: Azure managed identity token: "
                                 "HTTP 503"),
              std::string::npos)
        << error.message;

    server_.set_identities({});
    EXPECT_EQ(error_of(kv->read(ref("db")), "db").code, ErrorCode::permission_denied);
    EXPECT_EQ(server_.vault_requests(), 0);
}

TEST_F(AzureKeyVaultStoreTest, MalformedAnswerIsInvalidArgument) {
    server_.put_secret("weird", "s3cr3t-value");
    server_.malformed_secret("weird");
    auto kv = store();
    EXPECT_EQ(error_of(kv->read(ref("weird")), "weird").code, ErrorCode::invalid_argument);
    server_.fail_vault(200, R"({"id":"https://myvault.vault.azure.net/secrets/weird/v1"})");
    EXPECT_EQ(error_of(kv->read(ref("weird")), "weird").code, ErrorCode::invalid_argument);
    server_.fail_vault(200, R"({"value":42})");
    EXPECT_EQ(error_of(kv->read(ref("weird")), "weird").code, ErrorCode::invalid_argument);
}

TEST_F(AzureKeyVaultStoreTest, ErrorBodiesAreQuotedOnlyThroughErrorDetail) {
    auto kv = store();
    server_.fail_vault(
        500,
        nlohmann::json{
            {"error", {{"code", "InternalError"}, {"message", "a\r\nb" + std::string(1000, 'z')}}}}
            .dump());
    const Error error = error_of(kv->read(ref("db")), "db");
    EXPECT_EQ(error.message.find_first_of("\r\n"), std::string::npos);
    EXPECT_NE(error.message.find("InternalError: a  b"), std::string::npos) << error.message;
    EXPECT_LT(error.message.size(), store_where("kv", "db").size() + 230);
    // A body that is no KeyVaultError is not quoted at all.
    server_.fail_vault(502, "<html>bad gateway s3cr3t-value</html>");
    EXPECT_EQ(error_of(kv->read(ref("db")), "db").message, store_where("kv", "db") + ": HTTP 502");
}

TEST_F(AzureKeyVaultStoreTest, BadReferencesAreRefusedBeforeAnyRequest) {
    auto kv = store();
    for (const char* path : {"a/b/c", "under_score", "a/", "x/v-1", "../secrets"}) {
        EXPECT_EQ(error_of(kv->read(ref(path)), path).code, ErrorCode::invalid_argument) << path;
    }
    EXPECT_EQ(server_.vault_requests(), 0);
    EXPECT_EQ(server_.imds_requests(), 0);
}

TEST_F(AzureKeyVaultStoreTest, ConcurrentReadsFromFourThreads) {
    server_.put_secret("db", R"({"password":"p4ss"})");
    server_.put_secret("api", "s3cr3t-value");
    auto kv = store();
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 10; ++i) {
                auto value = t % 2 ? kv->read(ref("db", "password")) : kv->read(ref("api"));
                if (value && value->reveal() == (t % 2 ? "p4ss" : "s3cr3t-value")) ++ok;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(ok, 40);
    EXPECT_EQ(server_.imds_requests(), 1);
    EXPECT_EQ(server_.vault_requests(), 40);
}

// client_credentials end to end: a real auth::TokenClient (client_secret_post)
// against the test server's Microsoft identity platform token endpoint.
class AzureClientCredentialsTest : public AzureKeyVaultStoreTest {
  protected:
    AzureKeyVaultSettings client_settings() const {
        auto s = settings();
        s.auth.method = "client_credentials";
        s.auth.tenant_id = AzureTestServer::kTenant;
        s.auth.client_id = AzureTestServer::kClientId;
        s.auth.client_secret = SecretRef{.store = "files", .path = "azure-client-secret"};
        s.auth.authority = server_.authority();
        return s;
    }

    std::unique_ptr<AzureKeyVaultStore> client_store() {
        auto reader = [this](const SecretRef& r) -> Result<SecretValue> {
            EXPECT_EQ(r.path, "azure-client-secret");
            ++secret_reads_;
            return SecretValue::copy_of(client_secret_);
        };
        auto tokens = make_token_source(client_settings(), transport(), reader, clock_);
        EXPECT_TRUE(tokens) << tokens.error().describe();
        if (!tokens) return nullptr;
        EXPECT_NE(dynamic_cast<auth::TokenClient*>(tokens->get()), nullptr);
        return store(client_settings(), std::move(*tokens));
    }

    std::string client_secret_ = "first-client-secret";
    int secret_reads_ = 0;
};

TEST_F(AzureClientCredentialsTest, ReadsWithATokenFromTheClientCredentialsGrant) {
    server_.set_client_secret("first-client-secret");
    server_.put_secret("db", "s3cr3t-value");
    auto kv = client_store();
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    EXPECT_EQ(server_.token_requests(), 1);
    EXPECT_EQ(server_.imds_requests(), 0);
    EXPECT_EQ(secret_reads_, 1);
}

TEST_F(AzureClientCredentialsTest, RotatedClientSecretIsPickedUpAfterA401) {
    server_.set_client_secret("first-client-secret");
    server_.put_secret("db", "s3cr3t-value");
    auto kv = client_store();
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    // The secret is rotated in Entra ID and where the agent reads it; the old
    // token is revoked: the 401 makes the store fetch a new token, which
    // re-reads the client secret.
    server_.set_client_secret("second-client-secret");
    client_secret_ = "second-client-secret";
    server_.revoke_tokens();
    EXPECT_EQ(value_of(kv->read(ref("db"))), "s3cr3t-value");
    EXPECT_EQ(server_.token_requests(), 2);
    EXPECT_EQ(secret_reads_, 2);
}

TEST_F(AzureClientCredentialsTest, RejectedClientSecretIsPermissionDenied) {
    server_.set_client_secret("another-secret");
    auto kv = client_store();
    const Error error = error_of(kv->read(ref("db")), "db", "first-client-secret");
    EXPECT_EQ(error.code, ErrorCode::permission_denied);
    EXPECT_NE(error.message.find("cannot get an access token"), std::string::npos);
    EXPECT_EQ(server_.vault_requests(), 0);
}

TEST(AzureKeyVaultSettingsTest, ValidationNamesTheField) {
    AzureKeyVaultSettings good;
    good.vault_url = "https://myvault.vault.azure.net";
    EXPECT_TRUE(validate(good));

    const auto field_of_error = [](AzureKeyVaultSettings s) {
        auto result = validate(s);
        return result ? std::string("ok") : result.error().message;
    };
    auto s = good;
    s.vault_url = "http://myvault.vault.azure.net";
    EXPECT_TRUE(field_of_error(s).starts_with("vault_url"));
    s = good;
    s.vault_url = "https://myvault.vault.azure.net/secrets?x";
    EXPECT_TRUE(field_of_error(s).starts_with("vault_url"));
    s = good;
    s.api_version = "7.4&x=1";
    EXPECT_TRUE(field_of_error(s).starts_with("api_version"));
    s = good;
    s.timeout_seconds = 0;
    EXPECT_TRUE(field_of_error(s).starts_with("timeout_seconds"));
    s = good;
    s.auth.method = "password";
    EXPECT_TRUE(field_of_error(s).starts_with("auth.method"));
    s = good;
    s.auth.client_id = "not a guid";
    EXPECT_TRUE(field_of_error(s).starts_with("auth.client_id"));

    s = good;
    s.auth.method = "client_credentials";
    s.auth.tenant_id = "contoso.onmicrosoft.com";
    s.auth.client_id = "app";
    s.auth.client_secret = SecretRef{.store = "env", .path = "AZURE_CLIENT_SECRET"};
    EXPECT_EQ(field_of_error(s), "ok");
    EXPECT_EQ(client_credentials_token_url(s),
              "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
    EXPECT_EQ(client_credentials_scope(s), "https://vault.azure.net/.default");
    auto options = client_credentials_options(s);
    ASSERT_TRUE(options);
    EXPECT_EQ(options->auth_method, auth::ClientAuthMethod::client_secret_post);
    EXPECT_EQ(options->client_id, "app");
    EXPECT_EQ(options->client_secret.path, "AZURE_CLIENT_SECRET");
    EXPECT_EQ(options->timeout, std::chrono::seconds(10));
    EXPECT_FALSE(client_credentials_options(good));  // managed_identity
    auth::SystemClock clock;
    auto no_reader = make_token_source(s, std::make_unique<FixedTransport>(), {}, clock);
    ASSERT_FALSE(no_reader);
    EXPECT_NE(no_reader.error().message.find("auth.client_secret"), std::string::npos);
    auto t = s;
    t.auth.tenant_id = "a/b";
    EXPECT_TRUE(field_of_error(t).starts_with("auth.tenant_id"));
    t = s;
    t.auth.client_secret = {};
    EXPECT_TRUE(field_of_error(t).starts_with("auth.client_secret"));
    t = s;
    t.auth.authority = "http://login.example";
    EXPECT_TRUE(field_of_error(t).starts_with("auth.authority"));

    auto made = AzureKeyVaultStore::create("kv", AzureKeyVaultSettings{}, nullptr, nullptr);
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(made.error().message.rfind("secret store \"kv\": vault_url", 0), 0u);
}

}  // namespace
}  // namespace sa::agent::secrets::azure
