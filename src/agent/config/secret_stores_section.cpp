#include "agent/config/secret_stores_section.h"

#include <cctype>
#include <cstdlib>

#include "agent/config/yaml_reader.h"

namespace sa::agent::config {
namespace {

using yaml::error_at;
using yaml::Map;
using yaml::parse_int;
using yaml::parse_secret_field;
using yaml::quoted;

// Keys every store takes (type, cache, retry) plus the type's own.
std::vector<const char*> keys(std::initializer_list<const char*> own) {
    std::vector<const char*> out{"type", "cache", "retry"};
    out.insert(out.end(), own.begin(), own.end());
    return out;
}

// Map's constructor takes an initializer_list; this builds the same check
// from a vector (common keys + the type's own).
Map checked_map(const YAML::Node& node, const std::string& path, const std::string& type,
                std::vector<const char*> allowed) {
    Map map(node, path, {});
    for (const auto& entry : node) {
        const std::string key = entry.first.Scalar();
        if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; })) {
            error_at(map.at(key), "unknown key for type " + type);
        }
    }
    return map;
}

std::string https_url(const Map& map, const std::string& key, bool required) {
    if (!map.has(key)) {
        if (required) error_at(map.at(key), "missing required key");
        return {};
    }
    std::string url = Map::string_value(map.get(key), map.at(key));
    if (url.rfind("https://", 0) != 0) error_at(map.at(key), "must start with https://");
    if (url.find_first_of(" \t\r\n@?#") != std::string::npos) {
        error_at(map.at(key), "must be https://HOST[:PORT][/PATH] without credentials or query");
    }
    while (url.size() > 8 && url.back() == '/') url.pop_back();
    return url;
}

// http:// is allowed for endpoints on loopback/link-local (the egress rule
// then needs plaintext_http); the egress layer enforces the destination.
std::string http_or_https_url(const Map& map, const std::string& key) {
    std::string url = Map::string_value(map.get(key), map.at(key));
    if (url.rfind("https://", 0) != 0 && url.rfind("http://", 0) != 0) {
        error_at(map.at(key), "must start with http:// or https://");
    }
    if (url.find_first_of(" \t\r\n@?#") != std::string::npos) {
        error_at(map.at(key), "must be a URL without credentials or query");
    }
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
}

int timeout_seconds(const Map& map, int fallback) {
    return map.has("timeout_seconds")
               ? parse_int(map.get("timeout_seconds"), 1, 300, map.at("timeout_seconds"))
               : fallback;
}

std::string one_of(const Map& map, const std::string& key, const std::string& fallback,
                   const std::vector<std::string>& allowed) {
    const std::string value = map.optional_string(key).value_or(fallback);
    if (std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
        error_at(map.at(key), "must be one of " + yaml::list(allowed));
    }
    return value;
}

secrets::SecretRef required_ref(const Map& map, const std::string& key, const std::string& why) {
    if (!map.has(key)) error_at(map.at(key), "missing required key (" + why + ")");
    return parse_secret_field(map.get(key), map.at(key));
}

std::string required_for(const Map& map, const std::string& key, const std::string& why) {
    if (!map.has(key)) error_at(map.at(key), "missing required key (" + why + ")");
    return Map::string_value(map.get(key), map.at(key));
}

secrets::AccessOptions parse_access(const Map& store) {
    secrets::AccessOptions access;
    if (store.has("cache")) {
        Map cache(store.get("cache"), store.at("cache"), {"ttl_seconds", "max_entries"});
        if (cache.has("ttl_seconds")) {
            access.cache_ttl = std::chrono::seconds(
                parse_int(cache.get("ttl_seconds"), 0, 86400, cache.at("ttl_seconds")));
        }
        if (cache.has("max_entries")) {
            access.cache_max_entries = static_cast<size_t>(
                parse_int(cache.get("max_entries"), 1, 10000, cache.at("max_entries")));
        }
    }
    if (store.has("retry")) {
        Map retry(store.get("retry"), store.at("retry"),
                  {"max_attempts", "initial_backoff_ms", "max_backoff_ms"});
        if (retry.has("max_attempts")) {
            access.max_attempts =
                parse_int(retry.get("max_attempts"), 1, 10, retry.at("max_attempts"));
        }
        if (retry.has("initial_backoff_ms")) {
            access.retry_base = std::chrono::milliseconds(parse_int(
                retry.get("initial_backoff_ms"), 1, 60000, retry.at("initial_backoff_ms")));
        }
        if (retry.has("max_backoff_ms")) {
            access.retry_max = std::chrono::milliseconds(
                parse_int(retry.get("max_backoff_ms"), 1, 300000, retry.at("max_backoff_ms")));
        }
        if (access.retry_max < access.retry_base) {
            error_at(retry.at("max_backoff_ms"), "must not be below initial_backoff_ms");
        }
    }
    return access;
}

