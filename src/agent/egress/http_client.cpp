#include "agent/egress/http_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>

#include "agent/egress/connection_pinning.h"
#include "agent/egress/curl_global.h"
#include "common/util/time.h"

namespace sa::agent::egress {
namespace {

struct EasyFree {
    void operator()(CURL* p) const { curl_easy_cleanup(p); }
};
struct MultiFree {
    void operator()(CURLM* p) const { curl_multi_cleanup(p); }
};
struct UrlFree {
    void operator()(CURLU* p) const { curl_url_cleanup(p); }
};
struct CurlStringFree {
    void operator()(char* p) const { curl_free(p); }
};
using CurlString = std::unique_ptr<char, CurlStringFree>;

// Per-request state the libcurl callbacks write into.
struct Transfer {
    HttpResponse response;
    size_t max_body = 0;
    bool body_too_large = false;
    const std::atomic<bool>* abort = nullptr;
    CURL* easy = nullptr;
    // Read while the connection is attached (libcurl detaches it when the
    // transfer ends); the first response header proves the handshake.
    bool handshake_seen = false;
    detail::TlsInfo tls;
    // Rate-limited upload (read callback); unused otherwise.
    std::string_view upload;
    size_t upload_offset = 0;
    EgressRateLimiter* limiter = nullptr;
    const AllowRule* rule = nullptr;
};

// Small blocks keep the rate even and let other senders interleave.
constexpr size_t kUploadBlock = 16 * 1024;

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const size_t n =
        std::min({size * count, kUploadBlock, transfer->upload.size() - transfer->upload_offset});
    if (n == 0) return 0;
    // Blocks this thread (abort is checked at least every 100 ms), which is
    // what smoothing means here: libcurl simply sends more slowly.
    if (!transfer->limiter->acquire(static_cast<int64_t>(n), transfer->rule, transfer->abort)) {
        return CURL_READFUNC_ABORT;
    }
    std::memcpy(buffer, transfer->upload.data() + transfer->upload_offset, n);
    transfer->upload_offset += n;
    return n;
}

// libcurl rewinds when it resends a request on a new connection.
int on_seek(void* user, curl_off_t offset, int origin) {
    auto* transfer = static_cast<Transfer*>(user);
    if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > transfer->upload.size()) {
        return CURL_SEEKFUNC_CANTSEEK;
    }
    transfer->upload_offset = static_cast<size_t>(offset);
    return CURL_SEEKFUNC_OK;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const size_t n = size * count;
    if (transfer->response.body.size() + n > transfer->max_body) {
        transfer->body_too_large = true;
        return 0;  // makes libcurl fail the transfer with CURLE_WRITE_ERROR
    }
    transfer->response.body.append(data, n);
    return n;
}

