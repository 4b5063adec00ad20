#pragma once
// HttpClient: the agent's only outbound HTTP implementation (libcurl).
// SECURITY NOTE: the egress policy is fixed here and has no switch to turn it
// off: https only (also for redirects, which are never followed), TLS 1.2 as
// the floor, peer and host name verification always on, proxies from the
// environment ignored. tests/lint/no_direct_network.sh keeps every other
// folder from opening connections itself.
//
// One HttpClient per thread (it is not thread-safe); it keeps connections
// alive between requests to the same host.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "agent/egress/http.h"

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
    };

    // Errors: internal when libcurl cannot allocate its handles.
    static Result<HttpClient> create(Options options);

    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;
    ~HttpClient() override;

    Result<HttpResponse> send(const HttpRequest& request) override;

  private:
    struct Handles;
    HttpClient(Options options, std::unique_ptr<Handles> handles);

    Options options_;
    std::unique_ptr<Handles> handles_;
};

}  // namespace sa::agent::egress
