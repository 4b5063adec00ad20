#include "agent/app/secret_store_wiring.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <mutex>

#include "agent/app/egress_wiring.h"
#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::app {
namespace {

config::Config base_config() {
    config::Config c;
    c.agent.id = "edge-1";
    c.hub.url = "https://hub.example.com";
    return c;
}

void add_store(config::Config& config, const std::string& name, const std::string& type,
               std::optional<config::RemoteStoreSettings> remote = std::nullopt) {
    config.secret_stores.push_back(secrets::StoreSpec{.name = name, .type = type});
    if (remote) config.remote_secret_stores.emplace(name, std::move(*remote));
}

const egress::AllowRule* rule_from(const egress::PolicyOptions& options,
                                   const std::string& origin) {
    for (const auto& rule : options.allow) {
        if (rule.origin == origin) return &rule;
    }
    return nullptr;
}

TEST(SecretStoreWiringTest, LocalStoresAreBuiltFromTheirSpecs) {
    sa::testing::TempDir dir;
    testing::write_test_file((dir.path() / "hub-secret").string(), "file-value");
    ::setenv("SA_WIRING_SPEC_TOKEN", "env-value", 1);
    config::Config config = base_config();
    config.secret_stores.push_back(secrets::StoreSpec{
        .name = "files",
        .type = "file",
        .path = dir.path().string(),
        .access = secrets::AccessOptions{.cache_ttl = std::chrono::seconds(60)}});
    config.secret_stores.push_back(
        secrets::StoreSpec{.name = "vars", .type = "env", .prefix = "SA_WIRING_SPEC_"});
    secrets::SecretStores stores;
    add_local_secret_stores(stores, config);
    auto from_env = stores.read(secrets::SecretRef{"vars", "TOKEN", ""});
    ::unsetenv("SA_WIRING_SPEC_TOKEN");
    ASSERT_TRUE(from_env) << from_env.error().describe();
    EXPECT_EQ(from_env->reveal(), "env-value");
    auto from_file = stores.read(secrets::SecretRef{"files", "hub-secret", ""});
    ASSERT_TRUE(from_file) << from_file.error().describe();
    EXPECT_EQ(from_file->reveal(), "file-value");
    // The file store's cache option came along: a second read within the
    // TTL is served without the file.
    std::filesystem::remove(dir.path() / "hub-secret");
    auto cached = stores.read(secrets::SecretRef{"files", "hub-secret", ""});
    ASSERT_TRUE(cached) << cached.error().describe();
    EXPECT_EQ(cached->reveal(), "file-value");
}

TEST(SecretStoreEndpointsTest, EveryRemoteStoreNamesWhereItConnects) {
    config::Config config = base_config();
    add_store(config, "vault", "vault",
              secrets::vault::VaultSettings{.address = "https://vault.corp.example:8200"});
    secrets::aws::AwsSecretsManagerSettings aws{.region = "eu-central-1"};
    aws.auth.method = "web_identity";
    add_store(config, "aws", "aws_secrets_manager", aws);
    add_store(config, "azure", "azure_key_vault",
              secrets::azure::AzureKeyVaultSettings{.vault_url = "https://kv.vault.azure.net"});
    add_store(config, "gcp", "gcp_secret_manager",
              secrets::gcp::GcpSecretManagerSettings{.project = "p"});
    add_store(config, "dapr", "dapr", secrets::dapr::DaprSettings{.dapr_store = "vault"});

    std::map<std::string, std::string> urls;
    for (const auto& endpoint : secret_store_endpoints(config))
        urls[endpoint.origin] = endpoint.url;
    EXPECT_EQ(
        urls,
        (std::map<std::string, std::string>{
            {"secret_stores.vault.address", "https://vault.corp.example:8200"},
            {"secret_stores.aws.endpoint", "https://secretsmanager.eu-central-1.amazonaws.com"},
            {"secret_stores.aws.auth.sts_endpoint", "https://sts.eu-central-1.amazonaws.com"},
            {"secret_stores.azure.vault_url", "https://kv.vault.azure.net"},
            {"secret_stores.azure.auth.imds_endpoint", "http://169.254.169.254"},
            {"secret_stores.gcp.endpoint", "https://secretmanager.googleapis.com"},
            {"secret_stores.gcp.auth.metadata_url", "http://metadata.google.internal"},
            {"secret_stores.dapr.address", "http://127.0.0.1:3500"},
        }));

    // They become allow rules; plain http only to the local metadata/sidecar
    // addresses, with plaintext_http.
    auto options = egress_policy_options(config);
    ASSERT_TRUE(options) << options.error().describe();
    const auto* vault = rule_from(*options, "secret_stores.vault.address");
    ASSERT_NE(vault, nullptr);
    EXPECT_EQ(vault->host, "vault.corp.example");
    EXPECT_EQ(vault->port, 8200);
    EXPECT_FALSE(vault->plaintext_http);
    const auto* imds = rule_from(*options, "secret_stores.azure.auth.imds_endpoint");
    ASSERT_NE(imds, nullptr);
    EXPECT_EQ(imds->host, "169.254.169.254");
    EXPECT_EQ(imds->port, 80);
    EXPECT_TRUE(imds->plaintext_http);
    const auto* metadata = rule_from(*options, "secret_stores.gcp.auth.metadata_url");
    ASSERT_NE(metadata, nullptr);
    ASSERT_EQ(metadata->cidrs.size(), 1u);
    EXPECT_EQ(metadata->cidrs[0].text(), "169.254.169.254/32");
    EXPECT_TRUE(metadata->plaintext_http);
    const auto* dapr = rule_from(*options, "secret_stores.dapr.address");
    ASSERT_NE(dapr, nullptr);
    EXPECT_EQ(dapr->port, 3500);
    EXPECT_TRUE(dapr->plaintext_http);
}

TEST(SecretStoreEndpointsTest, PlainHttpBeyondTheHostIsRefused) {
    config::Config config = base_config();
    add_store(config, "dapr", "dapr",
              secrets::dapr::DaprSettings{.address = "http://10.1.2.3:3500", .dapr_store = "x"});
    auto options = egress_policy_options(config);
    ASSERT_FALSE(options);
    EXPECT_EQ(options.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(options.error().message,
              "secret_stores.dapr.address: plaintext_http is only allowed to loopback or "
              "link-local addresses, not 10.1.2.3");

    config.remote_secret_stores.at("dapr") =
        secrets::dapr::DaprSettings{.address = "http://dapr.internal:3500", .dapr_store = "x"};
    auto named = egress_policy_options(config);
    ASSERT_FALSE(named);
    EXPECT_NE(named.error().message.find("add an egress.allow entry with plaintext_http"),
              std::string::npos)
        << named.error().message;
}

TEST(SecretStoreWiringTest, RemoteSettingsRefusedByTheBackendNameTheStore) {
    config::Config config = base_config();
    add_store(config, "dapr", "dapr", secrets::dapr::DaprSettings{.dapr_store = ""});
    secrets::SecretStores stores;
    add_local_secret_stores(stores, config);
    auto st = add_remote_secret_stores(
        stores, config, [] { return Result<std::unique_ptr<egress::Transport>>(nullptr); });
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(st.error().message.rfind("secret_stores.dapr: ", 0), 0u) << st.error().message;
}

// The whole chain: config -> implicit egress rule -> a real HttpClient ->
// the store (Dapr's API, the simplest) whose own token comes from a local
// env store -> the registry's audit event.
TEST(SecretStoreWiringTest, RemoteStoreReadsThroughTheEgressPolicyWithALocalCredential) {
    testing::TlsTestServer server(testing::pki());
    std::mutex mutex;
    std::string seen_token;
    server.http().Get(
        "/v1.0/secrets/kv/db-password", [&](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mutex);
            seen_token = req.get_header_value("dapr-api-token");
            res.set_content(R"({"db-password":"pa55-w0rd-value"})", "application/json");
        });
    server.start();
    sa::testing::TempDir dir;
    const std::string ca_file =
        testing::write_test_file((dir.path() / "ca.pem").string(), testing::pki().ca.cert_pem);
    ::setenv("SA_WIRING_TEST_DAPR_TOKEN", "dapr-token-value", 1);

    config::Config config = base_config();
    config.secret_stores.push_back(
        secrets::StoreSpec{.name = "vars", .type = "env", .prefix = "SA_WIRING_TEST_"});
    secrets::dapr::DaprSettings dapr{.address = server.url(), .dapr_store = "kv"};
    dapr.api_token = secrets::SecretRef{"vars", "DAPR_TOKEN", ""};
    add_store(config, "dapr", "dapr", dapr);

    auto options = egress_policy_options(config);
    ASSERT_TRUE(options) << options.error().describe();
    const egress::EgressPolicy policy(std::move(*options));
    secrets::SecretStores stores;
    std::vector<secrets::AccessEvent> events;
    stores.set_observer([&](const secrets::AccessEvent& event) { events.push_back(event); });
    add_local_secret_stores(stores, config);
    egress::HttpClient::Options http;
    http.ca_file = ca_file;
    http.policy = &policy;
    auto st = add_remote_secret_stores(stores, config, http_store_transports(http));
    ASSERT_TRUE(st) << st.error().describe();

    auto value = stores.read(secrets::SecretRef{"dapr", "db-password", ""},
                             secrets::AccessContext{.purpose = "source password", .job_id = "j-1"});
    ::unsetenv("SA_WIRING_TEST_DAPR_TOKEN");
    ASSERT_TRUE(value) << value.error().describe();
    EXPECT_EQ(value->reveal(), "pa55-w0rd-value");
    {
        std::lock_guard lock(mutex);
        EXPECT_EQ(seen_token, "dapr-token-value");
    }
    // The store's own credential read is an access too, with its purpose.
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].store, "vars");
    EXPECT_EQ(events[0].purpose, "credentials of secret store dapr");
    EXPECT_EQ(events[1].store, "dapr");
    EXPECT_EQ(events[1].purpose, "source password");
    EXPECT_EQ(events[1].job_id, "j-1");
    EXPECT_EQ(events[1].outcome, "ok");
}

}  // namespace
}  // namespace sa::agent::app
