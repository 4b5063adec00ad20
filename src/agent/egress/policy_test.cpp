#include "agent/egress/policy.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>

#include "common/crypto/encoding.h"

namespace sa::agent::egress {
namespace {

// Answers from a table and counts lookups; never touches real DNS.
class FakeResolver final : public Resolver {
  public:
    std::map<std::string, std::vector<std::string>> answers;
    int calls = 0;

    Result<std::vector<IpAddress>> resolve(const std::string& host) override {
        ++calls;
        auto it = answers.find(host);
        if (it == answers.end()) return fail(ErrorCode::unavailable, "no such host " + host);
        std::vector<IpAddress> out;
        for (const auto& text : it->second) out.push_back(*IpAddress::parse(text));
        return out;
    }
};

AllowRule rule(std::string host, int port = 443, std::vector<std::string> cidrs = {}) {
    AllowRule r;
    r.host = std::move(host);
    r.port = port;
    for (const auto& c : cidrs) r.cidrs.push_back(*Cidr::parse(c));
    r.origin = "egress.allow[test]";
    return r;
}

struct Fixture {
    std::shared_ptr<FakeResolver> resolver = std::make_shared<FakeResolver>();
    PolicyOptions options;
    EgressPolicy policy() const { return EgressPolicy(options, resolver); }
};

std::vector<std::string> texts(const Destination& d) {
    std::vector<std::string> out;
    for (const auto& a : d.addresses) out.push_back(a.text());
    return out;
}

TEST(IpAddressTest, ParsesAndPrints) {
    auto v4 = IpAddress::parse("10.0.0.1");
    ASSERT_TRUE(v4);
    EXPECT_EQ(v4->family, AF_INET);
    EXPECT_EQ(v4->text(), "10.0.0.1");
    auto v6 = IpAddress::parse("[::1]");
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->family, AF_INET6);
    EXPECT_EQ(v6->text(), "::1");
    EXPECT_EQ(IpAddress::parse("2001:DB8::1")->text(), "2001:db8::1");
    for (const char* bad : {"", "127.1", "host.example.com", "1.2.3.4.5", "fe80::1%eth0", "[::1",
                            "256.0.0.1", " 1.2.3.4"}) {
        EXPECT_FALSE(IpAddress::parse(bad)) << bad;
    }
    auto mapped = IpAddress::parse("::ffff:169.254.169.254");
    ASSERT_TRUE(mapped);
    EXPECT_EQ(mapped->unmapped(), *IpAddress::parse("169.254.169.254"));
}

TEST(CidrTest, ParsesContainsAndRejects) {
    auto c = Cidr::parse("10.0.0.0/8");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->text(), "10.0.0.0/8");
    EXPECT_TRUE(c->contains(*IpAddress::parse("10.255.255.255")));
    EXPECT_FALSE(c->contains(*IpAddress::parse("11.0.0.0")));
    EXPECT_FALSE(c->contains(*IpAddress::parse("::1")));
    EXPECT_TRUE(c->contains(*IpAddress::parse("::ffff:10.1.2.3")));  // mapped = embedded v4
    auto host = Cidr::parse("127.0.0.1");
    ASSERT_TRUE(host);
    EXPECT_EQ(host->text(), "127.0.0.1/32");
    auto v6 = Cidr::parse("fd00::/8");
    ASSERT_TRUE(v6);
    EXPECT_TRUE(v6->contains(*IpAddress::parse("fdff::1")));
    EXPECT_FALSE(v6->contains(*IpAddress::parse("fe00::1")));
    auto odd = Cidr::parse("100.64.0.0/10");
    ASSERT_TRUE(odd);
    EXPECT_TRUE(odd->contains(*IpAddress::parse("100.127.255.255")));
    EXPECT_FALSE(odd->contains(*IpAddress::parse("100.128.0.0")));
    EXPECT_TRUE(Cidr::parse("0.0.0.0/0")->contains(*IpAddress::parse("8.8.8.8")));

    for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "::/129",
                            "10.0.0.1/8", "example.com/8", "10.0.0.0/ 8"}) {
        auto parsed = Cidr::parse(bad);
        ASSERT_FALSE(parsed) << bad;
        EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument);
        EXPECT_NE(parsed.error().message.find(bad), std::string::npos) << parsed.error().message;
    }
}

