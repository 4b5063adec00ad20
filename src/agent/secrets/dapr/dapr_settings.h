#pragma once
// Settings of a Dapr secret store, as parsed from
//
//   secret_stores:
//     NAME:
//       type: dapr
//       dapr_store: vault          # the Dapr secret store component
//
// Field names are the snake_case YAML keys. Plain data: DaprSecretStore::create
// validates it and names the wrong field.
#include <optional>
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::dapr {

struct DaprSettings {
    // The Dapr sidecar's HTTP API: http:// (plain http needs an egress allow
    // rule with plaintext_http, accepted for loopback only) or https://,
    // scheme://host:port without a path.
    std::string address = "http://127.0.0.1:3500";
    // The name of the Dapr secret store component (metadata.name of its
    // Component resource) the secrets are read from. Required.
    std::string dapr_store;
    // Where the Dapr API token is read from, just in time for each request,
    // when the sidecar requires one (DAPR_API_TOKEN); sent as the
    // dapr-api-token header. Unset: no token is sent.
    std::optional<SecretRef> api_token;
    // Timeout of each HTTP request to the sidecar, seconds.
    int timeout_seconds = 10;
};

}  // namespace sa::agent::secrets::dapr
