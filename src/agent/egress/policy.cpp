#include "agent/egress/policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "common/crypto/encoding.h"

namespace sa::agent::egress {
namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// "Host." and "host" name the same host.
std::string normalize_host(std::string_view host) {
    if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
    return lower(host);
}

struct DenyRange {
    Cidr cidr;
    std::string label;
};

const std::vector<DenyRange>& builtin_deny_ranges() {
    static const std::vector<DenyRange> ranges = [] {
        const std::pair<const char*, const char*> table[] = {
            {"0.0.0.0/8", "this-network (0.0.0.0/8)"},
            {"127.0.0.0/8", "loopback"},
            {"10.0.0.0/8", "private (10.0.0.0/8)"},
            {"100.64.0.0/10", "shared address space (100.64.0.0/10)"},
            {"169.254.0.0/16", "link-local"},
            {"172.16.0.0/12", "private (172.16.0.0/12)"},
            {"192.168.0.0/16", "private (192.168.0.0/16)"},
            {"224.0.0.0/4", "multicast"},
            {"240.0.0.0/4", "reserved (240.0.0.0/4)"},
            {"::/128", "unspecified (::)"},
            {"::1/128", "loopback"},
            {"fc00::/7", "unique-local (fc00::/7)"},
            {"fe80::/10", "link-local"},
            {"ff00::/8", "multicast"},
        };
        std::vector<DenyRange> out;
        for (const auto& [text, label] : table) {
            auto cidr = Cidr::parse(text);
            // The table is a compile-time constant: a bad entry is a bug.
            if (!cidr) throw std::logic_error("bad built-in deny range");
            out.push_back({*cidr, label});
        }
        return out;
    }();
    return ranges;
}

const std::vector<Cidr>& host_or_link_local_ranges() {
    static const std::vector<Cidr> ranges = [] {
        std::vector<Cidr> out;
        for (const char* text : {"127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10"}) {
            auto cidr = Cidr::parse(text);
            if (!cidr) throw std::logic_error("bad built-in local range");
            out.push_back(*cidr);
        }
        return out;
    }();
    return ranges;
}

bool within_host_or_link(const Cidr& cidr) {
    return std::any_of(host_or_link_local_ranges().begin(), host_or_link_local_ranges().end(),
                       [&](const Cidr& range) { return range.contains(cidr); });
}

bool host_matches(const AllowRule& rule, const std::string& host,
                  const std::optional<IpAddress>& literal) {
    if (literal) {
        auto rule_ip = IpAddress::parse(rule.host);
        return rule_ip && rule_ip->unmapped() == literal->unmapped();
    }
    const std::string pattern = normalize_host(rule.host);
    if (pattern.starts_with("*.")) {
        const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
        if (host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
        const std::string_view label =
            std::string_view(host).substr(0, host.size() - suffix.size());
        return label.find('.') == std::string_view::npos;
    }
    return pattern == host;
}

// Whether the rule explicitly names the address, which lifts a deny range.
bool rule_names(const AllowRule& rule, const IpAddress& address) {
    if (auto literal = IpAddress::parse(rule.host);
        literal && literal->unmapped() == address.unmapped()) {
        return true;
    }
    return std::any_of(rule.cidrs.begin(), rule.cidrs.end(),
                       [&](const Cidr& c) { return c.contains(address); });
}

}  // namespace

// ---------------------------------------------------------------- IpAddress

std::optional<IpAddress> IpAddress::parse(std::string_view literal) {
    if (literal.size() >= 2 && literal.front() == '[' && literal.back() == ']') {
        literal = literal.substr(1, literal.size() - 2);
    }
    if (literal.empty() || literal.size() > 45) return std::nullopt;
    const std::string text(literal);
    IpAddress out;
    if (text.find(':') == std::string::npos) {
        in_addr v4{};
        if (inet_pton(AF_INET, text.c_str(), &v4) != 1) return std::nullopt;
        out.family = AF_INET;
        std::memcpy(out.bytes.data(), &v4, 4);
        return out;
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, text.c_str(), &v6) != 1) return std::nullopt;
    out.family = AF_INET6;
    std::memcpy(out.bytes.data(), &v6, 16);
    return out;
}