TEST(SpkiPinTest, ParsesGoodAndRejectsBad) {
    const std::string raw(32, '\x07');
    const std::string b64 = crypto::base64_encode(raw);
    auto one = parse_spki_pin("sha256/" + b64);
    ASSERT_TRUE(one);
    EXPECT_EQ(*one, raw);
    auto curl_style = parse_spki_pin("sha256//" + b64);
    ASSERT_TRUE(curl_style);
    EXPECT_EQ(*curl_style, raw);
    EXPECT_EQ(format_spki_pin(raw), "sha256//" + b64);

    // A base64 value that itself starts with '/' (first byte 0xFC..0xFF):
    // "sha256/" + it looks like curl's "sha256//" form, yet must parse.
    const std::string slashy_raw = std::string(1, '\xfe') + std::string(31, '\x01');
    const std::string slashy = crypto::base64_encode(slashy_raw);
    ASSERT_EQ(slashy.front(), '/');
    auto slashy_pin = parse_spki_pin("sha256/" + slashy);
    ASSERT_TRUE(slashy_pin) << slashy_pin.error().describe();
    EXPECT_EQ(*slashy_pin, slashy_raw);
    auto slashy_curl = parse_spki_pin("sha256//" + slashy);
    ASSERT_TRUE(slashy_curl) << slashy_curl.error().describe();
    EXPECT_EQ(*slashy_curl, slashy_raw);

    auto short_pin = parse_spki_pin("sha256/" + crypto::base64_encode(std::string(20, 'x')));
    ASSERT_FALSE(short_pin);
    EXPECT_EQ(short_pin.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(short_pin.error().message.find("20 bytes"), std::string::npos);
    auto bad_b64 = parse_spki_pin("sha256/not*base64!");
    ASSERT_FALSE(bad_b64);
    EXPECT_NE(bad_b64.error().message.find("base64"), std::string::npos);
    auto no_prefix = parse_spki_pin("sha1/" + b64);
    ASSERT_FALSE(no_prefix);
    EXPECT_NE(no_prefix.error().message.find("sha256/"), std::string::npos);
    EXPECT_FALSE(parse_spki_pin(""));
    EXPECT_FALSE(parse_spki_pin("sha256/"));
}

TEST(EgressPolicyTest, ExactWildcardAndPortMatching) {
    Fixture f;
    f.options.allow = {rule("hub.example.com"), rule("*.data.example.com", 5432)};
    f.resolver->answers = {{"hub.example.com", {"93.184.216.34"}},
                           {"a.data.example.com", {"93.184.216.35"}}};
    auto p = f.policy();

    auto hub = p.check("HUB.Example.COM", 443);
    ASSERT_TRUE(hub) << hub.error().describe();
    EXPECT_EQ(hub->host, "hub.example.com");
    EXPECT_EQ(hub->port, 443);
    EXPECT_EQ(texts(*hub), std::vector<std::string>{"93.184.216.34"});
    EXPECT_EQ(hub->rule, &p.options().allow[0]);

    ASSERT_TRUE(p.check("a.data.example.com", 5432));
    const int before = f.resolver->calls;
    for (const auto& [host, port] : std::vector<std::pair<std::string, int>>{
             {"hub.example.com", 8443},       // wrong port
             {"data.example.com", 5432},      // wildcard needs one label
             {"a.b.data.example.com", 5432},  // ... exactly one
             {"a.data.example.com", 443},
             {"evilhub.example.com", 443},
             {"hub.example.com.evil.net", 443},
         }) {
        auto denied = p.check(host, port);
        ASSERT_FALSE(denied) << host;
        EXPECT_EQ(denied.error().code, ErrorCode::permission_denied);
        EXPECT_EQ(denied.error().message,
                  "egress: " + host + ":" + std::to_string(port) + " not in egress allowlist");
    }
    EXPECT_EQ(f.resolver->calls, before);  // denied before any DNS lookup
}

TEST(EgressPolicyTest, NotAllowedNeverCallsTheResolver) {
    Fixture f;
    auto p = f.policy();  // empty allowlist: default deny
    auto denied = p.check("hub.example.com", 443);
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error().message, "egress: hub.example.com:443 not in egress allowlist");
    EXPECT_EQ(f.resolver->calls, 0);
}

