#pragma once
// Internal to src/agent/egress: applies an EgressPolicy decision to a
// libcurl easy handle, shared by HttpClient and StreamConnection so both
// enforce the same rules.
#include <curl/curl.h>
#include <openssl/crypto.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/egress/policy.h"
#include "agent/egress/proxy.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace sa::agent::egress::detail {

// Owns a curl_slist (request headers, resolve entries). Every line is wiped
// before the list is freed, because a header line may carry the
// Authorization credentials.
class CurlList final {
  public:
    CurlList() = default;
    ~CurlList() {
        for (curl_slist* node = list_; node != nullptr; node = node->next) {
            OPENSSL_cleanse(node->data, std::strlen(node->data));
        }
        curl_slist_free_all(list_);
    }
    CurlList(const CurlList&) = delete;
    CurlList& operator=(const CurlList&) = delete;
    // libcurl copies the line; false when it cannot allocate.
    bool append(const char* line) {
        curl_slist* next = curl_slist_append(list_, line);
        if (next == nullptr) return false;
        list_ = next;
        return true;
    }
    curl_slist* get() const { return list_; }
    // Wipes every line in place, leaving a harmless "X-Wiped:" header where
    // there was one (the list stays valid for libcurl). For credentials
    // needed only up to a point of the transfer, e.g. a proxy's
    // Proxy-Authorization once the tunnel stands.
    void wipe_lines() {
        static constexpr char kWiped[] = "X-Wiped:";
        for (curl_slist* node = list_; node != nullptr; node = node->next) {
            const size_t length = std::strlen(node->data);
            OPENSSL_cleanse(node->data, length);
            if (length >= sizeof kWiped - 1) std::memcpy(node->data, kWiped, sizeof kWiped);
        }
    }

  private:
    curl_slist* list_ = nullptr;
};

// What the open-socket callback may connect to; must outlive the transfer.
struct SocketGuard {
    std::vector<IpAddress> allowed;
    // Set when libcurl tried an address that was not checked (a bug or a
    // cached resolution); the connection then fails before any packet.
    std::optional<std::string> refused_address;
    // The last address a socket was opened for: the address a failed
    // connection attempt used (libcurl reports none then).
    std::string last_address;
};

// Pins the handle to destination: CURLOPT_RESOLVE to the checked addresses
// (a fresh entry per call, replacing whatever libcurl cached), an
// open-socket callback refusing any other address, the TLS floor, the
// rule's CA file (else client_ca) and SPKI pins. Host name verification
// stays on. Errors: internal when libcurl cannot allocate.
Status apply_destination(CURL* easy, const EgressPolicy& policy, const Destination& destination,
                         const std::optional<std::string>& client_ca, SocketGuard& guard,
                         CurlList& resolve_list);

// Routes the handle through proxy: CURLOPT_PROXY "http://host:port",
// always a CONNECT tunnel (TLS to the server stays end to end). When a
// username is set, a "Proxy-Authorization: Basic" line with the username
// and the secret password goes into proxy_headers and is set as
// CURLOPT_PROXYHEADER with CURLHEADER_SEPARATE, so it is sent only in the
// CONNECT request, never to the server, and libcurl keeps no copy of the
// credentials (proxy_headers must outlive the transfer; it wipes its lines;
// temporaries are wiped). With proxy_destination (the policy's check() of
// the proxy itself) the socket is pinned to the proxy's checked addresses
// instead of the server's. Call after apply_destination.
// Errors: unavailable for an https:// proxy (not supported), internal.
Status apply_proxy(CURL* easy, const ProxyConfig& proxy, const Destination* proxy_destination,
                   SocketGuard& guard, CurlList& resolve_list, CurlList& proxy_headers);
// Drops the handle's pointer to the proxy_headers list before the list goes.
void clear_proxy_headers(CURL* easy);

// Maps a failed transfer through proxy to the proxy's error (407 → the
// credentials were refused; other CONNECT status → CONNECT refused; no
// CONNECT answer and a connection-level failure → unavailable naming the
// proxy); nullopt when the failure is not the proxy's (e.g. TLS to the server).
std::optional<Error> proxy_error(CURL* easy, CURLcode result, const ProxyConfig& proxy,
                                 std::string_view host, int port, const std::string& detail);

struct TlsInfo {
    std::string version;  // "TLSv1.3"
    std::string cipher;
    // Optional: called with each connection's SSL_CTX before the handshake
    // (a client certificate for mutual TLS). An error aborts the handshake
    // (CURLE_SSL_CERTPROBLEM) and is kept in configure_error.
    std::function<Status(ssl_ctx_st*)> configure;
    std::optional<Error> configure_error;
};
// From the handle's live connection; empty when there is none (or no TLS).
TlsInfo tls_info(CURL* easy);
// For connect-only handles, whose connection libcurl does not expose
// through CURLINFO_TLS_SSL_PTR: fills *out when a handshake completes.
// out must outlive the handle's connections.
void capture_tls_info(CURL* easy, TlsInfo* out);

// "egress: HOST: certificate public key does not match any pinned key
// (ORIGIN pins)".
std::string pin_mismatch_message(const Destination& destination);

// Sets the ConnectionRecord's pin field from the transfer's outcome.
std::string pin_result(const Destination* destination, CURLcode result, bool handshake_done);

}  // namespace sa::agent::egress::detail
