#include "agent/egress/connection_pinning.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace sa::agent::egress::detail {
namespace {

std::optional<IpAddress> from_sockaddr(const curl_sockaddr& address) {
    IpAddress out;
    if (address.family == AF_INET && address.addrlen >= sizeof(sockaddr_in)) {
        sockaddr_in sin{};
        std::memcpy(&sin, &address.addr, sizeof sin);
        out.family = AF_INET;
        std::memcpy(out.bytes.data(), &sin.sin_addr, 4);
        return out;
    }
    if (address.family == AF_INET6 && address.addrlen >= sizeof(sockaddr_in6)) {
        sockaddr_in6 sin6{};
        std::memcpy(&sin6, &address.addr, sizeof sin6);
        out.family = AF_INET6;
        std::memcpy(out.bytes.data(), &sin6.sin6_addr, 16);
        return out;
    }
    return std::nullopt;
}

// Defence in depth behind CURLOPT_RESOLVE: the socket is only created for
// an address the policy checked.
curl_socket_t open_socket(void* user, curlsocktype, curl_sockaddr* address) {
    auto* guard = static_cast<SocketGuard*>(user);
    const auto ip = from_sockaddr(*address);
    if (!ip ||
        std::find(guard->allowed.begin(), guard->allowed.end(), *ip) == guard->allowed.end()) {
        guard->refused_address = ip ? ip->text() : std::string("(unknown family)");
        return CURL_SOCKET_BAD;
    }
    guard->last_address = ip->text();
    return ::socket(address->family, address->socktype, address->protocol);
}

int tls_info_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

void on_tls_info(const SSL* ssl, int where, int) {
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0) return;
    auto* out = static_cast<TlsInfo*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_info_index()));
    if (out == nullptr) return;
    if (const char* v = SSL_get_version(ssl)) out->version = v;
    if (const char* c = SSL_get_cipher_name(ssl)) out->cipher = c;
}

CURLcode on_ssl_ctx(CURL*, void* ctx, void* user) {
    // libcurl builds one SSL_CTX per connection, so the pointer is per connection.
    auto* ssl_ctx = static_cast<SSL_CTX*>(ctx);
    auto* info = static_cast<TlsInfo*>(user);
    if (info->configure) {
        if (auto configured = info->configure(ssl_ctx); !configured) {
            info->configure_error = configured.error();
            return CURLE_SSL_CERTPROBLEM;
        }
    }
    if (tls_info_index() < 0 || SSL_CTX_set_ex_data(ssl_ctx, tls_info_index(), user) != 1) {
        return CURLE_OK;  // the record just lacks TLS details
    }
    SSL_CTX_set_info_callback(ssl_ctx, &on_tls_info);
    return CURLE_OK;
}

// Pins libcurl to exactly the checked addresses of host:port: a
// CURLOPT_RESOLVE entry for a name (IP literals are never resolved by
// libcurl; a destination behind a proxy has no addresses, the proxy resolves
// it) and the open-socket guard that refuses every other address.
Status pin_to_addresses(CURL* easy, const std::string& host, int port,
                        const std::vector<IpAddress>& addresses, SocketGuard& guard,
                        CurlList& resolve_list) {
    guard.allowed = addresses;
    guard.refused_address.reset();
    if (!IpAddress::parse(host) && !addresses.empty()) {
        std::string entry = host + ":" + std::to_string(port) + ":";
        for (size_t i = 0; i < addresses.size(); ++i) {
            const IpAddress& a = addresses[i];
            if (i > 0) entry += ",";
            entry += a.family == AF_INET6 ? "[" + a.text() + "]" : a.text();
        }
        if (!resolve_list.append(entry.c_str())) {
            return fail(ErrorCode::internal, "libcurl could not allocate the resolve list");
        }
        curl_easy_setopt(easy, CURLOPT_RESOLVE, resolve_list.get());
    }
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, &guard);
    return {};
}

}  // namespace

void capture_tls_info(CURL* easy, TlsInfo* out) {
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, &on_ssl_ctx);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, out);
}

Status apply_destination(CURL* easy, const EgressPolicy& policy, const Destination& destination,
                         const std::optional<std::string>& client_ca, SocketGuard& guard,
                         CurlList& resolve_list) {
    if (auto pinned = pin_to_addresses(easy, destination.host, destination.port,
                                       destination.addresses, guard, resolve_list);
        !pinned) {
        return pinned;
    }
    curl_easy_setopt(easy, CURLOPT_SSLVERSION,
                     static_cast<long>(policy.min_tls() == TlsMin::v1_3 ? CURL_SSLVERSION_TLSv1_3
                                                                        : CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    const AllowRule& rule = *destination.rule;
    if (rule.ca_file) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, rule.ca_file->c_str());
    } else if (client_ca) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, client_ca->c_str());
    }
    if (!rule.spki_pins.empty()) {
        std::string pins;
        for (const std::string& raw : rule.spki_pins) {
            if (!pins.empty()) pins += ";";
            pins += format_spki_pin(raw);
        }
        curl_easy_setopt(easy, CURLOPT_PINNEDPUBLICKEY, pins.c_str());  // libcurl copies it
    }
    return {};
}