TEST(EgressPolicyTest, MetadataAddressIsRefusedWithAClearMessage) {
    Fixture f;
    f.options.allow = {rule("hub.example.com")};
    f.resolver->answers = {{"hub.example.com", {"169.254.169.254"}}};
    auto denied = f.policy().check("hub.example.com", 443);
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(denied.error().message,
              "egress: hub.example.com resolves to 169.254.169.254, which is link-local (denied "
              "by egress policy; allow it with a cidr entry)");
}

TEST(EgressPolicyTest, MixedAnswerKeepsOnlyTheNamedAddress) {
    Fixture f;
    f.options.allow = {rule("hub.test", 443, {"127.0.0.1/32"})};
    f.resolver->answers = {{"hub.test", {"169.254.169.254", "127.0.0.1"}}};
    auto d = f.policy().check("hub.test", 443);
    ASSERT_TRUE(d) << d.error().describe();
    EXPECT_EQ(texts(*d), std::vector<std::string>{"127.0.0.1"});
}

TEST(EgressPolicyTest, DeniedAddressesAreDroppedWhenOthersRemain) {
    Fixture f;
    f.options.allow = {rule("hub.example.com")};
    f.resolver->answers = {{"hub.example.com", {"10.0.0.5", "93.184.216.34", "fe80::1"}}};
    auto d = f.policy().check("hub.example.com", 443);
    ASSERT_TRUE(d);
    EXPECT_EQ(texts(*d), std::vector<std::string>{"93.184.216.34"});
}

TEST(EgressPolicyTest, IpLiteralRulesNameTheirAddressAndSkipDns) {
    Fixture f;
    f.options.allow = {rule("127.0.0.1", 8443), rule("::1", 8443), rule("10.1.2.3", 5432)};
    auto p = f.policy();
    auto v4 = p.check("127.0.0.1", 8443);
    ASSERT_TRUE(v4) << v4.error().describe();
    EXPECT_EQ(texts(*v4), std::vector<std::string>{"127.0.0.1"});
    auto v6 = p.check("[::1]", 8443);
    ASSERT_TRUE(v6) << v6.error().describe();
    EXPECT_EQ(v6->host, "::1");
    EXPECT_EQ(texts(*v6), std::vector<std::string>{"::1"});
    ASSERT_TRUE(p.check("10.1.2.3", 5432));
    EXPECT_EQ(f.resolver->calls, 0);

    // An IP literal without a rule naming it is simply not allowed.
    auto other = p.check("127.0.0.2", 8443);
    ASSERT_FALSE(other);
    EXPECT_NE(other.error().message.find("not in egress allowlist"), std::string::npos);
}

TEST(EgressPolicyTest, Ipv6AndMappedAddresses) {
    Fixture f;
    f.options.allow = {rule("hub.example.com")};
    f.resolver->answers = {{"hub.example.com", {"2606:2800:220:1:248:1893:25c8:1946"}},
                           {"mapped.example.com", {"::ffff:169.254.169.254"}},
                           {"mapped-public.example.com", {"::ffff:93.184.216.34"}}};
    f.options.allow.push_back(rule("mapped.example.com"));
    f.options.allow.push_back(rule("mapped-public.example.com"));
    auto p = f.policy();
    auto v6 = p.check("hub.example.com", 443);
    ASSERT_TRUE(v6) << v6.error().describe();
    EXPECT_EQ(texts(*v6), std::vector<std::string>{"2606:2800:220:1:248:1893:25c8:1946"});
    auto mapped = p.check("mapped.example.com", 443);
    ASSERT_FALSE(mapped);
    EXPECT_NE(mapped.error().message.find("::ffff:169.254.169.254, which is link-local"),
              std::string::npos)
        << mapped.error().message;
    ASSERT_TRUE(p.check("mapped-public.example.com", 443));
}