secrets::vault::VaultSettings parse_vault(const Map& store) {
    secrets::vault::VaultSettings out;
    out.address = https_url(store, "address", true);
    if (auto mount = store.optional_string("mount")) out.mount = *mount;
    if (auto ns = store.optional_string("namespace")) out.namespace_ = *ns;
    out.timeout_seconds = timeout_seconds(store, out.timeout_seconds);
    if (!store.has("auth")) error_at(store.at("auth"), "missing required key");
    Map auth(store.get("auth"), store.at("auth"),
             {"method", "mount", "token", "role_id", "secret_id", "role", "jwt_file"});
    auto& a = out.auth;
    a.method = one_of(auth, "method", "token", {"token", "approle", "kubernetes"});
    if (auto mount = auth.optional_string("mount")) a.mount = *mount;
    if (a.method == "token") {
        a.token = required_ref(auth, "token", "method token");
    } else if (a.method == "approle") {
        a.role_id = required_for(auth, "role_id", "method approle");
        a.secret_id = required_ref(auth, "secret_id", "method approle");
    } else {
        a.role = required_for(auth, "role", "method kubernetes");
        if (auto file = auth.optional_string("jwt_file")) a.jwt_file = *file;
    }
    return out;
}

secrets::aws::AwsSecretsManagerSettings parse_aws(const Map& store) {
    secrets::aws::AwsSecretsManagerSettings out;
    out.region = store.required_string("region");
    out.endpoint = https_url(store, "endpoint", false);
    out.timeout_seconds = timeout_seconds(store, out.timeout_seconds);
    if (!store.has("auth")) error_at(store.at("auth"), "missing required key");
    Map auth(store.get("auth"), store.at("auth"),
             {"method", "access_key_id", "secret_access_key", "session_token", "role_arn",
              "token_file", "session_name", "sts_endpoint", "duration_seconds"});
    auto& a = out.auth;
    a.method = one_of(auth, "method", "static", {"static", "web_identity"});
    if (a.method == "static") {
        a.access_key_id = required_ref(auth, "access_key_id", "method static");
        a.secret_access_key = required_ref(auth, "secret_access_key", "method static");
        if (auth.has("session_token")) {
            a.session_token =
                parse_secret_field(auth.get("session_token"), auth.at("session_token"));
        }
    } else {
        // EKS (IRSA) injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE.
        const char* role = std::getenv("AWS_ROLE_ARN");
        const char* file = std::getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
        a.role_arn = auth.optional_string("role_arn").value_or(role != nullptr ? role : "");
        a.token_file = auth.optional_string("token_file").value_or(file != nullptr ? file : "");
        if (a.role_arn.empty()) {
            error_at(auth.at("role_arn"),
                     "missing required key (method web_identity; or set "
                     "AWS_ROLE_ARN)");
        }
        if (a.token_file.empty()) {
            error_at(auth.at("token_file"),
                     "missing required key (method web_identity; or set "
                     "AWS_WEB_IDENTITY_TOKEN_FILE)");
        }
        if (auto name = auth.optional_string("session_name")) a.session_name = *name;
        a.sts_endpoint = https_url(auth, "sts_endpoint", false);
        if (auth.has("duration_seconds")) {
            a.duration_seconds =
                parse_int(auth.get("duration_seconds"), 900, 43200, auth.at("duration_seconds"));
        }
    }
    return out;
}

