#pragma once
// Settings of a HashiCorp Vault KV v2 secret store: one entry
//   secret_stores: {NAME: {type: vault, ...}}
// of the agent config. Field names are the YAML keys (snake_case); the one
// exception is namespace_ (YAML key "namespace", a C++ keyword). Plain data:
// VaultSecretStore::create validates it.
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::vault {

// How the store gets its own Vault token. Credentials are references read
// just in time through the store's CredentialReader, never values.
struct VaultAuthSettings {
    // "token" | "approle" | "kubernetes".
    std::string method = "token";
    // Where the auth method is mounted, without "auth/" ("approle",
    // "k8s-prod"); empty: the method's default ("approle" / "kubernetes").
    // Not used by method token.
    std::string mount;
    // method token: reference to the Vault token (e.g. files/vault-token).
    SecretRef token;
    // method approle: the RoleID (an identifier, not a secret).
    std::string role_id;
    // method approle: reference to the SecretID.
    SecretRef secret_id;
    // method kubernetes: the Vault role bound to the service account.
    std::string role;
    // method kubernetes: the projected service account token, read fresh at
    // every login (the kubelet rotates it).
    std::string jwt_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
};

struct VaultSettings {
    // Base URL of Vault, "https://vault.example.com:8200" (no "/v1"; a
    // trailing slash is ignored). The egress policy must allow its host:port.
    std::string address;
    // Mount path of the KV version 2 engine ("secret", "kv/team-a").
    std::string mount = "secret";
    // YAML key "namespace": the Vault Enterprise / HCP namespace
    // ("admin/team-a"), sent as X-Vault-Namespace on every request including
    // logins; empty: none (the root namespace).
    std::string namespace_;
    // Timeout of each HTTP request to Vault, 1..300 seconds.
    int timeout_seconds = 10;
    VaultAuthSettings auth;
};

}  // namespace sa::agent::secrets::vault
