#pragma once
// EgressPolicy: which destinations the agent may connect to, decided before
// any packet leaves the machine (issue #4).
//
// - Allowlist, default deny: a rule names a host ("hub.example.com", a
//   one-label wildcard "*.example.com", or an IP literal) and a port. Host
//   matching is case-insensitive; "*.example.com" matches "a.example.com"
//   but neither "example.com" nor "a.b.example.com".
// - DNS: a name is resolved once (through the injected Resolver) and every
//   address is checked against the deny ranges below; the clients then
//   connect to exactly the checked addresses (no second lookup, so no DNS
//   rebinding between check and connect).
// - Deny ranges: this-network, loopback, private (RFC 1918), shared (CGNAT),
//   link-local (incl. the 169.254.169.254 metadata service), multicast,
//   reserved/broadcast, and their IPv6 counterparts; an IPv4-mapped IPv6
//   address is judged as its embedded IPv4 address. PolicyOptions::extra_deny
//   adds ranges that behave the same way.
//   An address in a deny range is still allowed when the matching rule names
//   it: the rule's host is that IP literal, or one of the rule's cidrs covers
//   it. Customers' databases and vaults usually live on private addresses,
//   so their allow entries must carry a cidr ("10.20.0.0/16") or use the IP
//   literal as host; a bare name that resolves to 10.x is refused.
// - TLS (enforced by the clients): TLS 1.2 floor, optionally 1.3; host name
//   verification cannot be turned off; a rule may bring its own CA file and
//   SPKI SHA-256 pins (any one must match, which allows key rotation).
//
// EgressPolicy is immutable after construction and safe to share between
// threads (check() is const; the Resolver must be thread-safe).
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sa::agent::egress {

struct IpAddress {
    int family = 0;                   // AF_INET / AF_INET6
    std::array<uint8_t, 16> bytes{};  // v4 in the first 4

    // Dotted-quad IPv4 or IPv6 ("::1", also bracketed "[::1]"); nullopt for
    // anything else (names, zone ids, "127.1").
    static std::optional<IpAddress> parse(std::string_view literal);
    // Canonical form without brackets ("10.0.0.1", "::1").
    std::string text() const;
    // The embedded IPv4 address for an IPv4-mapped IPv6 address
    // (::ffff:a.b.c.d), otherwise the address itself.
    IpAddress unmapped() const;
    bool operator==(const IpAddress&) const = default;
};

class Cidr {
  public:
    // "10.0.0.0/8", "fd00::/8", or a bare address (= /32 or /128). Host bits
    // below the prefix must be zero ("10.0.0.1/8" is an error: it usually
    // means a typo). Errors: invalid_argument naming the text.
    static Result<Cidr> parse(std::string_view text);
    // Family-aware; an IPv4-mapped IPv6 address is matched as its IPv4
    // address (and a ::ffff:0:0/96-style cidr as the IPv4 range).
    bool contains(const IpAddress& address) const;
    // True when every address of inner is inside this range.
    bool contains(const Cidr& inner) const {
        return inner.prefix_ >= prefix_ && contains(inner.base_);
    }
    std::string text() const;  // "10.0.0.0/8"
    bool operator==(const Cidr&) const = default;

  private:
    IpAddress base_;
    int prefix_ = 0;
};

enum class TlsMin { v1_2, v1_3 };

// "sha256/BASE64" (also curl's "sha256//BASE64"); the standard-base64
// SHA-256 of a certificate's SubjectPublicKeyInfo. Returns the raw 32 bytes.
// Errors: invalid_argument saying what is wrong (prefix, base64, length).
Result<std::string> parse_spki_pin(std::string_view pin);
// The inverse: "sha256//BASE64", the form libcurl takes.
std::string format_spki_pin(std::string_view raw_sha256);

struct AllowRule {
    std::string host;  // "hub.example.com" | "*.example.com" | IP literal
    int port = 443;
    std::vector<Cidr> cidrs;             // optional: every used address must be inside one
    std::optional<std::string> ca_file;  // overrides the client's CA for this destination
    std::vector<std::string> spki_pins;  // raw 32-byte SHA-256 values (from parse_spki_pin)
    std::string origin;                  // for messages, e.g. "egress.allow[2]" or "hub.url"
    // Upload (outbound) bytes per second to this destination, enforced by an
    // EgressRateLimiter (rate_limit.h) on top of the global limit; 0 = no
    // per-destination limit.
    int64_t max_bytes_per_second = 0;
    // How many HTTP redirects HttpClient follows from this destination
    // (each hop is checked by the policy again); 0 = none: the 3xx response
    // is returned to the caller.
    int max_redirects = 0;
    // Plain http:// is allowed to this destination: for endpoints that only
    // speak http and never leave the machine or its link (a cloud metadata
    // service on 169.254.169.254, a Dapr sidecar on loopback). Only valid
    // for rules check_plaintext_rule accepts; https to the same rule still
    // works as usual. Never used through a proxy.
    bool plaintext_http = false;
};

// True for loopback (127.0.0.0/8, ::1) and link-local (169.254.0.0/16,
// fe80::/10) addresses: traffic to them stays on this host or its link.
bool is_host_or_link_local(const IpAddress& address);

// Whether a rule may set plaintext_http: its host must be a loopback or
// link-local IP literal, or it must have cidrs that all lie inside those
// ranges (a name like metadata.google.internal plus cidr 169.254.169.254/32);
// and it must carry no SPKI pins or CA file (there is no TLS to apply them
// to). Errors: invalid_argument saying what is wrong, prefixed with origin.
Status check_plaintext_rule(const AllowRule& rule);

struct PolicyOptions {
    std::vector<AllowRule> allow;
    TlsMin min_tls = TlsMin::v1_2;
    std::vector<Cidr> extra_deny;  // added to the built-in deny ranges
    // Global limit on upload (outbound) bytes per second over all
    // destinations; 0 = unlimited. See rate_limit.h.
    int64_t max_bytes_per_second = 0;
    // Token bucket size of every limit (how much may be sent at once after
    // an idle period); 0 = one second of that limit's rate, at least 64 KiB.
    int64_t burst_bytes = 0;
};

// Name resolution, injectable so tests never touch real DNS.
class Resolver {
  public:
    virtual ~Resolver() = default;
    // Every address of host, in preference order. Errors: unavailable.
    virtual Result<std::vector<IpAddress>> resolve(const std::string& host) = 0;
};

// getaddrinfo (AF_UNSPEC, SOCK_STREAM); thread-safe.
class SystemResolver final : public Resolver {
  public:
    Result<std::vector<IpAddress>> resolve(const std::string& host) override;
};

struct Destination {
    std::string host;  // as asked (brackets stripped for IPv6 literals)
    int port = 0;
    // Resolved AND allowed, in resolver order; never empty from check() (empty
    // from check_via_proxy() for a name).
    std::vector<IpAddress> addresses;
    const AllowRule* rule = nullptr;  // the rule that allowed it (points into the policy)
};

// One record per connection attempt (and per denial), for the network log.
struct ConnectionRecord {
    int64_t unix_ms = 0;  // when the attempt started
    std::string host;
    int port = 0;
    std::string address;      // the address used (empty when none was)
    std::string decision;     // "allowed" | "denied"
    std::string rule;         // allowing rule's origin, or the denial reason
    std::string tls_version;  // e.g. "TLSv1.3"; empty when no handshake completed
    std::string cipher;       // e.g. "TLS_AES_256_GCM_SHA384"; empty likewise
    // "none" (no pins configured), "ok", "mismatch", or "unchecked" (pins
    // configured but the connection failed before the certificate was seen).
    std::string pin = "none";
    int64_t bytes_up = 0;  // application bytes (HTTP headers + body), not TLS overhead
    int64_t bytes_down = 0;
    int64_t duration_ms = 0;
    std::string error;  // "" on success
    // "" for a direct connection, else the HTTP CONNECT proxy used
    // ("proxy.example.com:3128"); address is then the proxy's address.
    std::string via_proxy;
    // HttpRequest::job_id: the correlation id for the network log.
    std::string job_id;
};

class EgressPolicy final {
  public:
    // resolver null = SystemResolver.
    explicit EgressPolicy(PolicyOptions options, std::shared_ptr<Resolver> resolver = nullptr);

    // Decides whether host:port may be contacted and with which addresses.
    // Errors:
    // - permission_denied "egress: HOST:PORT not in egress allowlist" when no
    //   rule matches (no DNS lookup is made then);
    // - permission_denied "egress: HOST resolves to 169.254.169.254, which is
    //   link-local (denied by egress policy; allow it with a cidr entry)"
    //   when every address is denied (denied ones are dropped otherwise);
    // - permission_denied when the rule has cidrs and no address is inside;
    // - unavailable when DNS fails; invalid_argument for an empty host or a
    //   port outside 1..65535.
    // IP-literal hosts are not resolved.
    Result<Destination> check(std::string_view host, int port) const;

    // The same decision for a destination reached through an HTTP CONNECT
    // proxy: the allowlist and its rule apply, an IP literal is checked
    // against the deny ranges and cidrs as above, but a name is NOT resolved
    // (the proxy resolves it, so the client could not pin the address
    // anyway): the Destination's addresses are then empty. Callers must
    // check the proxy itself with check() and pin the connection to it.
    Result<Destination> check_via_proxy(std::string_view host, int port) const;

    TlsMin min_tls() const { return options_.min_tls; }
    const PolicyOptions& options() const { return options_; }

  private:
    Result<Destination> check_impl(std::string_view host, int port, bool resolve) const;

    PolicyOptions options_;
    std::shared_ptr<Resolver> resolver_;
};

}  // namespace sa::agent::egress
