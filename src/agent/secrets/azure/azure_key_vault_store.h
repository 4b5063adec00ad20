#pragma once
// AzureKeyVaultStore: secrets from Azure Key Vault (config type
// azure_key_vault), read just in time with one request per read:
//
//   GET {vault_url}/secrets/{name}[/{version}]?api-version={api_version}
//   Authorization: Bearer TOKEN
//
// See https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret
//
// Reference: STORE/NAME, STORE/NAME/VERSION, and either with #KEY. NAME is
// the Key Vault secret name (1-127 of A-Z a-z 0-9 -), VERSION the version id
// (letters and digits; omitted: the current version). The secret's "value"
// is returned whole, or with #KEY parsed as JSON and that (dotted) string
// field selected (select_secret).
//
// Errors (messages start with store_where(name, path), never carry a value
// or token): 404 (SecretNotFound) -> not_found; 403 (Forbidden, also
// ForbiddenByRbac / AccessDenied) -> permission_denied; 403 with inner code
// SecretDisabled -> permission_denied saying the secret is disabled; 401 ->
// the token is invalidated and the request retried once with a fresh token,
// then permission_denied; 429, 5xx, transport failures -> unavailable; a
// 400 or a malformed answer -> invalid_argument. A token failure keeps the
// token source's code (unauthenticated becomes permission_denied).
// Message form for vendor errors: "WHERE: HTTP 403: Forbidden (SecretDisabled): MESSAGE".
//
// Thread-safe: one mutex around each read (the transport and the token
// source are used by one thread at a time). Nothing is cached but the token
// source's access token.
#include <memory>
#include <mutex>
#include <string>

#include "agent/auth/clock.h"
#include "agent/auth/token_client.h"
#include "agent/egress/http.h"
#include "agent/secrets/azure/azure_settings.h"
#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::azure {

class AzureKeyVaultStore final : public SecretStore {
  public:
    // name: the store's name under secret_stores (for messages). transport:
    // the connection to the vault (owned). tokens: Key Vault access tokens
    // (a ManagedIdentityTokenSource or an auth::TokenClient built from
    // client_credentials_token_url / client_credentials_scope). Validates
    // the settings (invalid_argument naming the field); does no I/O.
    static Result<std::unique_ptr<AzureKeyVaultStore>> create(
        std::string name, AzureKeyVaultSettings settings,
        std::unique_ptr<egress::Transport> transport, std::unique_ptr<auth::TokenSource> tokens);

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    AzureKeyVaultStore(std::string name, AzureKeyVaultSettings settings,
                       std::unique_ptr<egress::Transport> transport,
                       std::unique_ptr<auth::TokenSource> tokens);

    std::string name_;
    AzureKeyVaultSettings settings_;
    std::unique_ptr<egress::Transport> transport_;
    std::unique_ptr<auth::TokenSource> tokens_;
    std::mutex mutex_;
};

// Checks settings (every field, also those of the auth method not chosen
// only where set). Errors: invalid_argument naming the field.
Status validate(const AzureKeyVaultSettings& settings);

// For auth.method client_credentials (the lead builds the TokenClient):
// AUTHORITY/TENANT_ID/oauth2/v2.0/token and RESOURCE/.default.
std::string client_credentials_token_url(const AzureKeyVaultSettings& settings);
std::string client_credentials_scope(const AzureKeyVaultSettings& settings);
// The whole TokenClient configuration for auth.method client_credentials:
// the URL and scope above, client_secret_post, auth.client_id and
// auth.client_secret, the store's timeout. Errors: invalid_argument naming
// the field (validate), also when auth.method is not client_credentials.
Result<auth::TokenClient::Options> client_credentials_options(
    const AzureKeyVaultSettings& settings);

// The token source settings.auth names: a ManagedIdentityTokenSource, or an
// auth::TokenClient (client_credentials_options) that reads auth.client_secret
// through credentials. transport: the source's own connection (to IMDS or
// to the authority), owned by it; clock must outlive it. Errors:
// invalid_argument naming the field. Does no I/O.
Result<std::unique_ptr<auth::TokenSource>> make_token_source(
    const AzureKeyVaultSettings& settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader credentials, const auth::Clock& clock);

}  // namespace sa::agent::secrets::azure