// First and last address of every built-in range are denied; the public
// neighbours just outside are allowed.
TEST(EgressPolicyTest, EveryBuiltInDenyRange) {
    struct Case {
        const char* first;
        const char* last;
        const char* below;  // nullptr when the neighbour is itself denied or absent
        const char* above;
    };
    const Case cases[] = {
        {"0.0.0.0", "0.255.255.255", nullptr, "1.0.0.0"},
        {"10.0.0.0", "10.255.255.255", "9.255.255.255", "11.0.0.0"},
        {"100.64.0.0", "100.127.255.255", "100.63.255.255", "100.128.0.0"},
        {"127.0.0.0", "127.255.255.255", "126.255.255.255", "128.0.0.0"},
        {"169.254.0.0", "169.254.255.255", "169.253.255.255", "169.255.0.0"},
        {"172.16.0.0", "172.31.255.255", "172.15.255.255", "172.32.0.0"},
        {"192.168.0.0", "192.168.255.255", "192.167.255.255", "192.169.0.0"},
        {"224.0.0.0", "239.255.255.255", "223.255.255.255", nullptr},
        {"240.0.0.0", "255.255.255.255", nullptr, nullptr},
        {"::", "::", nullptr, "::2"},
        {"::1", "::1", nullptr, "::2"},
        {"fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"},
        {"fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::"},
        {"ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", nullptr},
        {"::ffff:127.0.0.1", "::ffff:10.255.255.255", nullptr, "::ffff:11.0.0.0"},
    };
    for (const Case& c : cases) {
        Fixture f;
        f.options.allow = {rule("x.example.com")};
        auto p = f.policy();
        const auto verdict = [&](const char* address) {
            f.resolver->answers["x.example.com"] = {address};
            return p.check("x.example.com", 443);
        };
        for (const char* address : {c.first, c.last}) {
            auto d = verdict(address);
            ASSERT_FALSE(d) << address << " should be denied";
            EXPECT_EQ(d.error().code, ErrorCode::permission_denied);
            EXPECT_NE(d.error().message.find(std::string("resolves to ") + address + ", which is"),
                      std::string::npos)
                << d.error().message;
        }
        for (const char* address : {c.below, c.above}) {
            if (address == nullptr) continue;
            auto d = verdict(address);
            EXPECT_TRUE(d) << address << " should be allowed: " << d.error().message;
        }
    }
}

TEST(EgressPolicyTest, CidrRestrictsAndNamesPrivateRanges) {
    Fixture f;
    f.options.allow = {rule("db.corp.example", 5432, {"10.20.0.0/16"})};
    f.resolver->answers = {{"db.corp.example", {"10.20.1.2"}}};
    auto p = f.policy();
    auto inside = p.check("db.corp.example", 5432);
    ASSERT_TRUE(inside) << inside.error().describe();
    EXPECT_EQ(texts(*inside), std::vector<std::string>{"10.20.1.2"});

    f.resolver->answers["db.corp.example"] = {"93.184.216.34"};  // public, but outside the cidr
    auto outside = p.check("db.corp.example", 5432);
    ASSERT_FALSE(outside);
    EXPECT_EQ(outside.error().code, ErrorCode::permission_denied);
    EXPECT_NE(
        outside.error().message.find("outside the cidrs of egress.allow[test] (10.20.0.0/16)"),
        std::string::npos)
        << outside.error().message;

    f.resolver->answers["db.corp.example"] = {"10.30.0.1"};  // private and not named
    auto unnamed = p.check("db.corp.example", 5432);
    ASSERT_FALSE(unnamed);
    EXPECT_NE(unnamed.error().message.find("10.30.0.1, which is private"), std::string::npos)
        << unnamed.error().message;
}

TEST(EgressPolicyTest, ExtraDenyRangesApply) {
    Fixture f;
    f.options.allow = {rule("hub.example.com")};
    f.options.extra_deny = {*Cidr::parse("93.184.0.0/16")};
    f.resolver->answers = {{"hub.example.com", {"93.184.216.34"}}};
    auto d = f.policy().check("hub.example.com", 443);
    ASSERT_FALSE(d);
    EXPECT_NE(d.error().message.find("93.184.0.0/16"), std::string::npos) << d.error().message;
}