secrets::azure::AzureKeyVaultSettings parse_azure(const Map& store) {
    secrets::azure::AzureKeyVaultSettings out;
    out.vault_url = https_url(store, "vault_url", true);
    if (auto version = store.optional_string("api_version")) out.api_version = *version;
    out.timeout_seconds = timeout_seconds(store, out.timeout_seconds);
    auto& a = out.auth;
    if (store.has("auth")) {
        Map auth(store.get("auth"), store.at("auth"),
                 {"method", "tenant_id", "client_id", "client_secret", "authority", "imds_endpoint",
                  "resource"});
        a.method = one_of(auth, "method", a.method, {"managed_identity", "client_credentials"});
        if (auto id = auth.optional_string("client_id")) a.client_id = *id;
        if (auto resource = auth.optional_string("resource")) a.resource = *resource;
        if (a.method == "client_credentials") {
            a.tenant_id = required_for(auth, "tenant_id", "method client_credentials");
            if (a.client_id.empty()) {
                error_at(auth.at("client_id"), "missing required key (method client_credentials)");
            }
            a.client_secret = required_ref(auth, "client_secret", "method client_credentials");
            if (auth.has("authority")) a.authority = https_url(auth, "authority", true);
        } else if (auth.has("imds_endpoint")) {
            a.imds_endpoint = http_or_https_url(auth, "imds_endpoint");
        }
    }
    return out;
}

secrets::gcp::GcpSecretManagerSettings parse_gcp(const Map& store) {
    secrets::gcp::GcpSecretManagerSettings out;
    out.project = store.required_string("project");
    if (store.has("endpoint")) out.endpoint = https_url(store, "endpoint", true);
    out.timeout_seconds = timeout_seconds(store, static_cast<int>(out.timeout_seconds));
    auto& a = out.auth;
    if (store.has("auth")) {
        Map auth(store.get("auth"), store.at("auth"),
                 {"method", "metadata_url", "service_account", "key", "scope"});
        a.method = one_of(auth, "method", a.method, {"metadata", "service_account_key"});
        if (a.method == "metadata") {
            if (auth.has("metadata_url")) a.metadata_url = http_or_https_url(auth, "metadata_url");
            if (auto account = auth.optional_string("service_account"))
                a.service_account = *account;
        } else {
            a.key = required_ref(auth, "key", "method service_account_key");
            if (auto scope = auth.optional_string("scope")) a.scope = *scope;
        }
    }
    return out;
}

secrets::dapr::DaprSettings parse_dapr(const Map& store) {
    secrets::dapr::DaprSettings out;
    if (store.has("address")) out.address = http_or_https_url(store, "address");
    out.dapr_store = store.required_string("dapr_store");
    if (store.has("api_token")) {
        out.api_token = parse_secret_field(store.get("api_token"), store.at("api_token"));
    }
    out.timeout_seconds = timeout_seconds(store, out.timeout_seconds);
    return out;
}

// The credential references a remote store's settings hold, with their keys.
std::vector<std::pair<secrets::SecretRef, std::string>> credential_refs(
    const RemoteStoreSettings& settings, const std::string& path) {
    std::vector<std::pair<secrets::SecretRef, std::string>> out;
    const std::string auth = path + ".auth";
    std::visit(
        [&](const auto& s) {
            using T = std::decay_t<decltype(s)>;
            if constexpr (std::is_same_v<T, secrets::vault::VaultSettings>) {
                if (s.auth.method == "token") out.emplace_back(s.auth.token, auth + ".token");
                if (s.auth.method == "approle") {
                    out.emplace_back(s.auth.secret_id, auth + ".secret_id");
                }
            } else if constexpr (std::is_same_v<T, secrets::aws::AwsSecretsManagerSettings>) {
                if (s.auth.method == "static") {
                    out.emplace_back(s.auth.access_key_id, auth + ".access_key_id");
                    out.emplace_back(s.auth.secret_access_key, auth + ".secret_access_key");
                    if (s.auth.session_token) {
                        out.emplace_back(*s.auth.session_token, auth + ".session_token");
                    }
                }
            } else if constexpr (std::is_same_v<T, secrets::azure::AzureKeyVaultSettings>) {
                if (s.auth.method == "client_credentials") {
                    out.emplace_back(s.auth.client_secret, auth + ".client_secret");
                }
            } else if constexpr (std::is_same_v<T, secrets::gcp::GcpSecretManagerSettings>) {
                if (s.auth.method == "service_account_key")
                    out.emplace_back(s.auth.key, auth + ".key");
            } else if constexpr (std::is_same_v<T, secrets::dapr::DaprSettings>) {
                if (s.api_token) out.emplace_back(*s.api_token, path + ".api_token");
            }
        },
        settings);
    return out;
}