Status apply_proxy(CURL* easy, const ProxyConfig& proxy, const Destination* proxy_destination,
                   SocketGuard& guard, CurlList& resolve_list, CurlList& proxy_headers) {
    if (proxy.tls) {
        return fail(ErrorCode::unavailable, "egress: proxy " + proxy.where() +
                                                ": https:// proxies are not supported; use "
                                                "http:// (TLS to the server stays end to end)");
    }
    if (proxy_destination != nullptr) {
        if (auto pinned = pin_to_addresses(easy, proxy.host, proxy.port,
                                           proxy_destination->addresses, guard, resolve_list);
            !pinned) {
            return pinned;
        }
    }
    const std::string url = "http://" + proxy.where();
    curl_easy_setopt(easy, CURLOPT_PROXY, url.c_str());  // libcurl copies strings
    curl_easy_setopt(easy, CURLOPT_PROXYTYPE, static_cast<long>(CURLPROXY_HTTP));
    curl_easy_setopt(easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, nullptr);  // NO_PROXY is decided by the caller
    // CURLOPT_PROXYHEADER lines go only to the proxy (the CONNECT request),
    // CURLOPT_HTTPHEADER lines only to the server through the tunnel.
    curl_easy_setopt(easy, CURLOPT_HEADEROPT, static_cast<long>(CURLHEADER_SEPARATE));
    if (!proxy.username.empty()) {
        // Not CURLOPT_PROXYUSERNAME/PROXYPASSWORD: libcurl would keep the
        // password in the handle and in every pooled proxy connection for
        // as long as they live. The header line lives in proxy_headers (our
        // memory, wiped when the request ends) and libcurl only copies it
        // into request buffers its wiping allocator clears on release.
        //
        // Connection reuse stays correct: libcurl matches a pooled tunnel
        // by proxy host and port (and the server), not by these headers,
        // and all requests of one client use the same proxy and the same
        // credentials, so a reused tunnel is one these credentials opened.
        const std::string_view password =
            proxy.password != nullptr ? proxy.password->reveal() : std::string_view();
        // Every buffer is reserved once (no reallocation leaves copies
        // behind) and wiped as soon as libcurl has its own copy.
        std::string credentials;
        credentials.reserve(proxy.username.size() + 1 + password.size());
        credentials.append(proxy.username).append(":").append(password);
        static constexpr std::string_view kPrefix = "Proxy-Authorization: Basic ";
        const size_t encoded = 4 * ((credentials.size() + 2) / 3);
        std::string line;
        line.resize(kPrefix.size() + encoded + 1);  // EVP_EncodeBlock writes a NUL
        std::memcpy(line.data(), kPrefix.data(), kPrefix.size());
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(line.data() + kPrefix.size()),
                        reinterpret_cast<const unsigned char*>(credentials.data()),
                        static_cast<int>(credentials.size()));
        const bool appended = proxy_headers.append(line.c_str());
        secrets::wipe(credentials);
        secrets::wipe(line);
        if (!appended) {
            return fail(ErrorCode::internal, "libcurl could not allocate the proxy headers");
        }
        curl_easy_setopt(easy, CURLOPT_PROXYHEADER, proxy_headers.get());
    }
    return {};
}

void clear_proxy_headers(CURL* easy) {
    curl_easy_setopt(easy, CURLOPT_PROXYHEADER, nullptr);
}

std::optional<Error> proxy_error(CURL* easy, CURLcode result, const ProxyConfig& proxy,
                                 std::string_view host, int port, const std::string& detail) {
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_HTTP_CONNECTCODE, &code);
    if (code == 407) {
        return Error{ErrorCode::permission_denied,
                     "egress: proxy " + proxy.where() + " refused the credentials (HTTP 407)"};
    }
    if (code != 0 && (code < 200 || code > 299)) {
        const bool v6 = host.find(':') != std::string_view::npos;
        return Error{ErrorCode::permission_denied,
                     "egress: proxy " + proxy.where() + " refused CONNECT to " +
                         (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" +
                         std::to_string(port) + " (HTTP " + std::to_string(code) + ")"};
    }
    if (code == 0 &&
        (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_PROXY ||
         result == CURLE_OPERATION_TIMEDOUT || result == CURLE_RECV_ERROR ||
         result == CURLE_SEND_ERROR || result == CURLE_PROXY || result == CURLE_GOT_NOTHING)) {
        return Error{ErrorCode::unavailable,
                     "egress: proxy " + proxy.where() + " unreachable: " + detail};
    }
    return std::nullopt;
}

TlsInfo tls_info(CURL* easy) {
    TlsInfo out;
    curl_tlssessioninfo* info = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || info == nullptr ||
        info->backend != CURLSSLBACKEND_OPENSSL || info->internals == nullptr) {
        return out;
    }
    auto* ssl = static_cast<SSL*>(info->internals);
    if (SSL_is_init_finished(ssl) != 1) return out;
    if (const char* v = SSL_get_version(ssl)) out.version = v;
    if (const char* c = SSL_get_cipher_name(ssl)) out.cipher = c;
    return out;
}

std::string pin_mismatch_message(const Destination& destination) {
    return "egress: " + destination.host +
           ": certificate public key does not match any pinned key (" + destination.rule->origin +
           " pins)";
}

std::string pin_result(const Destination* destination, CURLcode result, bool handshake_done) {
    if (destination == nullptr || destination->rule == nullptr ||
        destination->rule->spki_pins.empty()) {
        return "none";
    }
    if (result == CURLE_SSL_PINNEDPUBKEYNOTMATCH) return "mismatch";
    return handshake_done ? "ok" : "unchecked";
}

}  // namespace sa::agent::egress::detail
