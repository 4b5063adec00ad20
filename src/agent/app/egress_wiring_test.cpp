#include "agent/app/egress_wiring.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "agent/audit/audit_log.h"
#include "agent/audit/format.h"
#include "agent/egress/rate_limit.h"
#include "agent/identity/agent_key.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/health_server.h"
#include "common/crypto/random.h"

namespace sa::agent::app {
namespace {

// Answers from a table: no test here touches real DNS.
class TableResolver final : public egress::Resolver {
  public:
    Result<std::vector<egress::IpAddress>> resolve(const std::string& host) override {
        if (host == "tsa.example.com") return std::vector{*egress::IpAddress::parse("192.0.2.10")};
        if (host == "meta.example.com")
            return std::vector{*egress::IpAddress::parse("169.254.169.254")};
        return fail(ErrorCode::unavailable, "no such host");
    }
};

config::Config sample_config() {
    config::Config c;
    c.agent.id = "edge-1";
    c.hub.url = "https://127.0.0.1:8443/prefix";
    c.hub.ca_file = "/etc/sa/hub-ca.pem";
    c.audit.tsa = config::TsaSection{"https://tsa.example.com/tsr", "/etc/sa/tsa-ca.pem", {}};
    config::SiemExport soc;
    soc.name = "soc";
    soc.host = "siem.corp.example";
    soc.port = 6514;
    config::SiemExport file;
    file.name = "archive";
    file.type = config::SiemExport::Type::json_lines;
    file.path = "-";
    c.audit.siem = {soc, file};
    config::EgressAllow vault;
    vault.host = "vault.corp.example";
    vault.port = 8200;
    vault.cidrs = {"10.20.0.0/16"};
    vault.pins = {"sha256/" + std::string(43, 'A') + "="};
    c.egress.allow = {vault};
    c.egress.deny = {"192.0.2.0/24"};
    return c;
}

TEST(HttpsHostPortTest, ParsesHostsPortsAndIpv6) {
    EXPECT_EQ(*https_host_port("https://hub.example.com"),
              (std::pair<std::string, int>{"hub.example.com", 443}));
    EXPECT_EQ(*https_host_port("https://hub.example.com:8443/v1?x#y"),
              (std::pair<std::string, int>{"hub.example.com", 8443}));
    EXPECT_EQ(*https_host_port("https://[::1]:9000/"), (std::pair<std::string, int>{"::1", 9000}));
    EXPECT_EQ(*https_host_port("https://[fd00::1]"), (std::pair<std::string, int>{"fd00::1", 443}));
    for (const char* bad : {"http://hub", "https://", "https://:443", "https://h:0",
                            "https://h:65536", "https://h:12ab", "https://u:p@h", "https://[::1"}) {
        EXPECT_FALSE(https_host_port(bad)) << bad;
    }
}

TEST(EgressPolicyOptionsTest, ExplicitEntriesFirstThenTheConfiguredDestinations) {
    auto options = egress_policy_options(sample_config());
    ASSERT_TRUE(options) << options.error().describe();
    ASSERT_EQ(options->allow.size(), 4u);  // vault, hub, tsa, soc (the file export is no host)
    EXPECT_EQ(options->allow[0].origin, "egress.allow[0]");
    EXPECT_EQ(options->allow[0].port, 8200);
    ASSERT_EQ(options->allow[0].cidrs.size(), 1u);
    EXPECT_EQ(options->allow[0].spki_pins.size(), 1u);
    EXPECT_EQ(options->allow[0].spki_pins[0].size(), 32u);
    EXPECT_EQ(options->allow[1].origin, "hub.url");
    EXPECT_EQ(options->allow[1].host, "127.0.0.1");
    EXPECT_EQ(options->allow[1].port, 8443);
    EXPECT_EQ(options->allow[1].ca_file, "/etc/sa/hub-ca.pem");
    EXPECT_EQ(options->allow[2].origin, "audit.tsa.url");
    EXPECT_EQ(options->allow[2].host, "tsa.example.com");
    EXPECT_EQ(options->allow[3].origin, "audit.siem[0]");
    EXPECT_EQ(options->allow[3].port, 6514);
    ASSERT_EQ(options->extra_deny.size(), 1u);
    EXPECT_EQ(options->min_tls, egress::TlsMin::v1_2);
}

TEST(EgressPolicyOptionsTest, PlaintextHttpOnlyForLocalDestinations) {
    config::Config config = sample_config();
    config.egress.allow[0] = config::EgressAllow{.host = "169.254.169.254", .port = 80};
    config.egress.allow[0].plaintext_http = true;
    auto options = egress_policy_options(config);
    ASSERT_TRUE(options) << options.error().describe();
    EXPECT_TRUE(options->allow[0].plaintext_http);
    EXPECT_FALSE(options->allow[1].plaintext_http);  // the hub

    config.egress.allow[0].host = "vault.example.com";
    auto refused = egress_policy_options(config);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(refused.error().message.rfind("egress.allow[0]: plaintext_http to a host name needs "
                                            "a cidr",
                                            0),
              0u)
        << refused.error().message;
}

TEST(EgressPolicyOptionsTest, RateLimitsAndRedirectsComeFromTheConfig) {
    config::Config config = sample_config();
    config.egress.max_bytes_per_second = 1 << 20;
    config.egress.burst_bytes = 1 << 16;
    config.egress.allow[0].max_bytes_per_second = 4096;
    config.egress.allow[0].max_redirects = 2;
    auto options = egress_policy_options(config);
    ASSERT_TRUE(options) << options.error().describe();
    EXPECT_EQ(options->max_bytes_per_second, 1 << 20);
    EXPECT_EQ(options->burst_bytes, 1 << 16);
    EXPECT_EQ(options->allow[0].max_bytes_per_second, 4096);
    EXPECT_EQ(options->allow[0].max_redirects, 2);
    EXPECT_EQ(options->allow[1].max_redirects, 0);  // the hub: never followed
    const egress::EgressRateLimiter limiter(*options);
    EXPECT_TRUE(limiter.limited());
    EXPECT_EQ(limiter.rate_for(&options->allow[0]), 4096);
    EXPECT_EQ(limiter.rate_for(&options->allow[1]), 1 << 20);
}

TEST(EgressPolicyOptionsTest, TheGlobalCaFillsInWhereNoDestinationCaIsConfigured) {
    config::Config config = sample_config();
    config.egress.ca_file = "/etc/sa/inspecting-proxy-ca.pem";
    config.egress.allow[0].ca_file = "/etc/sa/vault-ca.pem";
    auto options = egress_policy_options(config);
    ASSERT_TRUE(options) << options.error().describe();
    ASSERT_EQ(options->allow.size(), 4u);
    EXPECT_EQ(options->allow[0].ca_file, "/etc/sa/vault-ca.pem");             // its own
    EXPECT_EQ(options->allow[1].ca_file, "/etc/sa/hub-ca.pem");               // hub.ca_file
    EXPECT_EQ(options->allow[2].ca_file, "/etc/sa/inspecting-proxy-ca.pem");  // TSA: none
    EXPECT_EQ(options->allow[3].ca_file, "/etc/sa/inspecting-proxy-ca.pem");  // SIEM: none
}

TEST(EgressPolicyOptionsTest, ThePolicyAllowsTheHubAndDeniesTheRest) {
    auto options = egress_policy_options(sample_config());
    ASSERT_TRUE(options);
    const egress::EgressPolicy policy(std::move(*options), std::make_shared<TableResolver>());
    // The hub names its loopback literal: allowed.
    auto hub = policy.check("127.0.0.1", 8443);
    ASSERT_TRUE(hub) << hub.error().describe();
    EXPECT_EQ(hub->rule->origin, "hub.url");
    // Nothing the config does not name.
    auto other = policy.check("example.org", 443);
    ASSERT_FALSE(other);
    EXPECT_NE(other.error().message.find("not in egress allowlist"), std::string::npos);
    // egress.deny applies to configured destinations too.
    auto tsa = policy.check("tsa.example.com", 443);
    ASSERT_FALSE(tsa);
    EXPECT_EQ(tsa.error().code, ErrorCode::permission_denied);
}

TEST(EgressPolicyOptionsTest, BadUrlNamesTheKey) {
    auto c = sample_config();
    c.audit.tsa->url = "https://tsa.example.com:99999/";
    auto options = egress_policy_options(c);
    ASSERT_FALSE(options);
    EXPECT_EQ(options.error().message.rfind("audit.tsa.url: ", 0), 0u) << options.error().message;
}

TEST(NetworkLogTest, LogsEveryConnectionWithMetrics) {
    std::vector<std::string> lines;
    observe::Logger logger("edge-1", observe::Level::info,
                           [&](std::string_view line) { lines.emplace_back(line); });
    observe::Registry registry;
    Auditor auditor;  // no log attached: records are dropped, nothing fails
    NetworkLog log(logger, registry, auditor);
    egress::ConnectionRecord allowed;
    allowed.host = "hub.example.com";
    allowed.port = 443;
    allowed.address = "192.0.2.1";
    allowed.decision = "allowed";
    allowed.rule = "hub.url";
    allowed.tls_version = "TLSv1.3";
    allowed.bytes_up = 100;
    allowed.bytes_down = 2000;
    allowed.job_id = "J1";
    log.record(allowed);
    egress::ConnectionRecord denied;
    denied.host = "meta.example.com";
    denied.port = 80;
    denied.decision = "denied";
    denied.rule = "not in egress allowlist";
    log.callback()(denied);

    ASSERT_EQ(lines.size(), 2u);
    EXPECT_NE(lines[0].find("\"msg\":\"egress connection\""), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("\"tls_version\":\"TLSv1.3\""), std::string::npos);
    EXPECT_NE(lines[0].find("\"job_id\":\"J1\""), std::string::npos);
    EXPECT_EQ(lines[1].find("job_id"), std::string::npos) << lines[1];
    EXPECT_NE(lines[1].find("\"decision\":\"denied\""), std::string::npos) << lines[1];
    const std::string metrics = registry.render();
    EXPECT_NE(metrics.find("secure_agent_egress_connections_total{decision=\"allowed\"} 1\n"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("secure_agent_egress_connections_total{decision=\"denied\"} 1\n"),
              std::string::npos);
    EXPECT_NE(metrics.find("secure_agent_egress_bytes_total{direction=\"down\"} 2000\n"),
              std::string::npos);
}

TEST(NetworkLogTest, DenialsAndPinMismatchesAreAuditedOncePerWindow) {
    const auto root =
        std::filesystem::temp_directory_path() / ("sa-netlog-" + crypto::random_token(8));
    auto key = identity::AgentKey::load_or_create((root / "state").string());
    ASSERT_TRUE(key);
    observe::Logger logger("edge-1", observe::Level::error, [](std::string_view) {});
    observe::Registry registry;
    observe::AgentMetrics metrics(registry, "test");
    observe::Readiness readiness;
    Auditor auditor({}, readiness, metrics, logger);
    audit::Options o;
    o.agent_id = "edge-1";
    o.batch_interval_ms = 1;
    auto opened = audit::AuditLog::open((root / "audit").string(), o, *key);
    ASSERT_TRUE(opened);
    auditor.attach(opened->log.get());
    NetworkLog log(logger, registry, auditor);

    egress::ConnectionRecord denied;
    denied.host = "meta.example.com";
    denied.port = 80;
    denied.decision = "denied";
    denied.rule = "not in egress allowlist";
    for (int i = 0; i < 3; ++i) log.record(denied);  // a client retrying
    egress::ConnectionRecord pinned;
    pinned.host = "hub.example.com";
    pinned.port = 443;
    pinned.decision = "allowed";
    pinned.pin = "mismatch";
    pinned.error = "certificate public key does not match any pinned key";
    log.record(pinned);
    log.record(pinned);
    auditor.attach(nullptr);
    ASSERT_TRUE(opened->log->close());

    std::vector<std::string> types;
    ASSERT_TRUE(audit::for_each_line((root / "audit").string(),
                                     [&](const audit::Position&, std::string_view line, bool) {
                                         auto rec = audit::parse_record_line(line);
                                         if (rec) types.push_back(rec->type);
                                         return true;
                                     }));
    EXPECT_EQ(types, (std::vector<std::string>{"egress.denied", "egress.pin_mismatch"}));
    EXPECT_NE(registry.render().find("secure_agent_egress_pin_mismatch_total 2\n"),
              std::string::npos);
    std::filesystem::remove_all(root);
}

// One secret, counting reads (the proxy password is read once, at load).
class OneSecretStore final : public secrets::SecretStore {
  public:
    Result<secrets::SecretValue> read(const secrets::SecretRef& ref) override {
        ++reads;
        if (ref.path != "proxy") return fail(ErrorCode::not_found, "no secret " + ref.path);
        return secrets::SecretValue::copy_of("proxy-pass-7");
    }
    int reads = 0;
};

// Sets or clears the proxy variables for one test, restoring them after.
class ProxyEnvironment final {
  public:
    ProxyEnvironment() {
        for (const char* name : kNames) {
            if (const char* value = std::getenv(name)) saved_.emplace_back(name, value);
            ::unsetenv(name);
        }
    }
    ~ProxyEnvironment() {
        for (const char* name : kNames) ::unsetenv(name);
        for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
    }
    void set(const char* name, const char* value) { ::setenv(name, value, 1); }

  private:
    static constexpr const char* kNames[] = {"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"};
    std::vector<std::pair<std::string, std::string>> saved_;
};

struct StoresWithProxySecret {
    StoresWithProxySecret() {
        auto owned = std::make_unique<OneSecretStore>();
        store = owned.get();
        stores.add("vault", std::move(owned));
    }
    secrets::SecretStores stores;
    OneSecretStore* store = nullptr;
};

TEST(AgentProxyTest, ConfigProxyWithPasswordFromTheSecretStoreWinsOverTheEnvironment) {
    ProxyEnvironment environment;
    environment.set("HTTPS_PROXY", "http://env-proxy.example:9999");
    StoresWithProxySecret fixture;
    config::Config config = sample_config();
    config.egress.proxy = config::EgressProxy{"http://proxy.corp.example:8080",
                                              "agent",
                                              secrets::SecretRef{"vault", "proxy", "pw"},
                                              {"internal.example", "10.0.0.0/8"}};

    auto proxy = AgentProxy::load(config, fixture.stores);
    ASSERT_TRUE(proxy) << proxy.error().describe();
    ASSERT_NE(*proxy, nullptr);
    const egress::ProxyConfig& loaded = (*proxy)->config();
    EXPECT_EQ(loaded.host, "proxy.corp.example");
    EXPECT_EQ(loaded.port, 8080);
    EXPECT_EQ(loaded.username, "agent");
    ASSERT_NE(loaded.password, nullptr);
    EXPECT_EQ(loaded.password->reveal(), "proxy-pass-7");
    EXPECT_EQ(loaded.no_proxy, (std::vector<std::string>{"internal.example", "10.0.0.0/8"}));
    EXPECT_EQ((*proxy)->source(), "egress.proxy");
    EXPECT_EQ((*proxy)->password_ref(), (secrets::SecretRef{"vault", "proxy", "pw"}));
    EXPECT_EQ(fixture.store->reads, 1);

    // The proxy is an allowed destination, named by where it came from.
    auto options = egress_policy_options(config, &loaded);
    ASSERT_TRUE(options) << options.error().describe();
    const egress::AllowRule& last = options->allow.back();
    EXPECT_EQ(last.host, "proxy.corp.example");
    EXPECT_EQ(last.port, 8080);
    EXPECT_EQ(last.origin, "egress.proxy");
}

TEST(AgentProxyTest, AMissingPasswordIsTheStoresError) {
    ProxyEnvironment environment;
    StoresWithProxySecret fixture;
    config::Config config = sample_config();
    config.egress.proxy = config::EgressProxy{
        "http://proxy.corp.example:8080", "agent", secrets::SecretRef{"vault", "other", "pw"}, {}};
    auto proxy = AgentProxy::load(config, fixture.stores);
    ASSERT_FALSE(proxy);
    EXPECT_EQ(proxy.error().code, ErrorCode::not_found);
}

TEST(AgentProxyTest, EnvironmentIsTheFallback) {
    ProxyEnvironment environment;
    StoresWithProxySecret fixture;
    const config::Config config = sample_config();
    {
        auto none = AgentProxy::load(config, fixture.stores);
        ASSERT_TRUE(none) << none.error().describe();
        EXPECT_EQ(*none, nullptr);
    }
    environment.set("https_proxy", "http://10.1.2.3:3128");
    environment.set("NO_PROXY", "vault.corp.example, .internal");
    auto proxy = AgentProxy::load(config, fixture.stores);
    ASSERT_TRUE(proxy) << proxy.error().describe();
    ASSERT_NE(*proxy, nullptr);
    EXPECT_EQ((*proxy)->config().host, "10.1.2.3");
    EXPECT_EQ((*proxy)->config().port, 3128);
    EXPECT_EQ((*proxy)->config().password, nullptr);
    EXPECT_EQ((*proxy)->config().no_proxy,
              (std::vector<std::string>{"vault.corp.example", ".internal"}));
    EXPECT_EQ((*proxy)->source(), "https_proxy");
    EXPECT_EQ(fixture.store->reads, 0);
    auto options = egress_policy_options(config, &(*proxy)->config());
    ASSERT_TRUE(options);
    EXPECT_EQ(options->allow.back().origin, "HTTPS_PROXY");
}

TEST(AgentProxyTest, UnusableEnvironmentValuesAreErrorsNotDirectConnections) {
    StoresWithProxySecret fixture;
    const config::Config config = sample_config();
    const auto error_for = [&](const char* value) {
        ProxyEnvironment environment;
        environment.set("HTTPS_PROXY", value);
        auto proxy = AgentProxy::load(config, fixture.stores);
        return proxy ? std::string("loaded") : proxy.error().message;
    };
    EXPECT_EQ(error_for("http://agent@proxy:3128"),
              "HTTPS_PROXY: a proxy user name needs a password from the secret store; "
              "configure egress.proxy instead");
    const std::string with_password = error_for("http://agent:hunter2@proxy:3128");
    EXPECT_EQ(with_password.rfind("HTTPS_PROXY: ", 0), 0u) << with_password;
    EXPECT_EQ(with_password.find("hunter2"), std::string::npos) << with_password;
    EXPECT_EQ(error_for("https://proxy:3128"),
              "HTTPS_PROXY: https:// proxies are not supported; use http://");
    EXPECT_EQ(error_for("ftp://proxy").rfind("HTTPS_PROXY: ", 0), 0u);
}

}  // namespace
}  // namespace sa::agent::app