std::string trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return std::string(s);
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
    auto* transfer = static_cast<Transfer*>(user);
    const size_t n = size * count;
    const std::string_view line(data, n);
    if (!transfer->handshake_seen) {
        transfer->handshake_seen = true;
        transfer->tls = detail::tls_info(transfer->easy);
    }
    if (line.rfind("HTTP/", 0) == 0) {
        // A new status line (e.g. after "100 Continue"): only the final
        // response's fields count.
        transfer->response.headers.clear();
        return n;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return n;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = trim(line.substr(colon + 1));
    auto [it, inserted] = transfer->response.headers.try_emplace(name, value);
    if (!inserted) it->second += ", " + value;
    return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* transfer = static_cast<Transfer*>(user);
    return transfer->abort != nullptr && transfer->abort->load() ? 1 : 0;
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

struct UrlParts {
    std::string url;  // full, normalised by libcurl
    std::string scheme;
    std::string host;
    int port = 0;
    std::string where() const { return host + ":" + std::to_string(port); }
};

std::optional<std::string> url_part(CURLU* url, CURLUPart part, unsigned flags = 0) {
    char* raw = nullptr;
    if (curl_url_get(url, part, &raw, flags) != CURLUE_OK || raw == nullptr) return std::nullopt;
    CurlString owned(raw);
    return std::string(owned.get());
}

std::optional<UrlParts> url_parts(CURLU* url) {
    UrlParts out;
    auto full = url_part(url, CURLUPART_URL);
    auto scheme = url_part(url, CURLUPART_SCHEME);
    auto host = url_part(url, CURLUPART_HOST);
    auto port = url_part(url, CURLUPART_PORT, CURLU_DEFAULT_PORT);
    if (!full || !scheme || !host) return std::nullopt;
    out.url = std::move(*full);
    out.scheme = lower(*scheme);
    out.host = std::move(*host);
    if (port) std::from_chars(port->data(), port->data() + port->size(), out.port);
    return out;
}

struct Redirect {
    UrlParts target;
    std::string from;  // "host:port" of the redirecting hop
    bool cross_origin = false;
};

bool is_redirect_status(long status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// The next hop when response is a redirect that rule lets HttpClient follow;
// nullopt when the response goes back to the caller as it is. The target's
// scheme is not checked here. Errors: invalid_argument for a Location that
// is not a URL.
Result<std::optional<Redirect>> redirect_target(const HttpResponse& response, const AllowRule* rule,
                                                const std::string& current_url) {
    if (rule == nullptr || rule->max_redirects <= 0 || !is_redirect_status(response.status)) {
        return std::nullopt;
    }
    const std::string* location = response.header("location");
    if (location == nullptr || location->empty()) return std::nullopt;
    std::unique_ptr<CURLU, UrlFree> url(curl_url());
    if (!url || curl_url_set(url.get(), CURLUPART_URL, current_url.c_str(), 0) != CURLUE_OK) {
        return fail(ErrorCode::internal, "cannot parse the current URL");
    }
    auto current = url_parts(url.get());
    if (!current) return fail(ErrorCode::internal, "cannot parse the current URL");
    Redirect redirect;
    redirect.from = current->where();
    // Resolved against the current URL, so relative Locations work.
    if (curl_url_set(url.get(), CURLUPART_URL, location->c_str(), CURLU_NON_SUPPORT_SCHEME) !=
        CURLUE_OK) {
        return fail(ErrorCode::invalid_argument,
                    "egress: redirect from " + redirect.from + " has an invalid Location");
    }
    auto target = url_parts(url.get());
    if (!target) {
        return fail(ErrorCode::invalid_argument,
                    "egress: redirect from " + redirect.from + " has an invalid Location");
    }
    redirect.cross_origin =
        lower(target->host) != lower(current->host) || target->port != current->port;
    redirect.target = std::move(*target);
    return redirect;
}

// Rewrites request for the next hop (RFC 9110 15.4).
void apply_redirect(HttpRequest& request, long status, const Redirect& redirect) {
    request.url = redirect.target.url;
    const bool get_or_head = request.method == "GET" || request.method == "HEAD";
    if ((status == 303 && request.method != "HEAD") ||
        ((status == 301 || status == 302) && !get_or_head)) {
        request.method = "GET";
        request.body = {};
        std::erase_if(request.headers,
                      [](const auto& field) { return lower(field.first).starts_with("content-"); });
    }
    if (redirect.cross_origin) {
        // Credentials are for the origin the caller named, never for
        // whoever it redirects to.
        request.authorization.reset();
        std::erase_if(request.headers, [](const auto& field) {
            const std::string name = lower(field.first);
            return name == "authorization" || name == "proxy-authorization" || name == "cookie";
        });
    }
}

// RFC 9110 token: the characters a header field name may have.
bool is_header_name(std::string_view name) {
    static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               kSpecials.find(c) != std::string_view::npos;
    });
}

// CURLOPT_PREREQFUNCTION: the connection is up, the request not yet sent.
int wipe_proxy_headers(void* list, char*, char*, int, int) {
    static_cast<detail::CurlList*>(list)->wipe_lines();
    return CURL_PREREQFUNC_OK;
}

bool is_tls_error(CURLcode code) {
    switch (code) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_USE_SSL_FAILED:
            return true;
        default:
            return false;
    }
}

}  // namespace

struct HttpClient::Handles {
    std::unique_ptr<CURL, EasyFree> easy;
    // The transfer runs on a multi handle so the abort flag can be checked
    // every 100 ms without depending on libcurl's progress-callback pace.
    std::unique_ptr<CURLM, MultiFree> multi;
    // Addresses of the connections libcurl may still hold per "host:port":
    // a pooled connection is reused without a new socket, so when one of
    // them is no longer among the checked addresses the pool is dropped.
    std::map<std::string, std::vector<IpAddress>> pooled;
};