std::string IpAddress::text() const {
    char buffer[INET6_ADDRSTRLEN] = {};
    if (family == AF_INET) {
        inet_ntop(AF_INET, bytes.data(), buffer, sizeof buffer);
    } else if (family == AF_INET6) {
        inet_ntop(AF_INET6, bytes.data(), buffer, sizeof buffer);
    }
    return buffer;
}

IpAddress IpAddress::unmapped() const {
    if (family != AF_INET6 ||
        !std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin())) {
        return *this;
    }
    IpAddress v4;
    v4.family = AF_INET;
    std::copy(bytes.begin() + 12, bytes.end(), v4.bytes.begin());
    return v4;
}

// --------------------------------------------------------------------- Cidr

Result<Cidr> Cidr::parse(std::string_view text) {
    const auto bad = [&](std::string_view why) {
        return fail(ErrorCode::invalid_argument,
                    "invalid cidr \"" + std::string(text) + "\": " + std::string(why));
    };
    const size_t slash = text.find('/');
    auto address = IpAddress::parse(text.substr(0, slash));
    if (!address) return bad("not an IPv4 or IPv6 address");
    const int bits = address->family == AF_INET ? 32 : 128;
    int prefix = bits;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        const auto [end, ec] =
            std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
        if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
            prefix < 0 || prefix > bits) {
            return bad("prefix length must be 0.." + std::to_string(bits));
        }
    }
    for (int i = prefix; i < bits; ++i) {
        if ((address->bytes[static_cast<size_t>(i / 8)] >> (7 - i % 8)) & 1) {
            return bad("address has bits set below the prefix length");
        }
    }
    Cidr out;
    out.base_ = *address;
    out.prefix_ = prefix;
    // An IPv4-mapped range is kept as the IPv4 range it denotes.
    if (address->family == AF_INET6 && prefix >= 96 && address->unmapped().family == AF_INET) {
        out.base_ = address->unmapped();
        out.prefix_ = prefix - 96;
    }
    return out;
}

bool Cidr::contains(const IpAddress& address) const {
    const IpAddress a = address.unmapped();
    if (a.family != base_.family) return false;
    const int full = prefix_ / 8;
    if (!std::equal(a.bytes.begin(), a.bytes.begin() + full, base_.bytes.begin())) return false;
    const int rest = prefix_ % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a.bytes[static_cast<size_t>(full)] & mask) ==
           (base_.bytes[static_cast<size_t>(full)] & mask);
}

std::string Cidr::text() const {
    return base_.text() + "/" + std::to_string(prefix_);
}

// ----------------------------------------------------------------- SPKI pins

Result<std::string> parse_spki_pin(std::string_view pin) {
    const auto bad = [&](std::string_view why) {
        return fail(ErrorCode::invalid_argument,
                    "invalid SPKI pin \"" + std::string(pin) + "\": " + std::string(why));
    };
    if (!pin.starts_with("sha256/")) return bad("must start with \"sha256/\"");
    // "sha256//X" is curl's form of "sha256/X", but a base64 value may itself
    // start with '/': take the one-slash reading when it is a whole pin.
    std::string_view b64 = pin.substr(7);
    if (pin.starts_with("sha256//")) {
        auto one_slash = crypto::base64_decode(b64);
        if (!one_slash || one_slash->size() != 32) b64 = pin.substr(8);
    }
    auto raw = crypto::base64_decode(b64);
    if (!raw) return bad("not valid padded base64");
    if (raw->size() != 32) {
        return bad("decodes to " + std::to_string(raw->size()) + " bytes, a SHA-256 pin has 32");
    }
    return *raw;
}

