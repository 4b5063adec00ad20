#pragma once
// HTTP CONNECT proxy configuration for the egress clients (issue #4).
//
// - Source: the agent's config, or else the HTTPS_PROXY / https_proxy and
//   NO_PROXY / no_proxy environment conventions (config wins; the caller
//   decides which one to pass).
// - The clients always tunnel (CONNECT, also for https), so TLS stays end to
//   end: the real server's certificate, host name and SPKI pins are checked
//   exactly as without a proxy.
// - Egress policy: the real destination must be in the allowlist (its name
//   is not resolved locally: the proxy resolves it, so the client cannot pin
//   its address), AND the proxy host:port must be an allowed destination
//   itself; the connection is pinned to the proxy's checked addresses.
// - Credentials: a username here, the password from the secret store
//   (SecretValue), read at the point of use and handed to libcurl per
//   request; a password inside a proxy URL is refused.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::egress {

struct ProxyConfig {
    std::string host;  // the proxy's host (name or IP literal, no brackets)
    int port = 3128;
    // false: http:// proxy (CONNECT over plain TCP, the common case). true
    // (https:// proxy URL) is accepted by the parser but refused by the
    // clients for now (unavailable), so it never silently falls back.
    bool tls = false;
    std::string username;  // empty: no auth
    // NOT OWNED; must outlive every request made with this config. Read at
    // the point of use, never logged or copied into errors.
    const secrets::SecretValue* password = nullptr;
    // NO_PROXY entries: "example.com" (domain + subdomains), ".example.com"
    // (the same), "*" (everything), IP literals, CIDRs ("10.0.0.0/8"); an
    // entry may carry ":PORT" to only match that port.
    std::vector<std::string> no_proxy;

    std::string where() const;  // "host:port" (IPv6 in brackets), for messages
};

// Parses "http://[user@]host[:port][/]" as in HTTPS_PROXY (scheme optional,
// default port 3128; "https://" sets tls). Errors: invalid_argument naming
// what is wrong; a password in the URL ("user:pass@") is refused with a
// message saying to use the secret store (the password is not echoed).
Result<ProxyConfig> parse_proxy_url(std::string_view url);

// Comma-separated (spaces ignored, empty entries dropped, lower-cased).
std::vector<std::string> parse_no_proxy(std::string_view list);

// HTTPS_PROXY, else https_proxy, with NO_PROXY, else no_proxy. nullopt when
// neither proxy variable is set (or set to ""); an unparsable value is
// treated as unset, because the environment is a fallback and a config
// proxy is the supported way (the caller may log that it was ignored).
std::optional<ProxyConfig> proxy_from_environment();

// True when host:port must be contacted directly (matches a NO_PROXY entry).
// Case-insensitive; "example.com" and ".example.com" match example.com and
// any subdomain; IP literals match exactly or by CIDR (never by name).
bool bypasses_proxy(const ProxyConfig& proxy, std::string_view host, int port);

}  // namespace sa::agent::egress