Result<HttpClient> HttpClient::create(Options options) {
    if (auto init = ensure_curl_global_init(); !init) return std::unexpected(init.error());
    auto handles = std::make_unique<Handles>();
    handles->easy.reset(curl_easy_init());
    handles->multi.reset(curl_multi_init());
    if (!handles->easy || !handles->multi) {
        return fail(ErrorCode::internal, "libcurl could not allocate a handle");
    }
    return HttpClient(std::move(options), std::move(handles));
}

HttpClient::HttpClient(Options options, std::unique_ptr<Handles> handles)
    : options_(std::move(options)), handles_(std::move(handles)) {}
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;
HttpClient::~HttpClient() = default;

Result<HttpResponse> HttpClient::send(const HttpRequest& request) {
    // request.timeout covers the whole chain (plus the time a rate limit
    // adds to the bodies sent).
    auto deadline = std::chrono::steady_clock::now() + request.timeout;
    HttpRequest next_request = request;
    std::string from;  // "host:port" of the hop that redirected here
    int followed = 0;
    for (;;) {
        Hop hop;
        auto result = send_hop(next_request, from, hop);
        if (!result) return result;
        deadline += hop.extra_timeout;
        const AllowRule* rule = hop.rule;
        auto next = redirect_target(*result, rule, next_request.url);
        if (!next) return std::unexpected(next.error());
        if (!*next) return result;
        if (followed >= rule->max_redirects) {
            return fail(ErrorCode::unavailable, "egress: too many redirects: " + (*next)->from +
                                                    " redirected again after " +
                                                    std::to_string(followed) + " (max_redirects " +
                                                    std::to_string(rule->max_redirects) + " of " +
                                                    rule->origin + ")");
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return fail(ErrorCode::unavailable, "request to " + (*next)->from +
                                                    " timed out after " +
                                                    std::to_string(followed + 1) + " redirect(s)");
        }
        if ((*next)->target.scheme != "https") {
            // Refused like a denied destination: with its own record.
            ConnectionRecord record;
            record.unix_ms = util::unix_millis();
            record.job_id = request.job_id;
            record.host = (*next)->target.host;
            record.port = (*next)->target.port;
            record.decision = "denied";
            record.rule = "only https is allowed";
            auto error =
                fail(ErrorCode::permission_denied,
                     "egress: redirect from " + (*next)->from + " to " + (*next)->target.scheme +
                         "://" + (*next)->target.where() + " refused: only https is allowed");
            record.error = error.error().message;
            if (options_.on_connection) options_.on_connection(record);
            return error;
        }
        next_request.timeout = left;
        apply_redirect(next_request, result->status, **next);
        from = (*next)->from;
        ++followed;
    }
}

Result<HttpResponse> HttpClient::send_hop(const HttpRequest& request,
                                          const std::string& redirected_from, Hop& hop) {
    ConnectionRecord record;
    record.unix_ms = util::unix_millis();
    record.job_id = request.job_id;
    record.decision = "allowed";
    const auto start = std::chrono::steady_clock::now();
    auto result = send_checked(request, record, hop);
    record.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    if (!result && !redirected_from.empty() && record.decision == "denied") {
        // Name the hop that led here: "egress: redirect from A to B refused:
        // B not in egress allowlist".
        std::string reason = result.error().message;
        if (reason.rfind("egress: ", 0) == 0) reason.erase(0, 8);
        const std::string target = record.host + ":" + std::to_string(record.port);
        result = fail(result.error().code, "egress: redirect from " + redirected_from + " to " +
                                               target + " refused: " + reason);
    }
    if (!result) record.error = result.error().message;
    if (options_.on_connection) options_.on_connection(record);
    return result;
}

