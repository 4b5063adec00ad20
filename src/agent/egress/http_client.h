#pragma once
// HttpClient: the agent's only outbound HTTP implementation (libcurl).
// SECURITY NOTE: the egress policy is fixed here and has no switch to turn it
// off: https only (also for redirects), TLS 1.2 as the floor, peer and host
// name verification always on, proxies from the environment ignored (a proxy
// is only used when Options::proxy is set; the caller may build it with
// proxy_from_environment()). tests/lint/no_direct_network.sh keeps every
// other folder from opening connections itself.
//
// With Options::policy set (the agent always sets it), every request is
// first checked by EgressPolicy::check (a denial fails it before anything is
// sent) and the connection is pinned to exactly the checked addresses:
// libcurl gets them through CURLOPT_RESOLVE and an open-socket callback
// refuses any other address. The rule's CA file, SPKI pins and the policy's
// TLS floor apply. Without a policy (the hub's tests) none of this happens.
//
// Plain http:// is the one exception to "https only", and needs a policy: the
// rule that allows the destination must set plaintext_http (which the config
// only accepts for loopback and link-local destinations, see
// check_plaintext_rule) and every checked address must be loopback or
// link-local; such requests never use the proxy. This is for endpoints that
// only speak http and never leave the host or its link: cloud metadata
// services (169.254.169.254) and a Dapr sidecar on loopback.
//
// Redirects: libcurl never follows them (CURLOPT_FOLLOWLOCATION stays off).
// HttpClient follows one itself only when the rule that allowed the current
// destination has max_redirects > 0 and the response is 301/302/303/307/308
// with a Location; otherwise (and always without a policy) the 3xx response
// is returned to the caller. Each hop: the Location is resolved against the
// current URL, must be https, and its host:port goes through the full policy
// check and pinning again (a refusal is permission_denied "egress: redirect
// from A to B refused: ..."); 303, and 301/302 of anything but GET/HEAD,
// become a GET without body (Content-* headers dropped), 307/308 keep method
// and body; the Authorization and the Cookie / Proxy-Authorization headers
// are dropped once host or port changes; every hop is its own
// ConnectionRecord. More hops than the current rule's max_redirects fail
// with unavailable ("too many redirects"). request.timeout covers the chain.
//
// With Options::rate_limiter set, the request body is sent in 16 KiB blocks,
// each after the limiter granted it (global limit and the destination rule's
// limit), so a long upload is slowed down to the configured rate, never
// failed: the request timeout is extended by the time the body needs at the
// lowest applicable rate.
//
// One HttpClient per thread (it is not thread-safe); it keeps connections
// alive between requests to the same host.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/egress/http.h"
#include "agent/egress/policy.h"
#include "agent/egress/proxy.h"
#include "agent/egress/rate_limit.h"

namespace sa::agent::egress {

class HttpClient final : public Transport {
  public:
    struct Options {
        // PEM bundle of trusted CAs; unset: the system trust store.
        std::optional<std::string> ca_file;
        std::chrono::milliseconds connect_timeout{10'000};
        // A larger response body fails the request (invalid_argument).
        size_t max_response_bytes = 16 * 1024 * 1024;
        // When it becomes true, a running request stops within ~100 ms and
        // fails with unavailable ("aborted"); not owned, may be null.
        const std::atomic<bool>* abort = nullptr;
        std::string user_agent = "secure-agent";
        // Not owned; must outlive the client. Null: no allowlist (tests, hub).
        const EgressPolicy* policy = nullptr;
        // Not owned; must outlive the client (and its password the requests).
        // Null: direct connections. Set: every request whose destination is
        // not in proxy->no_proxy goes through an HTTP CONNECT tunnel (see
        // proxy.h); with a policy, the proxy host:port must be allowed too.
        const ProxyConfig* proxy = nullptr;
        // Not owned; must outlive the client; may be shared between clients
        // (it is thread-safe). Null: uploads are not limited.
        EgressRateLimiter* rate_limiter = nullptr;
        // Called once per request (once per hop when redirects are followed), also for denials and
        // failures; must not block or throw.
        std::function<void(const ConnectionRecord&)> on_connection;
    };

    // Errors: internal when libcurl cannot allocate its handles.
    static Result<HttpClient> create(Options options);

    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;
    ~HttpClient() override;

    Result<HttpResponse> send(const HttpRequest& request) override;

  private:
    struct Handles;
    // What one hop tells the redirect loop.
    struct Hop {
        const AllowRule* rule = nullptr;  // that allowed it; null without a policy
        // Added to the timeout for a rate-limited body.
        std::chrono::milliseconds extra_timeout{0};
    };
    // One hop: policy check, pinning, transfer.
    Result<HttpResponse> send_checked(const HttpRequest& request, ConnectionRecord& record,
                                      Hop& hop);
    Result<HttpResponse> send_hop(const HttpRequest& request, const std::string& redirected_from,
                                  Hop& hop);
    HttpClient(Options options, std::unique_ptr<Handles> handles);

    Options options_;
    std::unique_ptr<Handles> handles_;
};

}  // namespace sa::agent::egress
