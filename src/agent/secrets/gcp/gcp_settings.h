#pragma once
// Settings of a GCP Secret Manager store: the config section
//   secret_stores: {NAME: {type: gcp_secret_manager, project: ..., auth: {...}}}
// Field names are the snake_case YAML keys. Plain data; validated by
// GcpSecretManagerStore::create and make_gcp_token_source.
#include <cstdint>
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::gcp {

// How the store gets its OAuth access token (YAML: auth).
struct GcpAuthSettings {
    // "metadata": the GCE/GKE/Cloud Run metadata server's token for the
    // attached service account (no key to manage; preferred on GCP).
    // "service_account_key": a service-account key JSON, read through
    // secret_stores at each token exchange (JWT bearer grant, RFC 7523).
    std::string method = "metadata";
    // metadata: base URL of the metadata server. Plain http is only allowed
    // to a loopback/link-local destination whose egress allow rule has
    // plaintext_http (the default resolves to 169.254.169.254).
    std::string metadata_url = "http://metadata.google.internal";
    // metadata: which attached service account ("default" or its e-mail).
    std::string service_account = "default";
    // service_account_key: reference to the key JSON as downloaded from IAM
    // (type, client_email, private_key, private_key_id, token_uri), e.g.
    // "files/gcp-key.json". Never the key itself.
    SecretRef key;
    // service_account_key: the OAuth scope requested for the token.
    std::string scope = "https://www.googleapis.com/auth/cloud-platform";
};

struct GcpSecretManagerSettings {
    // Required: the project id (or number) that owns the secrets.
    std::string project;
    // Secret Manager API base URL (https); a regional or private endpoint
    // (e.g. Private Service Connect) may be set here.
    std::string endpoint = "https://secretmanager.googleapis.com";
    // Timeout of every HTTP request (token and secret), in seconds (1..300).
    int64_t timeout_seconds = 10;
    GcpAuthSettings auth;
};

}  // namespace sa::agent::secrets::gcp