bool is_local_type(const std::string& type) {
    return type == "file" || type == "env";
}

}  // namespace

const std::vector<std::string>& secret_store_types() {
    static const std::vector<std::string> types{
        "file", "env", "vault", "aws_secrets_manager", "azure_key_vault", "gcp_secret_manager",
        "dapr"};
    return types;
}

void parse_secret_stores(const YAML::Node& node, const std::string& path, Config& config) {
    Map stores(node, path, {});
    for (const auto& entry : node) {
        const std::string name = entry.first.Scalar();
        const std::string at = stores.at(name);
        if (!yaml::is_name(name, 64)) error_at(at, "store names must match [A-Za-z0-9_.-]{1,64}");
        if (!entry.second.IsMap()) error_at(at, "must be a mapping");
        const YAML::Node type_node = entry.second["type"];
        if (!type_node.IsDefined() || type_node.IsNull())
            error_at(at + ".type", "missing required key");
        secrets::StoreSpec spec{.name = name, .type = Map::string_value(type_node, at + ".type")};
        const auto& types = secret_store_types();
        if (std::find(types.begin(), types.end(), spec.type) == types.end()) {
            error_at(at + ".type", "unknown secret store type " + quoted(spec.type) +
                                       " (supported: " + yaml::list(types) + ")");
        }
        if (spec.type == "file") {
            Map store = checked_map(entry.second, at, spec.type, keys({"path"}));
            spec.path = store.required_string("path");
            spec.access = parse_access(store);
        } else if (spec.type == "env") {
            Map store = checked_map(entry.second, at, spec.type, keys({"prefix"}));
            if (auto prefix = store.optional_string("prefix")) {
                const bool valid = std::all_of(prefix->begin(), prefix->end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                });
                if (!valid) error_at(store.at("prefix"), "must match [A-Za-z0-9_]+");
                spec.prefix = *prefix;
            }
            spec.access = parse_access(store);
        } else {
            RemoteStoreSettings settings;
            if (spec.type == "vault") {
                Map store =
                    checked_map(entry.second, at, spec.type,
                                keys({"address", "mount", "namespace", "timeout_seconds", "auth"}));
                settings = parse_vault(store);
                spec.access = parse_access(store);
            } else if (spec.type == "aws_secrets_manager") {
                Map store = checked_map(entry.second, at, spec.type,
                                        keys({"region", "endpoint", "timeout_seconds", "auth"}));
                settings = parse_aws(store);
                spec.access = parse_access(store);
            } else if (spec.type == "azure_key_vault") {
                Map store =
                    checked_map(entry.second, at, spec.type,
                                keys({"vault_url", "api_version", "timeout_seconds", "auth"}));
                settings = parse_azure(store);
                spec.access = parse_access(store);
            } else if (spec.type == "gcp_secret_manager") {
                Map store = checked_map(entry.second, at, spec.type,
                                        keys({"project", "endpoint", "timeout_seconds", "auth"}));
                settings = parse_gcp(store);
                spec.access = parse_access(store);
            } else {  // dapr
                Map store =
                    checked_map(entry.second, at, spec.type,
                                keys({"address", "dapr_store", "api_token", "timeout_seconds"}));
                settings = parse_dapr(store);
                spec.access = parse_access(store);
            }
            config.remote_secret_stores.emplace(name, std::move(settings));
        }
        config.secret_stores.push_back(std::move(spec));
    }
    // A remote store's own credentials come from a local store, so no store
    // depends on another remote one (and start-up order is simple).
    for (const auto& [name, settings] : config.remote_secret_stores) {
        for (const auto& [ref, key] : credential_refs(settings, stores.at(name))) {
            auto it = std::find_if(config.secret_stores.begin(), config.secret_stores.end(),
                                   [&](const auto& s) { return s.name == ref.store; });
            if (it == config.secret_stores.end()) {
                error_at(key, "unknown secret store " + quoted(ref.store));
            }
            if (!is_local_type(it->type)) {
                error_at(key,
                         "must name a file or env store (a store's own credentials cannot "
                         "come from another remote store)");
            }
        }
    }
}

}  // namespace sa::agent::config
