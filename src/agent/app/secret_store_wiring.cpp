#include "agent/app/secret_store_wiring.h"

#include <variant>

#include "agent/auth/clock.h"
#include "agent/secrets/aws/aws_secrets_manager_store.h"
#include "agent/secrets/azure/azure_key_vault_store.h"
#include "agent/secrets/dapr/dapr_secret_store.h"
#include "agent/secrets/env_secret_store.h"
#include "agent/secrets/file_secret_store.h"
#include "agent/secrets/gcp/gcp_secret_store.h"
#include "agent/secrets/vault/vault_secret_store.h"

namespace sa::agent::app {
namespace {

const auth::Clock& system_clock() {
    static const auth::SystemClock clock;
    return clock;
}

template <typename T>
Result<secrets::SecretStorePtr> as_store(Result<std::unique_ptr<T>> made) {
    if (!made) return std::unexpected(made.error());
    return secrets::SecretStorePtr(std::move(*made));
}

Result<secrets::SecretStorePtr> make_remote_store(const std::string& name,
                                                  const config::RemoteStoreSettings& settings,
                                                  const StoreTransportFactory& make_transport,
                                                  const secrets::CredentialReader& credentials) {
    auto transport = make_transport();
    if (!transport) return std::unexpected(transport.error());
    return std::visit(
        [&](const auto& s) -> Result<secrets::SecretStorePtr> {
            using T = std::decay_t<decltype(s)>;
            if constexpr (std::is_same_v<T, secrets::vault::VaultSettings>) {
                return as_store(secrets::vault::VaultSecretStore::create(
                    name, s, std::move(*transport), credentials));
            } else if constexpr (std::is_same_v<T, secrets::aws::AwsSecretsManagerSettings>) {
                return as_store(secrets::aws::AwsSecretsManagerStore::create(
                    name, s, credentials, std::move(*transport)));
            } else if constexpr (std::is_same_v<T, secrets::dapr::DaprSettings>) {
                return as_store(secrets::dapr::DaprSecretStore::create(
                    name, s, std::move(*transport), credentials));
            } else {
                // Azure and GCP: an OAuth token source with a transport of its own.
                auto token_transport = make_transport();
                if (!token_transport) return std::unexpected(token_transport.error());
                if constexpr (std::is_same_v<T, secrets::azure::AzureKeyVaultSettings>) {
                    auto tokens = secrets::azure::make_token_source(s, std::move(*token_transport),
                                                                    credentials, system_clock());
                    if (!tokens) return std::unexpected(tokens.error());
                    return as_store(secrets::azure::AzureKeyVaultStore::create(
                        name, s, std::move(*transport), std::move(*tokens)));
                } else {
                    auto tokens = secrets::gcp::make_gcp_token_source(
                        s, std::move(*token_transport), credentials, system_clock());
                    if (!tokens) return std::unexpected(tokens.error());
                    return as_store(secrets::gcp::GcpSecretManagerStore::create(
                        name, s, std::move(*transport), std::move(*tokens)));
                }
            }
        },
        settings);
}

// "SCHEME://HOST[:PORT]" of a URL, without its path.
std::string scheme_and_authority(const std::string& url) {
    const size_t scheme_end = url.find("://");
    const size_t path =
        scheme_end == std::string::npos ? std::string::npos : url.find('/', scheme_end + 3);
    return path == std::string::npos ? url : url.substr(0, path);
}

}  // namespace

StoreTransportFactory http_store_transports(egress::HttpClient::Options options) {
    return [options = std::move(options)]() -> Result<std::unique_ptr<egress::Transport>> {
        auto client = egress::HttpClient::create(options);
        if (!client) return std::unexpected(client.error());
        return std::unique_ptr<egress::Transport>(
            std::make_unique<egress::HttpClient>(std::move(*client)));
    };
}

void add_local_secret_stores(secrets::SecretStores& stores, const config::Config& config) {
    for (const secrets::StoreSpec& spec : config.secret_stores) {
        if (spec.type == "file") {
            stores.add(spec.name, std::make_unique<secrets::FileSecretStore>(spec.name, spec.path),
                       spec.access);
        } else if (spec.type == "env") {
            stores.add(spec.name, std::make_unique<secrets::EnvSecretStore>(spec.name, spec.prefix),
                       spec.access);
        }
    }
}

Status add_remote_secret_stores(secrets::SecretStores& stores, const config::Config& config,
                                const StoreTransportFactory& make_transport) {
    for (const secrets::StoreSpec& spec : config.secret_stores) {
        auto settings = config.remote_secret_stores.find(spec.name);
        if (settings == config.remote_secret_stores.end()) continue;
        auto store = make_remote_store(spec.name, settings->second, make_transport,
                                       stores.reader("credentials of secret store " + spec.name));
        if (!store) {
            return fail(store.error().code,
                        "secret_stores." + spec.name + ": " + store.error().message);
        }
        stores.add(spec.name, std::move(*store), spec.access);
    }
    return {};
}

std::vector<StoreEndpoint> secret_store_endpoints(const config::Config& config) {
    std::vector<StoreEndpoint> out;
    for (const auto& [name, settings] : config.remote_secret_stores) {
        const std::string at = "secret_stores." + name + ".";
        std::visit(
            [&](const auto& s) {
                using T = std::decay_t<decltype(s)>;
                if constexpr (std::is_same_v<T, secrets::vault::VaultSettings>) {
                    out.push_back({s.address, at + "address"});
                } else if constexpr (std::is_same_v<T, secrets::aws::AwsSecretsManagerSettings>) {
                    out.push_back({s.endpoint.empty()
                                       ? "https://secretsmanager." + s.region + ".amazonaws.com"
                                       : s.endpoint,
                                   at + "endpoint"});
                    if (s.auth.method == "web_identity") {
                        out.push_back({s.auth.sts_endpoint.empty()
                                           ? "https://sts." + s.region + ".amazonaws.com"
                                           : s.auth.sts_endpoint,
                                       at + "auth.sts_endpoint"});
                    }
                } else if constexpr (std::is_same_v<T, secrets::azure::AzureKeyVaultSettings>) {
                    out.push_back({s.vault_url, at + "vault_url"});
                    if (s.auth.method == "client_credentials") {
                        out.push_back({s.auth.authority, at + "auth.authority"});
                    } else {
                        out.push_back({scheme_and_authority(s.auth.imds_endpoint),
                                       at + "auth.imds_endpoint"});
                    }
                } else if constexpr (std::is_same_v<T, secrets::gcp::GcpSecretManagerSettings>) {
                    out.push_back({s.endpoint, at + "endpoint"});
                    if (s.auth.method == "metadata") {
                        out.push_back({s.auth.metadata_url, at + "auth.metadata_url"});
                    } else {
                        // The key file's token_uri is only known when it is
                        // read; Google's default is allowed here, any other
                        // needs an egress.allow entry.
                        out.push_back({"https://oauth2.googleapis.com", at + "auth.key"});
                    }
                } else if constexpr (std::is_same_v<T, secrets::dapr::DaprSettings>) {
                    out.push_back({s.address, at + "address"});
                }
            },
            settings);
    }
    return out;
}

}  // namespace sa::agent::app
