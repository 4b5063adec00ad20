#pragma once
// StreamConnection: an outbound byte stream (TLS by default) for protocols
// that are not HTTP, such as syslog to a SIEM (RFC 5425). It is built on
// libcurl's connect-only mode so it shares HttpClient's connection code and
// TLS policy: TLS 1.2 floor, peer and host name verification always on,
// proxies from the environment ignored.
//
// SECURITY NOTE: plain TCP exists only because RFC 6587 syslog receivers are
// common inside customer networks; it must be asked for explicitly
// (Options::tls = false) and callers log that choice.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

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
    };

    // Connects (and completes the TLS handshake). Errors: unavailable
    // (refused, unreachable, TLS failure, timeout), invalid_argument.
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
    explicit StreamConnection(std::unique_ptr<Handle> handle);
    std::unique_ptr<Handle> handle_;
};

}  // namespace sa::agent::egress
