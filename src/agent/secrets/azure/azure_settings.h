#pragma once
// Settings of an Azure Key Vault secret store, as parsed from
//
//   secret_stores:
//     NAME:
//       type: azure_key_vault
//       vault_url: https://myvault.vault.azure.net
//       auth: {method: managed_identity | client_credentials, ...}
//
// Field names are the snake_case YAML keys. Plain data: the store's factory
// (AzureKeyVaultStore::create) validates it and names the wrong field.
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::azure {

// How the agent gets an access token for Key Vault (Microsoft Entra ID).
struct AzureAuthSettings {
    // "managed_identity": a token from the Azure Instance Metadata Service of
    // the VM the agent runs on (no credential in the config);
    // "client_credentials": an app registration's client secret
    // (OAuth 2.0 client credentials grant, client_secret_post).
    std::string method = "managed_identity";
    // client_credentials: the directory (tenant) id or a verified domain.
    std::string tenant_id;
    // client_credentials: the application (client) id. managed_identity:
    // optional, the client id of a user-assigned identity (empty: the VM's
    // system-assigned identity).
    std::string client_id;
    // client_credentials: where the client secret is read from, just in time
    // for each token request (e.g. a file or env store).
    SecretRef client_secret;
    // client_credentials: the Microsoft Entra authority; token URL is
    // AUTHORITY/TENANT_ID/oauth2/v2.0/token. Other clouds use their own
    // (e.g. https://login.microsoftonline.us).
    std::string authority = "https://login.microsoftonline.com";
    // managed_identity: the IMDS token endpoint (plain http on the
    // link-local address; the egress allow rule needs plaintext_http).
    std::string imds_endpoint = "http://169.254.169.254/metadata/identity/oauth2/token";
    // The token audience: Key Vault's resource id. The client_credentials
    // scope is RESOURCE + "/.default". Other clouds: e.g.
    // https://vault.usgovcloudapi.net.
    std::string resource = "https://vault.azure.net";
};

struct AzureKeyVaultSettings {
    // The vault's base URL (https), e.g. https://myvault.vault.azure.net.
    std::string vault_url;
    // The Key Vault data-plane REST API version sent with every request.
    std::string api_version = "7.4";
    // Timeout of each HTTP request (Key Vault and token endpoint), seconds.
    int timeout_seconds = 10;
    AzureAuthSettings auth;
};

}  // namespace sa::agent::secrets::azure
