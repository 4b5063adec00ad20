#include "agent/egress/stream_client.h"

#include <curl/curl.h>
#include <poll.h>

#include <mutex>

#include "agent/egress/curl_global.h"

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
    std::unique_ptr<CURL, Free> easy;
    std::string where;  // "host:port", for messages
    std::chrono::milliseconds write_timeout{};
    bool broken = false;
};

StreamConnection::StreamConnection(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}
StreamConnection::StreamConnection(StreamConnection&&) noexcept = default;
StreamConnection& StreamConnection::operator=(StreamConnection&&) noexcept = default;
StreamConnection::~StreamConnection() = default;

Result<StreamConnection> StreamConnection::open(const Options& options) {
    if (!valid_host(options.host)) {
        return fail(ErrorCode::invalid_argument, "invalid host name \"" + options.host + "\"");
    }
    if (options.port <= 0 || options.port > 65535) {
        return fail(ErrorCode::invalid_argument, "invalid port " + std::to_string(options.port));
    }
    ensure_curl_global_init();
    auto handle = std::make_unique<Handle>();
    handle->easy.reset(curl_easy_init());
    if (!handle->easy) return fail(ErrorCode::internal, "libcurl could not allocate a handle");
    handle->where = options.host + ":" + std::to_string(options.port);
    handle->write_timeout = options.write_timeout;
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
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
    CURLcode rc = curl_easy_perform(easy);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
    if (rc != CURLE_OK) {
        std::string detail = error_buffer[0] != 0 ? error_buffer : curl_easy_strerror(rc);
        bool tls_failure = rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
                           rc == CURLE_SSL_CACERT_BADFILE;
        return fail(ErrorCode::unavailable,
                    std::string(tls_failure ? "TLS handshake with " : "cannot connect to ") +
                        handle->where + " failed: " + detail);
    }
    return StreamConnection(std::move(handle));
}

Status StreamConnection::send_all(std::string_view data) {
    if (!handle_ || handle_->broken) return fail(ErrorCode::unavailable, "connection is closed");
    CURL* easy = handle_->easy.get();
    curl_socket_t sock = CURL_SOCKET_BAD;
    curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &sock);
    const auto deadline = std::chrono::steady_clock::now() + handle_->write_timeout;
    while (!data.empty()) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(easy, data.data(), data.size(), &sent);
        if (rc == CURLE_OK) {
            data.remove_prefix(sent);
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