Result<HttpResponse> HttpClient::send_checked(const HttpRequest& request, ConnectionRecord& record,
                                              Hop& hop) {
    hop = Hop{};
    // Parse the URL first so policy errors never touch the network.
    std::unique_ptr<CURLU, UrlFree> url(curl_url());
    if (!url || curl_url_set(url.get(), CURLUPART_URL, request.url.c_str(), 0) != CURLUE_OK) {
        return fail(ErrorCode::invalid_argument, "malformed URL");
    }
    char* raw = nullptr;
    CurlString scheme(curl_url_get(url.get(), CURLUPART_SCHEME, &raw, 0) == CURLUE_OK ? raw
                                                                                      : nullptr);
    raw = nullptr;
    CurlString host_part(curl_url_get(url.get(), CURLUPART_HOST, &raw, 0) == CURLUE_OK ? raw
                                                                                       : nullptr);
    std::string scheme_text = scheme ? scheme.get() : "";
    std::transform(scheme_text.begin(), scheme_text.end(), scheme_text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    // Plain http only with a policy, and only to a rule that allows it
    // (checked below, once the rule is known).
    const bool plaintext = scheme_text == "http" && options_.policy != nullptr;
    if (scheme_text != "https" && !plaintext) {
        return fail(ErrorCode::permission_denied,
                    "egress policy: only https:// URLs are allowed (got " + scheme_text + "://)");
    }
    const std::string host = host_part ? host_part.get() : "";
    raw = nullptr;
    CurlString port_part(
        curl_url_get(url.get(), CURLUPART_PORT, &raw, CURLU_DEFAULT_PORT) == CURLUE_OK ? raw
                                                                                       : nullptr);
    int port = 0;
    if (port_part) {
        const std::string_view text(port_part.get());
        std::from_chars(text.data(), text.data() + text.size(), port);
    }
    record.host = host;
    record.port = port;

    // Plain http goes only to this host or its link: never through a proxy.
    const ProxyConfig* proxy =
        options_.proxy != nullptr && !plaintext && !bypasses_proxy(*options_.proxy, host, port)
            ? options_.proxy
            : nullptr;
    if (proxy != nullptr) record.via_proxy = proxy->where();

    std::optional<Destination> destination;
    std::optional<Destination> proxy_destination;
    // What the socket connects to: the server, or the proxy (keyed apart,
    // since libcurl pools proxied connections by proxy and server).
    std::string pool_key;
    if (options_.policy != nullptr) {
        auto checked = proxy != nullptr ? options_.policy->check_via_proxy(host, port)
                                        : options_.policy->check(host, port);
        if (!checked) {
            record.decision = "denied";
            record.rule = checked.error().message;
            return std::unexpected(checked.error());
        }
        destination = std::move(*checked);
        if (plaintext) {
            // The rule must say so, and (defence in depth: the config check
            // already confines such rules) every address must be local.
            const bool local =
                std::all_of(destination->addresses.begin(), destination->addresses.end(),
                            [](const IpAddress& a) { return is_host_or_link_local(a.unmapped()); });
            if (!destination->rule->plaintext_http || !local) {
                record.decision = "denied";
                record.rule = "only https is allowed";
                return fail(ErrorCode::permission_denied,
                            "egress: http://" + host + ":" + std::to_string(port) +
                                " refused: only https is allowed (" + destination->rule->origin +
                                (local ? " does not set plaintext_http)"
                                       : " resolves beyond loopback/link-local)"));
            }
        }
        hop.rule = destination->rule;
        record.rule = destination->rule->origin;
        if (!destination->rule->spki_pins.empty()) record.pin = "unchecked";
        pool_key = destination->host + ":" + std::to_string(port);
        if (proxy != nullptr) {
            // The proxy must be an allowed destination itself; the socket is
            // pinned to its checked addresses.
            auto proxy_checked = options_.policy->check(proxy->host, proxy->port);
            if (!proxy_checked) {
                record.decision = "denied";
                record.rule = "proxy: " + proxy_checked.error().message;
                return std::unexpected(proxy_checked.error());
            }
            proxy_destination = std::move(*proxy_checked);
            pool_key += " via " + proxy->where();
        }
        const std::vector<IpAddress>& connect_to =
            proxy_destination ? proxy_destination->addresses : destination->addresses;
        // Drop pooled connections to addresses this check did not allow.
        auto& pooled = handles_->pooled[pool_key];
        const bool stale = std::any_of(pooled.begin(), pooled.end(), [&](const IpAddress& a) {
            return std::find(connect_to.begin(), connect_to.end(), a) == connect_to.end();
        });
        if (stale) {
            handles_->multi.reset(curl_multi_init());
            handles_->pooled.clear();
            if (!handles_->multi) {
                return fail(ErrorCode::internal, "libcurl could not allocate a handle");
            }
        }
    }

    CURL* easy = handles_->easy.get();
    // Reset options from the previous request; live connections are kept.
    curl_easy_reset(easy);

    Transfer transfer;
    transfer.max_body = options_.max_response_bytes;
    transfer.abort = options_.abort;
    transfer.easy = easy;
    detail::SocketGuard guard;
    detail::CurlList resolve_list;
    detail::CurlList proxy_headers;  // wiped when this request ends
    char error_buffer[CURL_ERROR_SIZE] = {};

    // A line break in a field would start a new header (or the body).
    const auto has_line_break = [](std::string_view text) {
        return text.find_first_of("\r\n") != std::string_view::npos;
    };
    for (const auto& [name, value] : request.headers) {
        if (has_line_break(name) || has_line_break(value)) {
            return fail(ErrorCode::invalid_argument, "header " + name + " contains a line break");
        }
    }
    if (request.authorization && request.authorization->scheme == Authorization::Scheme::header &&
        !is_header_name(request.authorization->header_name)) {
        return fail(ErrorCode::invalid_argument, "credential header name \"" +
                                                     request.authorization->header_name +
                                                     "\" is not a valid header name");
    }
    if (request.authorization && request.authorization->credentials != nullptr &&
        has_line_break(request.authorization->credentials->reveal())) {
        return fail(ErrorCode::invalid_argument, "authorization credentials contain a line break");
    }

    detail::CurlList headers;
    bool ok = true;
    for (const auto& [name, value] : request.headers) {
        ok = ok && headers.append((name + ": " + value).c_str());
    }
    // libcurl would otherwise wait for "100 Continue" before large bodies.
    ok = ok && headers.append("Expect:");
    if (request.authorization && request.authorization->credentials != nullptr) {
        const auto& auth = *request.authorization;
        const std::string prefix =
            auth.scheme == Authorization::Scheme::basic    ? "Authorization: Basic "
            : auth.scheme == Authorization::Scheme::bearer ? "Authorization: Bearer "
                                                           : auth.header_name + ": ";
        // Reserved once (no reallocation leaves copies behind) and wiped as
        // soon as libcurl has its own copy; the CurlList wipes that one.
        std::string line;
        line.reserve(prefix.size() + auth.credentials->size() + 1);
        line.append(prefix);
        line.append(auth.credentials->reveal());
        ok = ok && headers.append(line.c_str());
        secrets::wipe(line);
    }
    if (!ok) return fail(ErrorCode::internal, "libcurl could not allocate request headers");

    curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
    // --- egress policy (see the SECURITY NOTE in the header) ---
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, plaintext ? "http" : "https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (options_.ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca_file->c_str());
    curl_easy_setopt(easy, CURLOPT_PROXY, "");  // ignore *_proxy environment variables
    if (destination) {
        auto applied = detail::apply_destination(easy, *options_.policy, *destination,
                                                 options_.ca_file, guard, resolve_list);
        if (!applied) return std::unexpected(applied.error());
    }
    if (proxy != nullptr) {
        auto applied =
            detail::apply_proxy(easy, *proxy, proxy_destination ? &*proxy_destination : nullptr,
                                guard, resolve_list, proxy_headers);
        if (!applied) return std::unexpected(applied.error());
        // The header callback then only sees the server's response.
        curl_easy_setopt(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
        // Once the connection (and so the tunnel) stands, the proxy
        // credentials are not needed any more: wipe them instead of keeping
        // them through a long poll. (A fresh CONNECT later in this transfer
        // would then get a 407 and fail the request; callers retry.)
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, &wipe_proxy_headers);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, &proxy_headers);
    }
    // --- transfer ---
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    const AllowRule* limit_rule = destination ? destination->rule : nullptr;
    const bool limited = options_.rate_limiter != nullptr && options_.rate_limiter->limited() &&
                         !request.body.empty() && request.method != "GET";
    auto timeout = request.timeout;
    if (limited) {
        // A throttled upload must not run into the timeout meant for the
        // network: add the time the body needs at the lowest rate.
        if (const int64_t rate = options_.rate_limiter->rate_for(limit_rule); rate > 0) {
            hop.extra_timeout = std::chrono::milliseconds(
                static_cast<int64_t>(request.body.size()) * 1000 / rate + 1);
            timeout += hop.extra_timeout;
        }
    }
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(easy, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &transfer);
    if (request.method == "GET") {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(request.body.size()));
        if (limited) {
            // The body goes through on_read, block by block, as the limiter
            // grants it.
            transfer.upload = request.body;
            transfer.limiter = options_.rate_limiter;
            transfer.rule = limit_rule;
            curl_easy_setopt(easy, CURLOPT_POST, 1L);
            curl_easy_setopt(easy, CURLOPT_READFUNCTION, &on_read);
            curl_easy_setopt(easy, CURLOPT_READDATA, &transfer);
            curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, &on_seek);
            curl_easy_setopt(easy, CURLOPT_SEEKDATA, &transfer);
        } else {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
        }
    }

    CURLM* multi = handles_->multi.get();
    if (curl_multi_add_handle(multi, easy) != CURLM_OK) {
        return fail(ErrorCode::internal, "libcurl could not start the transfer");
    }
    CURLcode result = CURLE_OK;
    bool done = false;
    bool aborted = false;
    while (!done) {
        int running = 0;
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            result = CURLE_FAILED_INIT;
            break;
        }
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
                result = msg->data.result;
                done = true;
            }
        }
        if (done) break;
        if (options_.abort != nullptr && options_.abort->load()) {
            aborted = true;
            break;
        }
        curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
    curl_multi_remove_handle(multi, easy);
    if (proxy != nullptr) detail::clear_proxy_headers(easy);

    char* primary_ip = nullptr;
    if (curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &primary_ip) == CURLE_OK &&
        primary_ip != nullptr) {
        record.address = primary_ip;
    }
    if (record.address.empty()) record.address = guard.last_address;
    long request_size = 0;
    long header_size = 0;
    curl_off_t body_down = 0;
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
    curl_easy_getinfo(easy, CURLINFO_HEADER_SIZE, &header_size);
    curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &body_down);
    record.bytes_up = request_size;
    if (transfer.limiter != nullptr) {
        // A body sent through on_read is not part of the request size.
        curl_off_t body_up = 0;
        curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &body_up);
        record.bytes_up += body_up;
    }
    record.bytes_down = header_size + body_down;
    record.tls_version = transfer.tls.version;
    record.cipher = transfer.tls.cipher;
    if (destination) {
        record.pin = detail::pin_result(&*destination, result,
                                        transfer.handshake_seen || result == CURLE_OK);
        if (auto ip = IpAddress::parse(record.address)) {
            auto& pooled = handles_->pooled[pool_key];
            if (std::find(pooled.begin(), pooled.end(), *ip) == pooled.end()) pooled.push_back(*ip);
        }
    }
    if (guard.refused_address && result != CURLE_OK) {
        record.decision = "denied";
        record.rule = "address " + *guard.refused_address + " was not checked by egress policy";
        return fail(ErrorCode::permission_denied, "egress: " + host + ": refused to connect to " +
                                                      *guard.refused_address +
                                                      ", which the egress policy did not check");
    }
    if (destination && result == CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
        return fail(ErrorCode::integrity, detail::pin_mismatch_message(*destination));
    }

    if (aborted || result == CURLE_ABORTED_BY_CALLBACK) {
        return fail(ErrorCode::unavailable, "request to " + host + " aborted");
    }
    if (result != CURLE_OK) {
        const std::string detail =
            error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(result);
        if (result == CURLE_WRITE_ERROR && transfer.body_too_large) {
            return fail(ErrorCode::invalid_argument,
                        "response from " + host + " exceeds " +
                            std::to_string(options_.max_response_bytes) + " bytes");
        }
        if (proxy != nullptr) {
            if (auto error = detail::proxy_error(easy, result, *proxy, host, port, detail)) {
                return std::unexpected(std::move(*error));
            }
        }
        if (result == CURLE_UNSUPPORTED_PROTOCOL) {
            return fail(ErrorCode::permission_denied, "egress policy: only https is allowed");
        }
        if (is_tls_error(result)) {
            return fail(ErrorCode::unavailable,
                        "TLS handshake with " + host + " failed: " + detail);
        }
        if (result == CURLE_OPERATION_TIMEDOUT) {
            return fail(ErrorCode::unavailable, "request to " + host + " timed out: " + detail);
        }
        return fail(ErrorCode::unavailable, "cannot reach " + host + ": " + detail);
    }
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    transfer.response.status = status;
    return std::move(transfer.response);
}

}  // namespace sa::agent::egress
