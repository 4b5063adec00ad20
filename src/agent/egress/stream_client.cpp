#include "agent/egress/stream_client.h"

#include <curl/curl.h>
#include <poll.h>

#include <mutex>

#include "agent/egress/connection_pinning.h"
#include "agent/egress/curl_global.h"
#include "common/util/time.h"

namespace sa::agent::egress {
namespace {

bool valid_host(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    for (char c : host) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

struct StreamConnection::Handle {
    struct Free {
        void operator()(CURL* p) const { curl_easy_cleanup(p); }
    };
    // The record of an open connection goes out when it closes (after the
    // socket is closed), so it can carry the bytes written and the duration.
    ConnectionRecord record;
    std::function<void(const ConnectionRecord&)> on_connection;
    std::chrono::steady_clock::time_point opened;
    bool report_on_close = false;
    // Both are referenced by easy's callbacks, so they are declared first
    // and outlive it.
    detail::SocketGuard guard;
    detail::TlsInfo tls;
    std::unique_ptr<CURL, Free> easy;
    std::string where;  // "host:port", for messages
    std::chrono::milliseconds write_timeout{};
    bool broken = false;
    EgressRateLimiter* rate_limiter = nullptr;
    // The allowing rule's limits (by value: the policy may hold the rule,
    // but the limiter matches rules by origin, host and port anyway).
    std::optional<AllowRule> rule;

    Handle() = default;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() {
        easy.reset();
        if (!report_on_close || !on_connection) return;
        record.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - opened)
                                 .count();
        try {
            on_connection(record);
        } catch (...) {
            // A logging callback must not take the process down from a
            // destructor; the record is lost.
        }
    }
};

StreamConnection::StreamConnection(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}
StreamConnection::StreamConnection(StreamConnection&&) noexcept = default;
StreamConnection& StreamConnection::operator=(StreamConnection&&) noexcept = default;
StreamConnection::~StreamConnection() = default;

Result<StreamConnection> StreamConnection::open(const Options& options) {
    ConnectionRecord record;
    record.unix_ms = util::unix_millis();
    record.host = options.host;
    record.port = options.port;
    record.decision = "allowed";
    const auto start = std::chrono::steady_clock::now();
    auto opened = open_checked(options, record);
    if (!opened) {
        record.error = opened.error().message;
        record.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
        if (options.on_connection) options.on_connection(record);
        return opened;
    }
    opened->handle_->record = std::move(record);
    opened->handle_->on_connection = options.on_connection;
    opened->handle_->opened = start;
    opened->handle_->report_on_close = true;
    return opened;
}

Result<StreamConnection> StreamConnection::open_checked(const Options& options,
                                                        ConnectionRecord& record) {
    if (!valid_host(options.host)) {
        return fail(ErrorCode::invalid_argument, "invalid host name \"" + options.host + "\"");
    }
    if (options.port <= 0 || options.port > 65535) {
        return fail(ErrorCode::invalid_argument, "invalid port " + std::to_string(options.port));
    }
    const ProxyConfig* proxy =
        options.proxy != nullptr && !bypasses_proxy(*options.proxy, options.host, options.port)
            ? options.proxy
            : nullptr;
    if (proxy != nullptr) record.via_proxy = proxy->where();
    std::optional<Destination> destination;
    std::optional<Destination> proxy_destination;
    if (options.policy != nullptr) {
        auto checked = proxy != nullptr
                           ? options.policy->check_via_proxy(options.host, options.port)
                           : options.policy->check(options.host, options.port);
        if (!checked) {
            record.decision = "denied";
            record.rule = checked.error().message;
            return std::unexpected(checked.error());
        }
        destination = std::move(*checked);
        record.rule = destination->rule->origin;
        if (!destination->rule->spki_pins.empty()) {
            if (!options.tls) {
                // Pins promise an authenticated peer; plain TCP cannot keep that.
                record.decision = "denied";
                record.rule = "SPKI pins require TLS";
                return fail(ErrorCode::permission_denied,
                            "egress: " + destination->host + ": " + destination->rule->origin +
                                " has SPKI pins, so the connection must use TLS");
            }
            record.pin = "unchecked";
        }
        if (proxy != nullptr) {
            auto proxy_checked = options.policy->check(proxy->host, proxy->port);
            if (!proxy_checked) {
                record.decision = "denied";
                record.rule = "proxy: " + proxy_checked.error().message;
                return std::unexpected(proxy_checked.error());
            }
            proxy_destination = std::move(*proxy_checked);
        }
    }
    if (auto init = ensure_curl_global_init(); !init) return std::unexpected(init.error());
    auto handle = std::make_unique<Handle>();
    handle->easy.reset(curl_easy_init());
    if (!handle->easy) return fail(ErrorCode::internal, "libcurl could not allocate a handle");
    handle->where = options.host + ":" + std::to_string(options.port);
    handle->write_timeout = options.write_timeout;
    if (options.rate_limiter != nullptr && options.rate_limiter->limited()) {
        handle->rate_limiter = options.rate_limiter;
        if (destination) handle->rule = *destination->rule;
    }
    CURL* easy = handle->easy.get();
    bool v6 = options.host.find(':') != std::string::npos;
    std::string url = std::string(options.tls ? "https" : "http") + "://" + (v6 ? "[" : "") +
                      options.host + (v6 ? "]" : "") + ":" + std::to_string(options.port) + "/";
    char error_buffer[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(easy, CURLOPT_CONNECT_ONLY, 1L);
    // --- egress policy, the same as HttpClient's ---
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, options.tls ? "https" : "http");
    curl_easy_setopt(easy, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (options.ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, options.ca_file->c_str());
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    detail::CurlList resolve_list;   // libcurl reads it during perform only
    detail::CurlList proxy_headers;  // the same; wiped when open_checked returns
    if (destination) {
        auto applied = detail::apply_destination(easy, *options.policy, *destination,
                                                 options.ca_file, handle->guard, resolve_list);
        if (!applied) return std::unexpected(applied.error());
    }
    if (proxy != nullptr) {
        auto applied =
            detail::apply_proxy(easy, *proxy, proxy_destination ? &*proxy_destination : nullptr,
                                handle->guard, resolve_list, proxy_headers);
        if (!applied) return std::unexpected(applied.error());
    }
    if (options.tls) {
        handle->tls.configure = options.configure_tls;
        detail::capture_tls_info(easy, &handle->tls);
    }
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
    CURLcode rc = curl_easy_perform(easy);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(easy, CURLOPT_RESOLVE, nullptr);
    if (proxy != nullptr) detail::clear_proxy_headers(easy);
    char* primary_ip = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &primary_ip) == CURLE_OK &&
        primary_ip != nullptr) {
        record.address = primary_ip;
    }
    if (record.address.empty()) record.address = handle->guard.last_address;
    record.tls_version = handle->tls.version;
    record.cipher = handle->tls.cipher;
    if (destination) {
        record.pin = detail::pin_result(&*destination, rc, rc == CURLE_OK && options.tls);
    }
    if (rc != CURLE_OK && handle->guard.refused_address) {
        record.decision = "denied";
        record.rule =
            "address " + *handle->guard.refused_address + " was not checked by egress policy";
        return fail(ErrorCode::permission_denied,
                    "egress: " + handle->where + ": refused to connect to " +
                        *handle->guard.refused_address + ", which the egress policy did not check");
    }
    if (destination && rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
        return fail(ErrorCode::integrity, detail::pin_mismatch_message(*destination));
    }
    if (rc != CURLE_OK && handle->tls.configure_error) {
        return std::unexpected(std::move(*handle->tls.configure_error));
    }
    if (rc != CURLE_OK) {
        std::string detail = error_buffer[0] != 0 ? error_buffer : curl_easy_strerror(rc);
        if (proxy != nullptr) {
            if (auto error =
                    detail::proxy_error(easy, rc, *proxy, options.host, options.port, detail)) {
                return std::unexpected(std::move(*error));
            }
        }
        bool tls_failure = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
                           rc == CURLE_SSL_CACERT_BADFILE;
        return fail(ErrorCode::unavailable,
                    std::string(tls_failure ? "TLS handshake with " : "cannot connect to ") +
                        handle->where + " failed: " + detail);
    }
    return StreamConnection(std::move(handle));
}

namespace {
// Small blocks keep the rate even and let other senders interleave.
constexpr size_t kSendBlock = 16 * 1024;
}  // namespace

Status StreamConnection::send_all(std::string_view data) {
    if (!handle_ || handle_->broken) return fail(ErrorCode::unavailable, "connection is closed");
    if (handle_->rate_limiter == nullptr) return send_block(data);
    const AllowRule* rule = handle_->rule ? &*handle_->rule : nullptr;
    while (!data.empty()) {
        const std::string_view block = data.substr(0, kSendBlock);
        handle_->rate_limiter->acquire(static_cast<int64_t>(block.size()), rule, nullptr);
        if (auto sent = send_block(block); !sent) return sent;
        data.remove_prefix(block.size());
    }
    return {};
}

Status StreamConnection::send_block(std::string_view data) {
    CURL* easy = handle_->easy.get();
    curl_socket_t sock = CURL_SOCKET_BAD;
    curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &sock);
    const auto deadline = std::chrono::steady_clock::now() + handle_->write_timeout;
    while (!data.empty()) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(easy, data.data(), data.size(), &sent);
        if (rc == CURLE_OK) {
            data.remove_prefix(sent);
            handle_->record.bytes_up += static_cast<int64_t>(sent);
            continue;
        }
        if (rc != CURLE_AGAIN) {
            handle_->broken = true;
            return fail(ErrorCode::unavailable,
                        "sending to " + handle_->where + " failed: " + curl_easy_strerror(rc));
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || sock == CURL_SOCKET_BAD) {
            handle_->broken = true;
            return fail(ErrorCode::unavailable, "sending to " + handle_->where + " timed out");
        }
        pollfd p{sock, POLLOUT, 0};
        ::poll(&p, 1, static_cast<int>(left.count()));
    }
    return {};
}

bool StreamConnection::peer_closed() {
    if (!handle_ || handle_->broken) return true;
    curl_socket_t sock = CURL_SOCKET_BAD;
    curl_easy_getinfo(handle_->easy.get(), CURLINFO_ACTIVESOCKET, &sock);
    if (sock == CURL_SOCKET_BAD) return true;
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if ((p.revents & (POLLHUP | POLLERR)) != 0) return true;
    // Readable: a syslog receiver never sends data, so this is EOF (or a TLS
    // close_notify); either way the stream is done.
    char buf[256];
    size_t n = 0;
    CURLcode rc = curl_easy_recv(handle_->easy.get(), buf, sizeof buf, &n);
    if (rc == CURLE_AGAIN) return false;
    return rc != CURLE_OK || n == 0;
}

}  // namespace sa::agent::egress