TEST(EgressPolicyTest, DnsFailureIsUnavailableAndBadInputIsInvalid) {
    Fixture f;
    f.options.allow = {rule("gone.example.com")};
    auto p = f.policy();
    auto d = p.check("gone.example.com", 443);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, ErrorCode::unavailable);
    EXPECT_EQ(p.check("", 443).error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(p.check("gone.example.com", 0).error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(p.check("gone.example.com", 70000).error().code, ErrorCode::invalid_argument);
    // Names libcurl would look up differently from the checked name.
    EXPECT_EQ(p.check("gone.example.com.", 443).error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(p.check("g\xc3\xb6ne.example.com", 443).error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(p.check("gone .example.com", 443).error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(f.resolver->calls, 1);
}

TEST(EgressPolicyTest, ExactRuleWinsOverWildcard) {
    Fixture f;
    f.options.allow = {rule("*.example.com"), rule("hub.example.com")};
    f.options.allow[1].origin = "hub.url";
    f.resolver->answers = {{"hub.example.com", {"93.184.216.34"}}};
    auto p = f.policy();
    auto d = p.check("hub.example.com", 443);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->rule->origin, "hub.url");
    EXPECT_EQ(p.min_tls(), TlsMin::v1_2);
}

// ------------------------------------------------------------ plaintext http

TEST(PlaintextRuleTest, OnlyLoopbackAndLinkLocalDestinations) {
    const auto rule = [](std::string host, std::vector<std::string> cidrs = {}) {
        AllowRule r;
        r.host = std::move(host);
        r.port = 80;
        r.origin = "egress.allow[3]";
        r.plaintext_http = true;
        for (const auto& c : cidrs) r.cidrs.push_back(*Cidr::parse(c));
        return r;
    };
    EXPECT_TRUE(check_plaintext_rule(rule("127.0.0.1")));
    EXPECT_TRUE(check_plaintext_rule(rule("169.254.169.254")));
    EXPECT_TRUE(check_plaintext_rule(rule("::1")));
    EXPECT_TRUE(check_plaintext_rule(rule("fe80::1")));
    EXPECT_TRUE(check_plaintext_rule(rule("metadata.google.internal", {"169.254.169.254/32"})));
    EXPECT_TRUE(check_plaintext_rule(rule("dapr.local", {"127.0.0.0/8", "::1"})));

    auto routable = check_plaintext_rule(rule("10.0.0.1"));
    ASSERT_FALSE(routable);
    EXPECT_EQ(routable.error().message,
              "egress.allow[3]: plaintext_http is only allowed to loopback or link-local "
              "addresses, not 10.0.0.1");
    auto bare_name = check_plaintext_rule(rule("metadata.google.internal"));
    ASSERT_FALSE(bare_name);
    EXPECT_NE(bare_name.error().message.find("needs a cidr"), std::string::npos);
    auto wide = check_plaintext_rule(rule("m.test", {"169.254.169.254/32", "169.0.0.0/8"}));
    ASSERT_FALSE(wide);
    EXPECT_NE(wide.error().message.find("cidr 169.0.0.0/8 reaches further"), std::string::npos);
    EXPECT_FALSE(check_plaintext_rule(rule("m.test", {"0.0.0.0/0"})));

    AllowRule pinned = rule("127.0.0.1");
    pinned.spki_pins.push_back(std::string(32, 'x'));
    EXPECT_FALSE(check_plaintext_rule(pinned));
}

TEST(PlaintextRuleTest, LocalAddressClassification) {
    EXPECT_TRUE(is_host_or_link_local(*IpAddress::parse("127.8.9.10")));
    EXPECT_TRUE(is_host_or_link_local(*IpAddress::parse("169.254.169.254")));
    EXPECT_TRUE(is_host_or_link_local(*IpAddress::parse("::1")));
    EXPECT_TRUE(is_host_or_link_local(*IpAddress::parse("::ffff:127.0.0.1")));
    EXPECT_FALSE(is_host_or_link_local(*IpAddress::parse("10.1.2.3")));
    EXPECT_FALSE(is_host_or_link_local(*IpAddress::parse("8.8.8.8")));
    EXPECT_FALSE(is_host_or_link_local(*IpAddress::parse("fd00::1")));
}

TEST(CidrTest, ContainsCidr) {
    EXPECT_TRUE(Cidr::parse("10.0.0.0/8")->contains(*Cidr::parse("10.1.0.0/16")));
    EXPECT_TRUE(Cidr::parse("10.0.0.0/8")->contains(*Cidr::parse("10.0.0.0/8")));
    EXPECT_FALSE(Cidr::parse("10.0.0.0/8")->contains(*Cidr::parse("0.0.0.0/0")));
    EXPECT_FALSE(Cidr::parse("10.0.0.0/8")->contains(*Cidr::parse("11.0.0.0/16")));
    EXPECT_FALSE(Cidr::parse("10.0.0.0/8")->contains(*Cidr::parse("::1")));
}

}  // namespace
}  // namespace sa::agent::egress
