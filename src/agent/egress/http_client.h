#pragma once
// HttpClient: the agent's only outbound HTTP implementation (libcurl).
// SECURITY NOTE: the egress policy is fixed here and has no switch to turn it
// off: https only (also for redirects, which are never followed), TLS 1.2 as
// the floor, peer and host name verification always on, proxies from the
// environment ignored (a proxy is only used when Options::proxy is set; the
// caller may build it with proxy_from_environment()). tests/lint/no_direct_network.sh keeps every
// other folder from opening connections itself.
//
// With Options::policy set (the agent always sets it), every request is
// first checked by EgressPolicy::check (a denial fails it before anything is
// sent) and the connection is pinned to exactly the checked addresses:
// libcurl gets them through CURLOPT_RESOLVE and an open-socket callback
// refuses any other address. The rule's CA file, SPKI pins and the policy's
// TLS floor apply. Without a policy (the hub's tests) none of this happens.
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
        // Called once per request, also for denials and failures; must not
        // block or throw.
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
    Result<HttpResponse> send_checked(const HttpRequest& request, ConnectionRecord& record);
    HttpClient(Options options, std::unique_ptr<Handles> handles);

    Options options_;
    std::unique_ptr<Handles> handles_;
};

}  // namespace sa::agent::egress