std::string format_spki_pin(std::string_view raw_sha256) {
    return "sha256//" + crypto::base64_encode(raw_sha256);
}

// ------------------------------------------------------------ SystemResolver

Result<std::vector<IpAddress>> SystemResolver::resolve(const std::string& host) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
    if (rc != 0) {
        return fail(ErrorCode::unavailable,
                    "egress: cannot resolve " + host + ": " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(list, &freeaddrinfo);
    std::vector<IpAddress> out;
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        IpAddress a;
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(sockaddr_in)) {
            a.family = AF_INET;
            const auto* sin = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
            std::memcpy(a.bytes.data(), &sin->sin_addr, 4);
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(sockaddr_in6)) {
            a.family = AF_INET6;
            const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
            std::memcpy(a.bytes.data(), &sin6->sin6_addr, 16);
        } else {
            continue;
        }
        if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    }
    if (out.empty()) return fail(ErrorCode::unavailable, "egress: " + host + " has no address");
    return out;
}

// -------------------------------------------------------------- EgressPolicy

EgressPolicy::EgressPolicy(PolicyOptions options, std::shared_ptr<Resolver> resolver)
    : options_(std::move(options)),
      resolver_(resolver ? std::move(resolver) : std::make_shared<SystemResolver>()) {}

Result<Destination> EgressPolicy::check(std::string_view host_in, int port) const {
    return check_impl(host_in, port, true);
}

Result<Destination> EgressPolicy::check_via_proxy(std::string_view host_in, int port) const {
    return check_impl(host_in, port, false);
}

