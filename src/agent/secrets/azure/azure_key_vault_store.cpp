#include "agent/secrets/azure/azure_key_vault_store.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/secrets/azure/managed_identity_token_source.h"
#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"

namespace sa::agent::secrets::azure {
namespace {

bool all_of(std::string_view text, bool (*allowed)(char)) {
    return !text.empty() && std::all_of(text.begin(), text.end(), allowed);
}
bool alnum(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool alnum_dash(char c) {
    return alnum(c) || c == '-';
}
bool alnum_dash_dot(char c) {
    return alnum_dash(c) || c == '.';
}

// scheme://host[:port] with nothing after it but an optional "/".
bool is_base_url(std::string_view url, std::string_view scheme) {
    if (!url.starts_with(scheme) || !url.substr(scheme.size()).starts_with("://")) return false;
    std::string_view rest = url.substr(scheme.size() + 3);
    if (rest.ends_with('/')) rest.remove_suffix(1);
    return !rest.empty() && rest.find_first_of("/?#@ \r\n") == std::string_view::npos;
}

std::string without_trailing_slash(std::string url) {
    while (url.ends_with('/')) url.pop_back();
    return url;
}

// "Code (InnerCode): message" of a Key Vault error body
// ({"error":{"code","message","innererror":{"code"}}}), or "".
struct VaultError {
    std::string code;
    std::string inner_code;
    std::string text;  // for the message, before error_detail
};
VaultError vault_error(const std::string& body) {
    VaultError out;
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_object()) return out;
    const auto& error = doc["error"];
    const auto string_at = [](const nlohmann::json& object, const char* name) {
        return object.contains(name) && object[name].is_string() ? object[name].get<std::string>()
                                                                 : std::string();
    };
    out.code = string_at(error, "code");
    // The REST reference spells it "innererror"; some answers "innerError".
    for (const char* name : {"innererror", "innerError"}) {
        if (error.contains(name) && error[name].is_object()) {
            out.inner_code = string_at(error[name], "code");
        }
    }
    out.text = out.code;
    if (!out.inner_code.empty()) out.text += " (" + out.inner_code + ")";
    const std::string message = string_at(error, "message");
    if (!message.empty()) out.text += (out.text.empty() ? "" : ": ") + message;
    return out;
}

}  // namespace

Status validate(const AzureKeyVaultSettings& settings) {
    const auto invalid = [](const std::string& what) {
        return fail(ErrorCode::invalid_argument, what);
    };
    if (!is_base_url(settings.vault_url, "https")) {
        return invalid(
            "vault_url must be an https:// URL of the vault (https://NAME.vault.azure.net)");
    }
    if (!all_of(settings.api_version, alnum_dash_dot)) {
        return invalid("api_version must be a Key Vault API version such as 7.4");
    }
    if (settings.timeout_seconds <= 0) return invalid("timeout_seconds must be positive");
    const auto& auth = settings.auth;
    if (!is_base_url(auth.resource, "https")) {
        return invalid("auth.resource must be an https:// URL such as https://vault.azure.net");
    }
    if (auth.method == "managed_identity") {
        if (!auth.client_id.empty() && !all_of(auth.client_id, alnum_dash)) {
            return invalid(
                "auth.client_id must be the client id (a GUID) of a user-assigned identity");
        }
        if (auto options = ManagedIdentityTokenSource::options_from(settings); !options) {
            return std::unexpected(options.error());
        }
        return {};
    }
    if (auth.method == "client_credentials") {
        if (!all_of(auth.tenant_id, alnum_dash_dot)) {
            return invalid("auth.tenant_id must be the directory (tenant) id or domain");
        }
        if (auth.client_id.empty())
            return invalid("auth.client_id is required for client_credentials");
        if (auth.client_secret.store.empty() || auth.client_secret.path.empty()) {
            return invalid("auth.client_secret must reference the client secret (STORE/PATH)");
        }
        if (!is_base_url(auth.authority, "https")) {
            return invalid(
                "auth.authority must be an https:// URL such as https://login.microsoftonline.com");
        }
        return {};
    }
    return invalid("auth.method must be managed_identity or client_credentials");
}

std::string client_credentials_token_url(const AzureKeyVaultSettings& settings) {
    return without_trailing_slash(settings.auth.authority) + "/" + settings.auth.tenant_id +
           "/oauth2/v2.0/token";
}

std::string client_credentials_scope(const AzureKeyVaultSettings& settings) {
    return without_trailing_slash(settings.auth.resource) + "/.default";
}

Result<auth::TokenClient::Options> client_credentials_options(
    const AzureKeyVaultSettings& settings) {
    if (auto valid = validate(settings); !valid) return std::unexpected(valid.error());
    if (settings.auth.method != "client_credentials") {
        return fail(ErrorCode::invalid_argument, "auth.method is not client_credentials");
    }
    auth::TokenClient::Options options;
    options.token_url = client_credentials_token_url(settings);
    options.client_id = settings.auth.client_id;
    options.client_secret = settings.auth.client_secret;
    options.auth_method = auth::ClientAuthMethod::client_secret_post;
    options.scope = client_credentials_scope(settings);
    options.timeout = std::chrono::seconds(settings.timeout_seconds);
    options.server_name = "Microsoft Entra ID";
    return options;
}

Result<std::unique_ptr<auth::TokenSource>> make_token_source(
    const AzureKeyVaultSettings& settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader credentials, const auth::Clock& clock) {
    if (!transport) return fail(ErrorCode::invalid_argument, "the token source needs a transport");
    if (settings.auth.method == "client_credentials") {
        auto options = client_credentials_options(settings);
        if (!options) return std::unexpected(options.error());
        if (!credentials) {
            return fail(ErrorCode::invalid_argument,
                        "auth.client_secret needs a credential reader");
        }
        return std::make_unique<auth::TokenClient>(std::move(transport), std::move(credentials),
                                                   std::move(*options), clock);
    }
    if (auto valid = validate(settings); !valid) return std::unexpected(valid.error());
    auto options = ManagedIdentityTokenSource::options_from(settings);
    if (!options) return std::unexpected(options.error());
    return std::make_unique<ManagedIdentityTokenSource>(std::move(transport), std::move(*options),
                                                        clock);
}

Result<std::unique_ptr<AzureKeyVaultStore>> AzureKeyVaultStore::create(
    std::string name, AzureKeyVaultSettings settings, std::unique_ptr<egress::Transport> transport,
    std::unique_ptr<auth::TokenSource> tokens) {
    if (auto valid = validate(settings); !valid) {
        return fail(ErrorCode::invalid_argument,
                    "secret store \"" + name + "\": " + valid.error().message);
    }
    if (!transport || !tokens) {
        return fail(ErrorCode::invalid_argument,
                    "secret store \"" + name + "\": needs a transport and a token source");
    }
    settings.vault_url = without_trailing_slash(std::move(settings.vault_url));
    return std::unique_ptr<AzureKeyVaultStore>(new AzureKeyVaultStore(
        std::move(name), std::move(settings), std::move(transport), std::move(tokens)));
}

AzureKeyVaultStore::AzureKeyVaultStore(std::string name, AzureKeyVaultSettings settings,
                                       std::unique_ptr<egress::Transport> transport,
                                       std::unique_ptr<auth::TokenSource> tokens)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      transport_(std::move(transport)),
      tokens_(std::move(tokens)) {}

Result<SecretValue> AzureKeyVaultStore::read(const SecretRef& ref) {
    const std::string where = store_where(name_, ref.path);

    // NAME or NAME/VERSION; checked here so a bad reference never reaches
    // the vault (and cannot change the request path).
    const size_t slash = ref.path.find('/');
    const std::string secret_name = ref.path.substr(0, slash);
    const std::string version = slash == std::string::npos ? "" : ref.path.substr(slash + 1);
    if (!all_of(secret_name, alnum_dash) || secret_name.size() > 127 ||
        (slash != std::string::npos && !all_of(version, alnum))) {
        return fail(ErrorCode::invalid_argument,
                    where +
                        ": a Key Vault reference is NAME or NAME/VERSION (NAME: letters, "
                        "digits and '-'; VERSION: letters and digits)");
    }
    std::string url = settings_.vault_url + "/secrets/" + crypto::percent_encode(secret_name);
    if (!version.empty()) url += "/" + crypto::percent_encode(version);
    url += "?api-version=" + settings_.api_version;

    std::lock_guard lock(mutex_);
    Result<egress::HttpResponse> response = fail(ErrorCode::internal, "no request sent");
    // A 401 means the token was revoked or expired early: one retry with a
    // fresh token, as the Entra ID flow expects; a second 401 is final.
    for (int attempt = 0; attempt < 2; ++attempt) {
        auto token = tokens_->access_token();
        if (!token) {
            const ErrorCode code = token.error().code == ErrorCode::unauthenticated
                                       ? ErrorCode::permission_denied
                                       : token.error().code;
            return fail(code, where + ": cannot get an access token: " + token.error().message);
        }
        egress::HttpRequest request;
        request.url = url;
        request.headers = {{"Accept", "application/json"}};
        request.timeout = std::chrono::seconds(settings_.timeout_seconds);
        request.authorization = egress::Authorization::bearer(*token);
        response = transport_->send(request);
        if (!response) return std::unexpected(transport_store_error(where, response.error()));
        if (response->status != 401 || attempt == 1) break;
        tokens_->invalidate();
    }

    if (response->status != 200) {
        const VaultError error = vault_error(response->body);
        Error out = http_store_error(where, response->status, error_detail(error.text));
        if (error.inner_code == "SecretDisabled" || error.code == "SecretDisabled") {
            out.code = ErrorCode::permission_denied;
            out.message +=
                " (the secret is disabled in Key Vault; enable it or use another version)";
        }
        return std::unexpected(std::move(out));
    }

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    wipe(response->body);
    if (!doc.is_object() || !doc.contains("value") || !doc["value"].is_string()) {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument,
                    where + ": Key Vault answer has no string \"value\"");
    }
    std::string value = std::move(doc["value"].get_ref<std::string&>());
    wipe_json(doc);
    return select_secret(std::move(value), ref, where);
}

}  // namespace sa::agent::secrets::azure
