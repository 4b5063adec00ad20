#include "agent/egress/proxy.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include "agent/egress/policy.h"

namespace sa::agent::egress {
namespace {

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::optional<int> parse_port(std::string_view text) {
    int port = 0;
    if (text.empty() || text.size() > 5) return std::nullopt;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc() || end != text.data() + text.size() || port <= 0 || port > 65535) {
        return std::nullopt;
    }
    return port;
}

// Splits "host", "host:port", "[v6]", "[v6]:port", bare "v6"; port 0 when absent.
std::optional<std::pair<std::string, int>> split_host_port(std::string_view text) {
    if (text.starts_with('[')) {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        std::string host(text.substr(1, close - 1));
        std::string_view rest = text.substr(close + 1);
        if (rest.empty()) return std::pair{host, 0};
        if (!rest.starts_with(':')) return std::nullopt;
        auto port = parse_port(rest.substr(1));
        if (!port) return std::nullopt;
        return std::pair{host, *port};
    }
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) return std::pair{std::string(text), 0};
    if (text.find(':', colon + 1) != std::string_view::npos) {
        return std::pair{std::string(text), 0};  // a bare IPv6 literal
    }
    auto port = parse_port(text.substr(colon + 1));
    if (!port) return std::nullopt;
    return std::pair{std::string(text.substr(0, colon)), *port};
}

bool valid_host_name(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '-' || c == '_';
    });
}

const char* env(const char* upper, const char* lower_name) {
    const char* value = std::getenv(upper);
    if (value == nullptr || *value == '\0') value = std::getenv(lower_name);
    if (value == nullptr || *value == '\0') return nullptr;
    return value;
}

}  // namespace

std::string ProxyConfig::where() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<ProxyConfig> parse_proxy_url(std::string_view url_in) {
    std::string_view url = trim(url_in);
    ProxyConfig out;
    const size_t scheme_end = url.find("://");
    if (scheme_end != std::string_view::npos) {
        const std::string scheme = lower(url.substr(0, scheme_end));
        if (scheme == "https") {
            out.tls = true;
        } else if (scheme != "http") {
            return fail(ErrorCode::invalid_argument,
                        "proxy URL: unsupported scheme \"" + scheme +
                            "\" (only http:// CONNECT proxies are supported)");
        }
        url.remove_prefix(scheme_end + 3);
    }
    // Drop a trailing "/" (and refuse any other path: it would be ignored).
    if (const size_t slash = url.find('/'); slash != std::string_view::npos) {
        if (url.substr(slash) != "/") {
            return fail(ErrorCode::invalid_argument, "proxy URL: a path is not allowed");
        }
        url = url.substr(0, slash);
    }
    if (const size_t at = url.rfind('@'); at != std::string_view::npos) {
        const std::string_view userinfo = url.substr(0, at);
        if (userinfo.find(':') != std::string_view::npos) {
            // The password is deliberately not part of the message.
            return fail(ErrorCode::invalid_argument,
                        "proxy URL contains a password; put the proxy password in the secret "
                        "store and reference it from the config instead");
        }
        if (userinfo.empty()) return fail(ErrorCode::invalid_argument, "proxy URL: empty user");
        out.username = std::string(userinfo);
        url.remove_prefix(at + 1);
    }
    auto split = split_host_port(url);
    if (!split) return fail(ErrorCode::invalid_argument, "proxy URL: invalid host or port");
    auto [host, port] = std::move(*split);
    if (const auto ip = IpAddress::parse(host)) {
        host = ip->text();
    } else if (!valid_host_name(host)) {
        return fail(ErrorCode::invalid_argument, "proxy URL: invalid host \"" + host + "\"");
    }
    out.host = lower(host);
    if (port != 0) out.port = port;
    return out;
}

std::vector<std::string> parse_no_proxy(std::string_view list) {
    std::vector<std::string> out;
    while (!list.empty()) {
        const size_t comma = list.find(',');
        std::string_view entry = trim(list.substr(0, comma));
        if (!entry.empty()) out.push_back(lower(entry));
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return out;
}

std::optional<ProxyConfig> proxy_from_environment() {
    const char* url = env("HTTPS_PROXY", "https_proxy");
    if (url == nullptr) return std::nullopt;
    auto parsed = parse_proxy_url(url);
    if (!parsed) return std::nullopt;
    if (const char* list = env("NO_PROXY", "no_proxy")) parsed->no_proxy = parse_no_proxy(list);
    return std::move(*parsed);
}

bool bypasses_proxy(const ProxyConfig& proxy, std::string_view host_in, int port) {
    std::string host = lower(host_in);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    while (host.ends_with('.')) host.pop_back();
    const std::optional<IpAddress> ip = IpAddress::parse(host);
    for (const std::string& raw : proxy.no_proxy) {
        if (raw == "*") return true;
        std::string entry = raw;
        int entry_port = 0;
        // "host:port" / "[v6]:port"; a bare IPv6 literal or CIDR keeps its colons.
        if (entry.find('/') == std::string::npos) {
            if (auto split = split_host_port(entry)) {
                entry = split->first;
                entry_port = split->second;
            } else {
                continue;
            }
        }
        if (entry_port != 0 && entry_port != port) continue;
        if (ip) {
            if (auto cidr = Cidr::parse(entry); cidr && cidr->contains(*ip)) return true;
            continue;
        }
        if (entry.starts_with("*.")) entry.erase(0, 1);
        if (entry.starts_with('.')) entry.erase(0, 1);
        while (entry.ends_with('.')) entry.pop_back();
        if (entry.empty() || IpAddress::parse(entry)) continue;
        if (host == entry) return true;
        if (host.size() > entry.size() && host.ends_with(entry) &&
            host[host.size() - entry.size() - 1] == '.') {
            return true;
        }
    }
    return false;
}

}  // namespace sa::agent::egress