Result<Destination> EgressPolicy::check_impl(std::string_view host_in, int port,
                                             bool resolve) const {
    if (host_in.empty()) return fail(ErrorCode::invalid_argument, "egress: empty host");
    if (port <= 0 || port > 65535) {
        return fail(ErrorCode::invalid_argument, "egress: invalid port " + std::to_string(port));
    }
    const std::optional<IpAddress> literal = IpAddress::parse(host_in);
    std::string host = literal ? literal->text() : lower(host_in);
    const std::string where = std::string(host_in) + ":" + std::to_string(port);
    for (unsigned char c : host) {
        // Control characters or spaces never belong in a host name, and
        // would corrupt messages and libcurl's resolve entries.
        if (c <= 0x20 || c == 0x7f || c == ',' || c == '/') {
            return fail(ErrorCode::invalid_argument, "egress: invalid host name");
        }
        // libcurl would convert an IDN to punycode and then miss the pinned
        // resolve entry (and look the name up itself): ask for xn-- names.
        if (c >= 0x80) {
            return fail(ErrorCode::invalid_argument,
                        "egress: non-ASCII host name; use its punycode (xn--) form");
        }
    }
    if (host.ends_with('.')) {
        // Same reason: libcurl's lookup key would differ from the checked name.
        return fail(ErrorCode::invalid_argument,
                    "egress: host name ends with a dot; write it without the dot");
    }

    // Exact rules win over wildcards; otherwise the first in config order.
    const AllowRule* rule = nullptr;
    for (const AllowRule& candidate : options_.allow) {
        if (candidate.port != port || !host_matches(candidate, host, literal)) continue;
        const bool wildcard = candidate.host.starts_with("*.");
        if (rule == nullptr || (!wildcard && rule->host.starts_with("*."))) rule = &candidate;
    }
    if (rule == nullptr) {
        return fail(ErrorCode::permission_denied, "egress: " + where + " not in egress allowlist");
    }

    std::vector<IpAddress> resolved;
    if (literal) {
        resolved.push_back(*literal);
    } else if (!resolve) {
        // Through a proxy the proxy resolves the name; only the allowlist applies.
        Destination out;
        out.host = host;
        out.port = port;
        out.rule = rule;
        return out;
    } else {
        auto addresses = resolver_->resolve(host);
        if (!addresses) return std::unexpected(addresses.error());
        resolved = std::move(*addresses);
        if (resolved.empty()) {
            return fail(ErrorCode::unavailable, "egress: " + host + " has no address");
        }
    }

    Destination out;
    out.host = host;
    out.port = port;
    out.rule = rule;
    std::vector<std::string> denied;   // "ADDR, which is LABEL"
    std::vector<std::string> outside;  // addresses outside the rule's cidrs
    for (const IpAddress& address : resolved) {
        if (address.family != AF_INET && address.family != AF_INET6) continue;
        const bool named = rule_names(*rule, address);
        std::string label;
        if (!named) {
            for (const DenyRange& range : builtin_deny_ranges()) {
                if (range.cidr.contains(address)) {
                    label = range.label;
                    break;
                }
            }
            if (label.empty()) {
                for (const Cidr& cidr : options_.extra_deny) {
                    if (cidr.contains(address)) {
                        label = "in " + cidr.text() + " (egress.deny)";
                        break;
                    }
                }
            }
        }
        if (!label.empty()) {
            denied.push_back(address.text() + ", which is " + label);
            continue;
        }
        if (!rule->cidrs.empty() && !named) {
            outside.push_back(address.text());
            continue;
        }
        if (std::find(out.addresses.begin(), out.addresses.end(), address) == out.addresses.end()) {
            out.addresses.push_back(address);
        }
    }
    if (!out.addresses.empty()) return out;

    if (!denied.empty()) {
        std::string message = "egress: " + host + " resolves to ";
        for (size_t i = 0; i < denied.size(); ++i) message += (i ? "; " : "") + denied[i];
        message += " (denied by egress policy; allow it with a cidr entry)";
        for (const std::string& a : outside) {
            message += "; " + a + " is outside the cidrs of " + rule->origin;
        }
        return fail(ErrorCode::permission_denied, message);
    }
    std::string message = "egress: " + host + " resolves to ";
    for (size_t i = 0; i < outside.size(); ++i) message += (i ? ", " : "") + outside[i];
    message += ", outside the cidrs of " + rule->origin + " (";
    for (size_t i = 0; i < rule->cidrs.size(); ++i) {
        message += (i ? ", " : "") + rule->cidrs[i].text();
    }
    message += ")";
    return fail(ErrorCode::permission_denied, message);
}

bool is_host_or_link_local(const IpAddress& address) {
    return std::any_of(host_or_link_local_ranges().begin(), host_or_link_local_ranges().end(),
                       [&](const Cidr& range) { return range.contains(address); });
}

Status check_plaintext_rule(const AllowRule& rule) {
    const std::string prefix = rule.origin.empty() ? "" : rule.origin + ": ";
    if (!rule.spki_pins.empty() || rule.ca_file) {
        return fail(ErrorCode::invalid_argument,
                    prefix + "plaintext_http cannot be combined with pins or ca_file");
    }
    if (auto literal = IpAddress::parse(rule.host)) {
        if (is_host_or_link_local(literal->unmapped())) return {};
        return fail(ErrorCode::invalid_argument,
                    prefix +
                        "plaintext_http is only allowed to loopback or link-local "
                        "addresses, not " +
                        literal->text());
    }
    if (rule.cidrs.empty()) {
        return fail(ErrorCode::invalid_argument,
                    prefix +
                        "plaintext_http to a host name needs a cidr inside loopback or "
                        "link-local (e.g. 169.254.169.254/32)");
    }
    for (const Cidr& cidr : rule.cidrs) {
        if (!within_host_or_link(cidr)) {
            return fail(ErrorCode::invalid_argument,
                        prefix +
                            "plaintext_http is only allowed to loopback or link-local "
                            "addresses, but cidr " +
                            cidr.text() + " reaches further");
        }
    }
    return {};
}

}  // namespace sa::agent::egress
