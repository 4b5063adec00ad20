#pragma once
// StreamConnection: an outbound byte stream (TLS by default) for protocols
// that are not HTTP, such as syslog to a SIEM (RFC 5425). It is built on
// libcurl's connect-only mode so it shares HttpClient's connection code and
// TLS policy: TLS 1.2 floor, peer and host name verification always on,
// proxies from the environment ignored.
//
// With Options::policy set, the destination is checked by
// EgressPolicy::check before connecting and the connection is pinned to the
// checked addresses, the rule's CA file, SPKI pins and the policy's TLS
// floor, exactly as in HttpClient. on_connection receives one record per
// connection: at once for a failed open, when the connection is destroyed
// otherwise (bytes_up counts what send_all wrote).
//
// With Options::rate_limiter set, send_all writes in 16 KiB blocks, each
// after the limiter granted it (global limit and the destination rule's
// limit): a burst of messages is slowed down, never failed. write_timeout
// counts from each grant, so time spent waiting for the limiter does not
// fail the write. The stream's destination never redirects (not HTTP).
//
// SECURITY NOTE: plain TCP exists only because RFC 6587 syslog receivers are
// common inside customer networks; it must be asked for explicitly
// (Options::tls = false) and callers log that choice.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/egress/policy.h"
#include "agent/egress/proxy.h"
#include "agent/egress/rate_limit.h"
#include "common/result.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace sa::agent::egress {

class StreamConnection final {
  public:
    struct Options {
        std::string host;
        int port = 0;
        bool tls = true;
        std::optional<std::string> ca_file;  // unset: the system trust store
        std::chrono::milliseconds connect_timeout{10'000};
        std::chrono::milliseconds write_timeout{10'000};
        // Not owned; must outlive the connection. Null: no allowlist.
        const EgressPolicy* policy = nullptr;
        // Not owned; as HttpClient::Options::proxy (CONNECT tunnel unless
        // host is in proxy->no_proxy; TLS, when asked for, is end to end).
        const ProxyConfig* proxy = nullptr;
        // Not owned; must outlive the connection; thread-safe, may be shared.
        // Null: writes are not limited.
        EgressRateLimiter* rate_limiter = nullptr;
        // Must not block or throw.
        std::function<void(const ConnectionRecord&)> on_connection;
        // Mutual TLS (tls only): called on the opening thread with the
        // connection's SSL_CTX before the handshake, to install a client
        // certificate and key. An error fails open() with that error.
        std::function<Status(ssl_ctx_st*)> configure_tls;
    };

    // Connects (and completes the TLS handshake). Errors: unavailable
    // (refused, unreachable, TLS failure, timeout), invalid_argument,
    // permission_denied (egress policy), integrity (SPKI pin mismatch).
    static Result<StreamConnection> open(const Options& options);

    StreamConnection(StreamConnection&&) noexcept;
    StreamConnection& operator=(StreamConnection&&) noexcept;
    ~StreamConnection();

    // Writes every byte or fails (unavailable); after a failure the
    // connection is unusable and the caller opens a new one.
    Status send_all(std::string_view data);

    // True when the peer has closed the connection or it has failed; checked
    // without blocking, so a writer can reconnect before losing a message.
    bool peer_closed();

  private:
    struct Handle;
    static Result<StreamConnection> open_checked(const Options& options, ConnectionRecord& record);
    Status send_block(std::string_view data);
    explicit StreamConnection(std::unique_ptr<Handle> handle);
    std::unique_ptr<Handle> handle_;
};

}  // namespace sa::agent::egress
