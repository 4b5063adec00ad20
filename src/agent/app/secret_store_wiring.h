#pragma once
// The agent's secret stores, built from its config (issue #5).
//
// Local stores (file, env) are added first: they need no network and hold
// the credentials that the remote stores and the proxy use for themselves
// (config validation keeps those references local). Remote stores (vault,
// aws_secrets_manager, azure_key_vault, gcp_secret_manager, dapr) are added
// once the proxy is known: each gets its own egress::Transport from the
// caller's factory (the agent's HttpClient: egress policy, proxy, CA, rate
// limit, network log), reads its own credentials through the registry
// (audited with the purpose "credentials of secret store NAME"), and is
// wrapped by the registry's retry, cache and audit hook (secret_stores.h).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/config/config.h"
#include "agent/egress/http.h"
#include "agent/egress/http_client.h"
#include "agent/secrets/secret_stores.h"
#include "common/result.h"

namespace sa::agent::app {

// Makes one transport for a remote store (its own HttpClient: one per
// store and token source, as HttpClient is single-threaded).
using StoreTransportFactory = std::function<Result<std::unique_ptr<egress::Transport>>()>;

// A factory of HttpClients with the given options (the agent's egress
// policy, proxy, rate limiter and network log), which must outlive them.
StoreTransportFactory http_store_transports(egress::HttpClient::Options options);

// Adds the file and env stores of the config. Does no I/O.
void add_local_secret_stores(secrets::SecretStores& stores, const config::Config& config);

// Adds the remote stores of the config. `stores` must not move afterwards
// (the stores read their credentials through it). Errors: invalid_argument
// "secret_stores.NAME: ..." when a backend refuses its settings, or the
// factory's error. Does no network I/O.
Status add_remote_secret_stores(secrets::SecretStores& stores, const config::Config& config,
                                const StoreTransportFactory& make_transport);

// A URL a remote store connects to, for the egress policy's implicit allow
// rules ("https://vault.corp:8200", "http://169.254.169.254").
struct StoreEndpoint {
    std::string url;
    std::string origin;  // e.g. "secret_stores.vault.address"
};
std::vector<StoreEndpoint> secret_store_endpoints(const config::Config& config);

}  // namespace sa::agent::app
