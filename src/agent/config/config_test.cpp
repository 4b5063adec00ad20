#include "agent/config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/random.h"

namespace sa::agent::config {
namespace {

namespace fs = std::filesystem;

const char* kGood = R"(agent:
  id: edge-1
  state_dir: /var/lib/secure-agent
hub:
  url: https://hub.example.com:8443/
  ca_file: /etc/secure-agent/hub-ca.pem
  job_signing_public_key: /etc/secure-agent/job-signing.pub.pem
  client_id: cid_abc
  client_secret: {secret: "files/hub-client-secret"}
  poll_wait_seconds: 20
secret_stores:
  files:
    type: file
    path: /etc/secure-agent/secrets
sources:
  - name: demo
    connector: sqlite
    path: /data/demo.db
  - name: other.db_2
    connector: sqlite
    path: /data/other.db
health:
  listen: 127.0.0.1:0
log:
  level: debug
)";

// Replaces the first occurrence of from with to in the good config.
std::string variant(const std::string& from, const std::string& to) {
    std::string text = kGood;
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
    return text;
}

// The error message for a config that must be refused.
std::string error_of(const std::string& text) {
    auto config = parse_config(text);
    EXPECT_FALSE(config) << "accepted:\n" << text;
    if (config) return "";
    EXPECT_EQ(config.error().code, ErrorCode::invalid_argument);
    return config.error().message;
}

TEST(ConfigTest, ParsesGoodConfig) {
    auto config = parse_config(kGood);
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->agent.id, "edge-1");
    EXPECT_EQ(config->agent.state_dir, "/var/lib/secure-agent");
    EXPECT_EQ(config->hub.url, "https://hub.example.com:8443");  // trailing '/' dropped
    EXPECT_EQ(config->hub.ca_file, "/etc/secure-agent/hub-ca.pem");
    EXPECT_EQ(config->hub.job_signing_keys,
              std::vector<std::string>{"/etc/secure-agent/job-signing.pub.pem"});
    EXPECT_EQ(config->hub.client_id, "cid_abc");
    EXPECT_EQ(config->hub.client_secret, (secrets::SecretRef{"files", "hub-client-secret", ""}));
    EXPECT_EQ(config->hub.poll_wait_seconds, 20);
    ASSERT_EQ(config->secret_stores.size(), 1u);
    EXPECT_EQ(config->secret_stores[0].name, "files");
    EXPECT_EQ(config->secret_stores[0].type, "file");
    EXPECT_EQ(config->secret_stores[0].path, "/etc/secure-agent/secrets");
    ASSERT_EQ(config->sources.size(), 2u);
    EXPECT_EQ(config->sources[1].name, "other.db_2");
    EXPECT_EQ(config->sources[1].path, "/data/other.db");
    ASSERT_NE(config->find_source("demo"), nullptr);
    EXPECT_EQ(config->find_source("demo")->connector, "sqlite");
    EXPECT_EQ(config->find_source("nope"), nullptr);
    EXPECT_EQ(config->health.host, "127.0.0.1");
    EXPECT_EQ(config->health.port, 0);
    EXPECT_EQ(config->log_level, LogLevel::debug);
}

TEST(ConfigTest, FingerprintIsSha256OfTheBytes) {
    auto config = parse_config(kGood);
    ASSERT_TRUE(config);
    EXPECT_EQ(config->fingerprint, crypto::sha256_hex(kGood));
    EXPECT_EQ(config->fingerprint.size(), 64u);
    // A comment changes the bytes, hence the fingerprint.
    auto commented = parse_config(std::string(kGood) + "# changed\n");
    ASSERT_TRUE(commented);
    EXPECT_NE(commented->fingerprint, config->fingerprint);
}

TEST(ConfigTest, AppliesDefaults) {
    const char* minimal = R"(agent:
  state_dir: /s
hub:
  url: https://hub
  job_signing_public_key: /k.pem
  client_id: c
  client_secret: {secret: "files/x#a.b"}
secret_stores:
  files: {type: file, path: /sec}
)";
    auto config = parse_config(minimal);
    ASSERT_TRUE(config) << config.error().describe();
    char host[256] = {};
    ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
    EXPECT_EQ(config->agent.id, host);
    EXPECT_FALSE(config->hub.ca_file);
    EXPECT_EQ(config->hub.poll_wait_seconds, 25);
    EXPECT_EQ(config->hub.client_secret, (secrets::SecretRef{"files", "x", "a.b"}));
    EXPECT_TRUE(config->sources.empty());
    EXPECT_EQ(config->health.host, "127.0.0.1");
    EXPECT_EQ(config->health.port, 9464);
    EXPECT_EQ(config->log_level, LogLevel::info);
    EXPECT_EQ(config->audit.dir, "/s/audit");
    EXPECT_EQ(config->audit.batch_interval_ms, 5);
    EXPECT_EQ(config->audit.checkpoint_every_records, 1000);
    EXPECT_EQ(config->audit.checkpoint_interval_ms, 10000);
    EXPECT_EQ(config->audit.on_failure, AuditOnFailure::fail_closed);
    EXPECT_EQ(config->audit.retention_days, 365);
    EXPECT_FALSE(config->agent.key);
    EXPECT_FALSE(config->audit.tsa);
    EXPECT_FALSE(config->jobs.policy_file);
    EXPECT_EQ(config->jobs.workers, 1);
    EXPECT_EQ(config->jobs.heartbeat_interval_seconds, 30);
    EXPECT_EQ(config->jobs.cancel_grace_seconds, 10);
    EXPECT_EQ(config->jobs.clock_skew_seconds, 60);
    EXPECT_FALSE(config->jobs.sandbox.strict);
    EXPECT_EQ(config->jobs.sandbox.memory_bytes, 4ll << 30);
    EXPECT_TRUE(config->audit.siem.empty());
}

TEST(ConfigTest, AgentKeyComesOnlyFromTheSecretStore) {
    auto config = parse_config(variant("state_dir: /var/lib/secure-agent",
                                       "state_dir: /var/lib/secure-agent\n  key: {secret: "
                                       "\"files/agent-signing#pem\"}"));
    ASSERT_TRUE(config) << config.error().describe();
    ASSERT_TRUE(config->agent.key);
    EXPECT_EQ(*config->agent.key, (secrets::SecretRef{"files", "agent-signing", "pem"}));
    const std::string literal = error_of(variant(
        "state_dir: /var/lib/secure-agent", "state_dir: /var/lib/secure-agent\n  key: MC4CAQAw"));
    EXPECT_EQ(literal.rfind("agent.key: ", 0), 0u) << literal;
    EXPECT_EQ(literal.find("MC4CAQAw"), std::string::npos) << literal;
    EXPECT_EQ(error_of(variant("state_dir: /var/lib/secure-agent",
                               "state_dir: /var/lib/secure-agent\n  key: {secret: \"vault/k\"}")),
              "agent.key: unknown secret store \"vault\"");
}

TEST(ConfigTest, ParsesTheEgressSection) {
    auto config = parse_config(variant("log:\n", R"(egress:
  min_tls: "1.3"
  allow:
    - {host: vault.corp.example, port: 8200, cidr: 10.20.0.0/16, ca_file: /etc/sa/vault-ca.pem}
    - host: "*.secrets.example.com"
      pins: ["sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
    - {host: 10.1.2.3, port: 5432, cidr: [10.1.2.3/32, "fd00::/8"]}
  deny: [203.0.113.0/24]
log:
)"));
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->egress.min_tls, "1.3");
    ASSERT_EQ(config->egress.allow.size(), 3u);
    EXPECT_EQ(config->egress.allow[0].host, "vault.corp.example");
    EXPECT_EQ(config->egress.allow[0].port, 8200);
    EXPECT_EQ(config->egress.allow[0].cidrs, std::vector<std::string>{"10.20.0.0/16"});
    EXPECT_EQ(config->egress.allow[0].ca_file, "/etc/sa/vault-ca.pem");
    EXPECT_EQ(config->egress.allow[1].port, 443);
    EXPECT_EQ(config->egress.allow[1].pins.size(), 2u);
    EXPECT_EQ(config->egress.allow[2].cidrs.size(), 2u);
    EXPECT_EQ(config->egress.deny, std::vector<std::string>{"203.0.113.0/24"});
}

TEST(ConfigTest, EgressErrorsNameTheKey) {
    const auto egress = [](const std::string& body) {
        return error_of(variant("log:\n", "egress:\n  " + body + "\nlog:\n"));
    };
    EXPECT_EQ(egress("min_tls: \"1.1\""), "egress.min_tls: must be \"1.2\" or \"1.3\"");
    EXPECT_EQ(egress("allow: {host: x}"), "egress.allow: must be a list");
    EXPECT_EQ(egress("allow: [{port: 1}]"), "egress.allow[0].host: missing required key");
    EXPECT_EQ(egress("allow: [{host: \"bad host\"}]"),
              "egress.allow[0].host: must be a host name, \"*.\" plus a domain, or an IP address");
    EXPECT_EQ(egress("allow: [{host: h, port: 70000}]"),
              "egress.allow[0].port: must be an integer between 1 and 65535");
    EXPECT_EQ(egress("allow: [{host: h, cidr: [10.0.0.0/8, 10.0.0.0/99]}]")
                  .rfind("egress.allow[0].cidr[1]: ", 0),
              0u);
    EXPECT_EQ(
        egress("allow: [{host: h, pins: [\"sha256/abc\"]}]").rfind("egress.allow[0].pins[0]: ", 0),
        0u);
    EXPECT_EQ(
        egress("allow: [{host: h, pins: [\"md5/PIN\"]}]").rfind("egress.allow[0].pins[0]: ", 0),
        0u);
    EXPECT_EQ(egress("deny: 300.0.0.0/8").rfind("egress.deny: ", 0), 0u);
    EXPECT_EQ(egress("proxy: x"), "egress.proxy: must be a mapping");
    EXPECT_EQ(egress("max_bytes_per_second: 100"),
              "egress.max_bytes_per_second: must be 0 (no limit) or an integer between 1024 and "
              "1099511627776 (bytes, or with a unit: KiB, MiB, GiB, TiB, kB, MB, GB, TB)");
    EXPECT_EQ(egress("max_bytes_per_second: 5PiB").rfind("egress.max_bytes_per_second: must", 0),
              0u);
    EXPECT_EQ(egress("max_bytes_per_second: 2TiB").rfind("egress.max_bytes_per_second: must", 0),
              0u);
    EXPECT_EQ(egress("burst_bytes: -1").rfind("egress.burst_bytes: must be 0", 0), 0u);
    EXPECT_EQ(egress("allow: [{host: h, max_redirects: 11}]"),
              "egress.allow[0].max_redirects: must be an integer between 0 and 10");
    EXPECT_EQ(egress("allow: [{host: h, plaintext_http: yes}]"),
              "egress.allow[0].plaintext_http: must be true or false");
    EXPECT_EQ(egress("allow: [{host: h, max_bytes_per_second: fast}]")
                  .rfind("egress.allow[0].max_bytes_per_second: must be 0", 0),
              0u);
}

TEST(ConfigTest, ParsesTheEgressProxyAndRateLimits) {
    auto config = parse_config(variant("log:\n", R"(egress:
  max_bytes_per_second: 1048576
  burst_bytes: 65536
  allow:
    - {host: uploads.example.com, max_bytes_per_second: 4096, max_redirects: 3}
    - {host: 169.254.169.254, port: 80, plaintext_http: true}
  proxy:
    url: http://proxy.corp.example:8080
    username: agent
    password: {secret: "files/proxy#password"}
    no_proxy: ["internal.example, 10.0.0.0/8", ".corp.example"]
log:
)"));
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->egress.max_bytes_per_second, 1048576);
    EXPECT_EQ(config->egress.burst_bytes, 65536);
    EXPECT_EQ(config->egress.allow[0].max_bytes_per_second, 4096);
    EXPECT_EQ(config->egress.allow[0].max_redirects, 3);
    EXPECT_FALSE(config->egress.allow[0].plaintext_http);
    EXPECT_TRUE(config->egress.allow[1].plaintext_http);
    ASSERT_TRUE(config->egress.proxy);
    EXPECT_EQ(config->egress.proxy->url, "http://proxy.corp.example:8080");
    EXPECT_EQ(config->egress.proxy->username, "agent");
    EXPECT_EQ(config->egress.proxy->password, (secrets::SecretRef{"files", "proxy", "password"}));
    EXPECT_EQ(config->egress.proxy->no_proxy,
              (std::vector<std::string>{"internal.example", "10.0.0.0/8", ".corp.example"}));

    auto plain = parse_config(variant("log:\n", "egress:\n  proxy: {url: \"proxy:3128\"}\nlog:\n"));
    ASSERT_TRUE(plain) << plain.error().describe();
    EXPECT_TRUE(plain->egress.proxy->username.empty());
    EXPECT_FALSE(plain->egress.proxy->password);
}

TEST(ConfigTest, EgressProxyErrorsNameTheKeyAndNeverEchoAPassword) {
    const auto proxy = [](const std::string& body) {
        return error_of(variant("log:\n", "egress:\n  proxy: " + body + "\nlog:\n"));
    };
    EXPECT_EQ(proxy("{username: a}"), "egress.proxy.url: missing required key");
    const std::string in_url = proxy("{url: \"http://agent:hunter2@proxy:3128\"}");
    EXPECT_EQ(in_url.rfind("egress.proxy.url: ", 0), 0u) << in_url;
    EXPECT_EQ(in_url.find("hunter2"), std::string::npos) << in_url;
    EXPECT_EQ(proxy("{url: \"http://agent@proxy:3128\"}"),
              "egress.proxy.url: must not contain a user name; use egress.proxy.username");
    EXPECT_EQ(proxy("{url: \"https://proxy:3128\"}"),
              "egress.proxy.url: https:// proxies are not supported; use http://");
    const std::string literal = proxy("{url: \"proxy:3128\", username: a, password: hunter2}");
    EXPECT_EQ(literal.rfind("egress.proxy.password: literal secrets are not allowed", 0), 0u)
        << literal;
    EXPECT_EQ(literal.find("hunter2"), std::string::npos);
    EXPECT_EQ(proxy("{url: \"proxy:3128\", username: a}"),
              "egress.proxy.password: missing: a user name needs a password");
    EXPECT_EQ(proxy("{url: \"proxy:3128\", username: a, password: {secret: \"vault/p\"}}"),
              "egress.proxy.password: unknown secret store \"vault\"");
    EXPECT_EQ(proxy("{url: \"proxy:3128\", no_proxy: {a: b}}"),
              "egress.proxy.no_proxy: must be a list or a comma-separated string");
}

TEST(ConfigTest, HealthProbeSettings) {
    auto config = parse_config(variant("listen: 127.0.0.1:0",
                                       "listen: 127.0.0.1:0\n  probe_interval_seconds: 30\n"
                                       "  probe_failure_threshold: 5"));
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->health.probe_interval_seconds, 30);
    EXPECT_EQ(config->health.probe_failure_threshold, 5);
    auto defaults = parse_config(variant("", ""));
    ASSERT_TRUE(defaults);
    EXPECT_EQ(defaults->health.probe_interval_seconds, 60);
    EXPECT_EQ(defaults->health.probe_failure_threshold, 3);
    EXPECT_EQ(error_of(variant("listen: 127.0.0.1:0",
                               "listen: 127.0.0.1:0\n  probe_interval_seconds: 2")),
              "health.probe_interval_seconds: must be 0 (probes off) or between 5 and 3600");
    EXPECT_EQ(error_of(variant("listen: 127.0.0.1:0",
                               "listen: 127.0.0.1:0\n  probe_failure_threshold: 0")),
              "health.probe_failure_threshold: must be an integer between 1 and 100");
}

TEST(ConfigTest, ParsesTheAuditSection) {
    auto config = parse_config(variant("log:\n", R"(audit:
  dir: /var/log/secure-agent-audit
  batch_interval_ms: 1000
  checkpoint_every_records: 1
  checkpoint_interval_ms: 3600000
  on_failure: fail_open
  retention_days: 30
  tsa: {url: "https://tsa.example.com/tsr", ca_file: /etc/sa/tsa-ca.pem, tls_ca_file: /etc/sa/t.pem}
  siem:
    - {name: soc, type: syslog, host: siem.example.com, ca_file: /etc/sa/siem-ca.pem}
    - {name: legacy, type: syslog, host: 10.0.0.7, transport: tcp}
    - {name: file, type: json_lines, path: /var/log/sa-audit.jsonl, max_backlog_mb: 16}
log:
)"));
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->audit.retention_days, 30);
    ASSERT_TRUE(config->audit.tsa);
    EXPECT_EQ(config->audit.tsa->url, "https://tsa.example.com/tsr");
    EXPECT_EQ(config->audit.tsa->ca_file, "/etc/sa/tsa-ca.pem");
    EXPECT_EQ(config->audit.tsa->tls_ca_file, "/etc/sa/t.pem");
    ASSERT_EQ(config->audit.siem.size(), 3u);
    const auto& soc = config->audit.siem[0];
    EXPECT_EQ(soc.type, SiemExport::Type::syslog);
    EXPECT_EQ(soc.host, "siem.example.com");
    EXPECT_EQ(soc.port, 6514);
    EXPECT_TRUE(soc.tls);
    EXPECT_EQ(soc.ca_file, "/etc/sa/siem-ca.pem");
    EXPECT_EQ(soc.max_backlog_mb, 256);
    EXPECT_FALSE(config->audit.siem[1].tls);
    EXPECT_EQ(config->audit.siem[1].port, 514);
    EXPECT_EQ(config->audit.siem[2].type, SiemExport::Type::json_lines);
    EXPECT_EQ(config->audit.siem[2].path, "/var/log/sa-audit.jsonl");
    EXPECT_EQ(config->audit.siem[2].max_backlog_mb, 16);
    EXPECT_EQ(config->audit.dir, "/var/log/secure-agent-audit");
    EXPECT_EQ(config->audit.batch_interval_ms, 1000);
    EXPECT_EQ(config->audit.checkpoint_every_records, 1);
    EXPECT_EQ(config->audit.checkpoint_interval_ms, 3600000);
    EXPECT_EQ(config->audit.on_failure, AuditOnFailure::fail_open);
    EXPECT_STREQ(to_string(config->audit.on_failure), "fail_open");
}

TEST(ConfigTest, AuditSectionErrorsNameTheKey) {
    const auto audit = [](const std::string& body) {
        return error_of(variant("log:\n", "audit:\n  " + body + "\nlog:\n"));
    };
    EXPECT_EQ(audit("batch_interval_ms: 0"),
              "audit.batch_interval_ms: must be an integer between 1 and 1000");
    EXPECT_EQ(audit("batch_interval_ms: 1001"),
              "audit.batch_interval_ms: must be an integer between 1 and 1000");
    EXPECT_EQ(audit("checkpoint_every_records: 1000001"),
              "audit.checkpoint_every_records: must be an integer between 1 and 1000000");
    EXPECT_EQ(audit("checkpoint_interval_ms: 99"),
              "audit.checkpoint_interval_ms: must be an integer between 100 and 3600000");
    EXPECT_EQ(audit("on_failure: ignore"),
              "audit.on_failure: must be one of fail_closed, fail_open");
    EXPECT_EQ(audit("dir: \"\""), "audit.dir: must not be empty");
    EXPECT_EQ(audit("retention: 3"), "audit.retention: unknown key");
    EXPECT_EQ(audit("retention_days: 29"),
              "audit.retention_days: must be an integer between 30 and 365");
    EXPECT_EQ(audit("retention_days: 366"),
              "audit.retention_days: must be an integer between 30 and 365");
    EXPECT_EQ(audit("tsa: {url: \"http://tsa\", ca_file: /c.pem}"),
              "audit.tsa.url: must be an https:// URL");
    EXPECT_EQ(audit("tsa: {url: \"https://tsa\"}"), "audit.tsa.ca_file: missing required key");
    EXPECT_EQ(audit("siem: {name: x}"), "audit.siem: must be a list");
    EXPECT_EQ(audit("siem: [{name: x, type: kafka}]"),
              "audit.siem[0].type: must be one of syslog, json_lines");
    EXPECT_EQ(audit("siem: [{name: x, type: syslog}]"), "audit.siem[0].host: missing required key");
    EXPECT_EQ(audit("siem: [{name: x, type: syslog, host: h, transport: udp}]"),
              "audit.siem[0].transport: must be one of tls, tcp");
    EXPECT_EQ(audit("siem: [{name: x, type: syslog, host: h, transport: tcp, ca_file: /c}]"),
              "audit.siem[0].ca_file: only applies to transport: tls");
    EXPECT_EQ(audit("siem: [{name: x, type: json_lines, path: \"-\", host: h}]"),
              "audit.siem[0].host: only applies to syslog");
    EXPECT_EQ(audit("siem: [{name: x, type: json_lines, path: a}, {name: x, type: json_lines, "
                    "path: b}]"),
              "audit.siem[1].name: duplicate export name \"x\"");
    EXPECT_EQ(audit("siem: [{name: x, type: syslog, host: h, port: 0}]"),
              "audit.siem[0].port: must be an integer between 1 and 65535");
}

TEST(ConfigTest, SiemClientCertificateAndKeyReference) {
    auto config = parse_config(variant("log:\n", R"(audit:
  siem:
    - name: soc
      type: syslog
      host: siem.example.com
      client_cert: /etc/sa/siem-client.pem
      client_key: {secret: "files/siem/client-key#pem"}
log:
)"));
    ASSERT_TRUE(config) << config.error().describe();
    const auto& soc = config->audit.siem.at(0);
    EXPECT_EQ(soc.client_cert, "/etc/sa/siem-client.pem");
    ASSERT_TRUE(soc.client_key);
    EXPECT_EQ(soc.client_key->to_string(), "files/siem/client-key#pem");
    EXPECT_FALSE(config->audit.hmac_salt);
}

TEST(ConfigTest, SiemClientKeyErrorsNameTheKey) {
    const auto siem = [](const std::string& entry) {
        return error_of(variant(
            "log:\n", "audit:\n  siem: [{name: x, type: syslog, host: h, " + entry + "}]\nlog:\n"));
    };
    const std::string literal = siem("client_cert: /c.pem, client_key: \"-----BEGIN KEY xyzzy\"");
    EXPECT_EQ(literal.rfind("audit.siem[0].client_key: literal secrets are not allowed", 0), 0u)
        << literal;
    EXPECT_EQ(literal.find("xyzzy"), std::string::npos);
    EXPECT_EQ(siem("client_cert: /c.pem"),
              "audit.siem[0].client_key: missing: client_cert needs its private key as "
              "{secret: \"STORE/PATH#KEY\"}");
    EXPECT_EQ(siem("client_key: {secret: \"files/k\"}"),
              "audit.siem[0].client_cert: missing: client_key needs its certificate chain (PEM "
              "file)");
    EXPECT_EQ(siem("transport: tcp, client_cert: /c.pem, client_key: {secret: \"files/k\"}"),
              "audit.siem[0].client_cert: only applies to transport: tls");
    EXPECT_EQ(siem("client_cert: /c.pem, client_key: {secret: \"vault/k\"}"),
              "audit.siem[0].client_key: unknown secret store \"vault\"");
    EXPECT_EQ(error_of(variant("log:\n",
                               "audit:\n  siem: [{name: x, type: json_lines, path: a, "
                               "client_cert: /c.pem}]\nlog:\n")),
              "audit.siem[0].client_cert: only applies to syslog");
}

TEST(ConfigTest, HmacSaltIsASecretReference) {
    auto config = parse_config(
        variant("log:\n", "audit:\n  hmac_salt: {secret: \"files/audit-salt\"}\nlog:\n"));
    ASSERT_TRUE(config) << config.error().describe();
    ASSERT_TRUE(config->audit.hmac_salt);
    EXPECT_EQ(config->audit.hmac_salt->to_string(), "files/audit-salt");

    const std::string literal =
        error_of(variant("log:\n", "audit:\n  hmac_salt: \"c2FsdHNhbHRzYWx0c2FsdA==\"\nlog:\n"));
    EXPECT_EQ(literal.rfind("audit.hmac_salt: literal secrets are not allowed", 0), 0u) << literal;
    EXPECT_EQ(literal.find("c2FsdHNh"), std::string::npos);
    EXPECT_EQ(error_of(variant("log:\n", "audit:\n  hmac_salt: {secret: \"nostore/s\"}\nlog:\n")),
              "audit.hmac_salt: unknown secret store \"nostore\"");
}

TEST(ConfigTest, UnknownConnector) {
    EXPECT_EQ(error_of(variant("connector: sqlite\n    path: /data/other.db",
                               "connector: oracle\n    path: /data/other.db")),
              "sources[1].connector: unknown connector \"oracle\" (supported: sqlite, postgres, "
              "mariadb)");
}

TEST(ConfigTest, HubUrlMustBeHttps) {
    EXPECT_EQ(error_of(variant("https://hub.example.com:8443/", "http://hub.example.com")),
              "hub.url: must start with https://");
    EXPECT_EQ(error_of(variant("https://hub.example.com:8443/", "https://u:p@hub")),
              "hub.url: must not contain user credentials");
    EXPECT_EQ(error_of(variant("https://hub.example.com:8443/", "https://")),
              "hub.url: has no host");
    EXPECT_EQ(error_of(variant("https://hub.example.com:8443/", "https://h/?x=1")),
              "hub.url: must not have a query or fragment");
}

TEST(ConfigTest, LiteralSecretIsRefusedWithoutEchoingIt) {
    const std::string message =
        error_of(variant("{secret: \"files/hub-client-secret\"}", "\"hunter2-literal\""));
    EXPECT_EQ(message,
              "hub.client_secret: literal secrets are not allowed; use {secret: "
              "\"STORE/PATH#KEY\"}");
    EXPECT_EQ(message.find("hunter2"), std::string::npos);
    // Even a string that looks like a reference is a literal.
    EXPECT_NE(error_of(variant("{secret: \"files/hub-client-secret\"}", "files/x"))
                  .find("literal secrets are not allowed"),
              std::string::npos);
}

TEST(ConfigTest, SecretReferenceMustNameAConfiguredStore) {
    EXPECT_EQ(error_of(variant("files/hub-client-secret", "vault/x")),
              "hub.client_secret: unknown secret store \"vault\"");
    EXPECT_EQ(error_of(variant("{secret: \"files/hub-client-secret\"}", "{secret: \"files\"}")),
              "hub.client_secret.secret: secret reference must look like STORE/PATH or "
              "STORE/PATH#KEY");
    EXPECT_EQ(error_of(variant("{secret: \"files/hub-client-secret\"}",
                               "{secret: \"files/x\", extra: 1}")),
              "hub.client_secret.extra: unknown key");
}

TEST(ConfigTest, PollWaitRange) {
    for (const char* bad : {"31", "-1", "abc", "2.5", "[1]"}) {
        EXPECT_EQ(
            error_of(variant("poll_wait_seconds: 20", std::string("poll_wait_seconds: ") + bad)),
            "hub.poll_wait_seconds: must be an integer between 0 and 30")
            << bad;
    }
    auto zero = parse_config(variant("poll_wait_seconds: 20", "poll_wait_seconds: 0"));
    ASSERT_TRUE(zero);
    EXPECT_EQ(zero->hub.poll_wait_seconds, 0);
}

TEST(ConfigTest, UnknownKeys) {
    EXPECT_EQ(error_of(variant("  url:", "  urll:")), "hub.urll: unknown key");
    EXPECT_EQ(error_of(std::string(kGood) + "extra: 1\n"), "extra: unknown key");
    EXPECT_EQ(error_of(variant("    path: /data/demo.db", "    path: /data/demo.db\n    usr: x")),
              "sources[0].usr: unknown key");
    EXPECT_EQ(error_of(variant("    path: /data/demo.db", "    path: /data/demo.db\n    user: x")),
              "sources[0].user: not a setting of the sqlite connector (it takes: path)");
}

TEST(ConfigTest, DuplicateKeys) {
    EXPECT_EQ(error_of(variant("  client_id: cid_abc", "  client_id: cid_abc\n  client_id: b")),
              "hub.client_id: duplicate key");
}

TEST(ConfigTest, MissingRequiredKeys) {
    EXPECT_EQ(error_of(variant("  state_dir: /var/lib/secure-agent\n", "")),
              "agent.state_dir: missing required key");
    EXPECT_EQ(error_of(variant("  client_id: cid_abc\n", "")),
              "hub.client_id: missing required key");
    EXPECT_EQ(error_of(variant("  client_secret: {secret: \"files/hub-client-secret\"}\n", "")),
              "hub.client_secret: missing required key");
    EXPECT_EQ(error_of(variant("    path: /data/demo.db\n", "")),
              "sources[0].path: missing required key");
    EXPECT_EQ(error_of("log: {level: info}\n"), "agent: missing required key");
    EXPECT_EQ(error_of(variant("  url: https://hub.example.com:8443/\n", "  url: \"\"\n")),
              "hub.url: must not be empty");
}

TEST(ConfigTest, SourceNamesAreCheckedAndUnique) {
    EXPECT_EQ(error_of(variant("name: other.db_2", "name: demo")),
              "sources[1].name: duplicate source name \"demo\"");
    EXPECT_EQ(error_of(variant("name: other.db_2", "name: \"bad name\"")),
              "sources[1].name: must match [A-Za-z0-9_.-]{1,128}");
    EXPECT_EQ(error_of(variant("name: other.db_2", "name: " + std::string(129, 'a'))),
              "sources[1].name: must match [A-Za-z0-9_.-]{1,128}");
    EXPECT_EQ(error_of(variant("sources:\n  - name: demo\n    connector: sqlite\n    path: "
                               "/data/demo.db\n  - name: other.db_2\n    connector: sqlite\n    "
                               "path: /data/other.db\n",
                               "sources: 3\n")),
              "sources: must be a list");
}

TEST(ConfigTest, HealthListenMustBeLoopback) {
    for (const char* bad : {"0.0.0.0:9464", "10.0.0.1:1", "localhost:9464", "[::]:1"}) {
        EXPECT_EQ(error_of(variant("listen: 127.0.0.1:0", std::string("listen: \"") + bad + "\"")),
                  "health.listen: must be a loopback address (127.0.0.0/8 or ::1)")
            << bad;
    }
    EXPECT_EQ(error_of(variant("listen: 127.0.0.1:0", "listen: 127.0.0.1:70000")),
              "health.listen: port must be an integer between 0 and 65535");
    auto v6 = parse_config(variant("listen: 127.0.0.1:0", "listen: \"[::1]:9000\""));
    ASSERT_TRUE(v6) << v6.error().describe();
    EXPECT_EQ(v6->health.host, "::1");
    EXPECT_EQ(v6->health.port, 9000);
    auto other_loopback = parse_config(variant("listen: 127.0.0.1:0", "listen: 127.1.2.3:5"));
    ASSERT_TRUE(other_loopback);
    EXPECT_EQ(other_loopback->health.host, "127.1.2.3");
}

TEST(ConfigTest, SecretStoreTypeAndLogLevel) {
    EXPECT_EQ(error_of(variant("type: file", "type: keyring")),
              "secret_stores.files.type: unknown secret store type \"keyring\" (supported: file, "
              "env, vault, aws_secrets_manager, azure_key_vault, gcp_secret_manager, dapr)");
    EXPECT_EQ(error_of(variant("level: debug", "level: verbose")),
              "log.level: must be one of debug, info, warn, error");
}

TEST(ConfigTest, EnvSecretStore) {
    const std::string env_store =
        "secret_stores:\n  vars: {type: env, prefix: SA_}\n  files:\n    type: file\n"
        "    path: /etc/secure-agent/secrets";
    auto config =
        parse_config(variant("secret_stores:\n  files:\n    type: file\n"
                             "    path: /etc/secure-agent/secrets",
                             env_store));
    ASSERT_TRUE(config) << config.error().describe();
    ASSERT_EQ(config->secret_stores.size(), 2u);
    EXPECT_EQ(config->secret_stores[0].type, "env");
    EXPECT_EQ(config->secret_stores[0].prefix, "SA_");
    EXPECT_TRUE(config->secret_stores[0].path.empty());
    EXPECT_EQ(error_of(variant("type: file", "type: env")),
              "secret_stores.files.path: unknown key for type env");
    EXPECT_EQ(error_of(variant("type: file", "type: file\n    prefix: X_")),
              "secret_stores.files.prefix: unknown key for type file");
    EXPECT_EQ(error_of(variant("secret_stores:\n  files:\n    type: file\n"
                               "    path: /etc/secure-agent/secrets",
                               "secret_stores:\n  vars: {type: env, prefix: \"A-B\"}\n  files:\n"
                               "    type: file\n    path: /etc/secure-agent/secrets")),
              "secret_stores.vars.prefix: must match [A-Za-z0-9_]+");
}

// The good config with extra stores added to secret_stores.
std::string with_stores(const std::string& stores) {
    return variant("secret_stores:\n", "secret_stores:\n" + stores);
}

TEST(ConfigTest, HubClientAuthMethod) {
    auto good = parse_config(kGood);
    ASSERT_TRUE(good);
    EXPECT_EQ(good->hub.client_auth, "client_secret_basic");
    auto post = parse_config(variant("  poll_wait_seconds: 20",
                                     "  client_auth: client_secret_post\n"
                                     "  poll_wait_seconds: 20"));
    ASSERT_TRUE(post) << post.error().describe();
    EXPECT_EQ(post->hub.client_auth, "client_secret_post");
    EXPECT_EQ(error_of(variant("  poll_wait_seconds: 20",
                               "  client_auth: tls_client_auth\n  poll_wait_seconds: 20")),
              "hub.client_auth: must be one of client_secret_basic, client_secret_post, "
              "private_key_jwt");
}

TEST(ConfigTest, PrivateKeyJwtTakesAPrivateKeyReferenceInsteadOfASecret) {
    // The good config with its hub credential lines replaced by `lines`.
    const auto credentials = [](const std::string& lines) {
        return variant("  client_secret: {secret: \"files/hub-client-secret\"}\n", lines);
    };
    auto config =
        parse_config(credentials("  client_auth: private_key_jwt\n"
                                 "  private_key: {secret: \"files/hub-key.pem\"}\n"));
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->hub.client_auth, "private_key_jwt");
    EXPECT_EQ(config->hub.client_secret, (secrets::SecretRef{"files", "hub-key.pem", ""}));
    // Only the credential the method uses.
    EXPECT_EQ(error_of(credentials("  client_auth: private_key_jwt\n"
                                   "  client_secret: {secret: \"files/hub-client-secret\"}\n")),
              "hub.client_secret: not used with client_auth private_key_jwt (the credential is "
              "hub.private_key)");
    EXPECT_EQ(error_of(credentials("  client_auth: private_key_jwt\n")),
              "hub.private_key: missing required key");
    EXPECT_EQ(error_of(credentials("  client_secret: {secret: \"files/hub-client-secret\"}\n"
                                   "  private_key: {secret: \"files/hub-key.pem\"}\n")),
              "hub.private_key: not used with client_auth client_secret_basic (the credential "
              "is hub.client_secret)");
    // A literal key is refused like a literal secret.
    EXPECT_NE(error_of(credentials("  client_auth: private_key_jwt\n"
                                   "  private_key: \"-----BEGIN PRIVATE KEY-----\"\n"))
                  .find("hub.private_key: literal secrets are not allowed"),
              std::string::npos);
}

TEST(ConfigTest, RemoteSecretStores) {
    auto config = parse_config(with_stores(R"(  vault:
    type: vault
    address: https://vault.corp.example:8200/
    namespace: team-a
    mount: kv
    auth: {method: approle, role_id: agent-role, secret_id: {secret: "files/vault-secret-id"}}
    cache: {ttl_seconds: 300, max_entries: 50}
    retry: {max_attempts: 5, initial_backoff_ms: 100, max_backoff_ms: 2000}
  aws:
    type: aws_secrets_manager
    region: eu-central-1
    auth:
      method: static
      access_key_id: {secret: "files/aws#id"}
      secret_access_key: {secret: "files/aws#secret"}
  azure:
    type: azure_key_vault
    vault_url: https://myvault.vault.azure.net
  gcp:
    type: gcp_secret_manager
    project: my-project
    auth: {method: service_account_key, key: {secret: "files/gcp-key.json"}}
  dapr:
    type: dapr
    dapr_store: vault
    timeout_seconds: 3
)"));
    ASSERT_TRUE(config) << config.error().describe();
    ASSERT_EQ(config->secret_stores.size(), 6u);
    ASSERT_EQ(config->remote_secret_stores.size(), 5u);
    const auto& vault =
        std::get<secrets::vault::VaultSettings>(config->remote_secret_stores.at("vault"));
    EXPECT_EQ(vault.address, "https://vault.corp.example:8200");
    EXPECT_EQ(vault.namespace_, "team-a");
    EXPECT_EQ(vault.mount, "kv");
    EXPECT_EQ(vault.auth.method, "approle");
    EXPECT_EQ(vault.auth.role_id, "agent-role");
    EXPECT_EQ(vault.auth.secret_id, (secrets::SecretRef{"files", "vault-secret-id", ""}));
    const auto& vault_spec = config->secret_stores[0];
    EXPECT_EQ(vault_spec.name, "vault");
    EXPECT_EQ(vault_spec.access.cache_ttl, std::chrono::seconds(300));
    EXPECT_EQ(vault_spec.access.cache_max_entries, 50u);
    EXPECT_EQ(vault_spec.access.max_attempts, 5);
    EXPECT_EQ(vault_spec.access.retry_base, std::chrono::milliseconds(100));
    const auto& aws =
        std::get<secrets::aws::AwsSecretsManagerSettings>(config->remote_secret_stores.at("aws"));
    EXPECT_EQ(aws.region, "eu-central-1");
    EXPECT_EQ(aws.auth.secret_access_key, (secrets::SecretRef{"files", "aws", "secret"}));
    const auto& azure =
        std::get<secrets::azure::AzureKeyVaultSettings>(config->remote_secret_stores.at("azure"));
    EXPECT_EQ(azure.auth.method, "managed_identity");  // the default
    const auto& gcp =
        std::get<secrets::gcp::GcpSecretManagerSettings>(config->remote_secret_stores.at("gcp"));
    EXPECT_EQ(gcp.auth.key, (secrets::SecretRef{"files", "gcp-key.json", ""}));
    const auto& dapr =
        std::get<secrets::dapr::DaprSettings>(config->remote_secret_stores.at("dapr"));
    EXPECT_EQ(dapr.address, "http://127.0.0.1:3500");
    EXPECT_EQ(dapr.timeout_seconds, 3);
    // Local stores have no cache and three attempts unless configured.
    EXPECT_EQ(config->secret_stores[5].name, "files");
    EXPECT_EQ(config->secret_stores[5].access.cache_ttl, std::chrono::seconds(0));
    EXPECT_EQ(config->secret_stores[5].access.max_attempts, 3);
}

TEST(ConfigTest, RemoteSecretStoreErrorsNameTheKey) {
    EXPECT_EQ(error_of(with_stores("  v: {type: vault, address: http://vault:8200, auth: {token: "
                                   "{secret: files/t}}}\n")),
              "secret_stores.v.address: must start with https://");
    EXPECT_EQ(error_of(with_stores("  v: {type: vault, address: https://vault:8200}\n")),
              "secret_stores.v.auth: missing required key");
    EXPECT_EQ(error_of(with_stores(
                  "  v: {type: vault, address: https://vault:8200, auth: {method: approle}}\n")),
              "secret_stores.v.auth.role_id: missing required key (method approle)");
    EXPECT_EQ(
        error_of(with_stores("  v: {type: vault, address: https://v, auth: {method: ldap}}\n")),
        "secret_stores.v.auth.method: must be one of token, approle, kubernetes");
    EXPECT_EQ(
        error_of(with_stores("  v: {type: vault, address: https://v, auth: {token: s3cr3t}}\n")),
        "secret_stores.v.auth.token: literal secrets are not allowed; use {secret: "
        "\"STORE/PATH#KEY\"}");
    EXPECT_EQ(error_of(with_stores("  d: {type: dapr, dapr_store: x, region: y}\n")),
              "secret_stores.d.region: unknown key for type dapr");
    EXPECT_EQ(error_of(with_stores("  a: {type: aws_secrets_manager, auth: {}}\n")),
              "secret_stores.a.region: missing required key");
    EXPECT_EQ(error_of(with_stores("  d: {type: dapr, dapr_store: x, retry: {max_attempts: 0}}\n")),
              "secret_stores.d.retry.max_attempts: must be an integer between 1 and 10");
    EXPECT_EQ(error_of(with_stores("  d: {type: dapr, dapr_store: x, cache: {ttl_seconds: -1}}\n")),
              "secret_stores.d.cache.ttl_seconds: must be an integer between 0 and 86400");
    // A remote store's own credentials must come from a local store.
    EXPECT_EQ(error_of(with_stores(
                  "  d: {type: dapr, dapr_store: x}\n"
                  "  v: {type: vault, address: https://v, auth: {token: {secret: d/token}}}\n")),
              "secret_stores.v.auth.token: must name a file or env store (a store's own "
              "credentials cannot come from another remote store)");
    EXPECT_EQ(error_of(with_stores("  d: {type: dapr, dapr_store: x}\n") +
                       "egress:\n  proxy: {url: \"http://proxy:3128\", username: u, password: "
                       "{secret: d/proxy}}\n"),
              "egress.proxy.password: must name a file or env store (remote secret stores "
              "connect through the proxy)");
    EXPECT_EQ(error_of(with_stores(
                  "  v: {type: vault, address: https://v, auth: {token: {secret: nope/t}}}\n")),
              "secret_stores.v.auth.token: unknown secret store \"nope\"");
}

TEST(ConfigTest, YamlSyntaxErrorsHaveLineAndColumn) {
    const std::string message = error_of("agent:\n  id: [unclosed\n");
    EXPECT_EQ(message.rfind("line ", 0), 0u) << message;
    EXPECT_NE(message.find("column"), std::string::npos) << message;
    EXPECT_NE(message.find("YAML syntax error"), std::string::npos) << message;
}

TEST(ConfigTest, JobsSectionAndSigningKeys) {
    const std::string base = R"(agent:
  state_dir: /s
secret_stores:
  files: {type: file, path: /sec}
hub:
  url: https://hub
  client_id: c
  client_secret: {secret: "files/x"}
)";
    auto config = parse_config(R"(agent:
  state_dir: /s
hub:
  url: https://hub
  client_id: c
  client_secret: {secret: "files/x"}
  job_signing_public_key: /k0.pem
  job_signing_keys: [/k1.pem, /k2.pem]
secret_stores:
  files: {type: file, path: /sec}
sources:
  - {name: crm, connector: sqlite, path: /d/crm.db, sensitivity: pii}
jobs:
  policy_file: /etc/secure-agent/policy.yaml
  workers: 4
  heartbeat_interval_seconds: 5
  cancel_grace_seconds: 3
  clock_skew_seconds: 30
  watchdog_seconds: 120
  sandbox: {mode: strict, memory: 1GiB, cpu_seconds: 600, open_files: 64, file_size: 64MiB}
)");
    ASSERT_TRUE(config) << config.error().message;
    EXPECT_EQ(config->hub.job_signing_keys,
              (std::vector<std::string>{"/k0.pem", "/k1.pem", "/k2.pem"}));
    EXPECT_EQ(config->sources[0].sensitivity, "pii");
    EXPECT_EQ(config->jobs.policy_file, "/etc/secure-agent/policy.yaml");
    EXPECT_EQ(config->jobs.workers, 4);
    EXPECT_EQ(config->jobs.heartbeat_interval_seconds, 5);
    EXPECT_EQ(config->jobs.cancel_grace_seconds, 3);
    EXPECT_EQ(config->jobs.clock_skew_seconds, 30);
    EXPECT_EQ(config->jobs.watchdog_seconds, 120);
    EXPECT_TRUE(config->jobs.sandbox.strict);
    EXPECT_EQ(config->jobs.sandbox.memory_bytes, 1ll << 30);
    EXPECT_EQ(config->jobs.sandbox.cpu_seconds, 600);
    EXPECT_EQ(config->jobs.sandbox.open_files, 64);
    EXPECT_EQ(config->jobs.sandbox.file_size_bytes, 64ll << 20);

    const auto error = [&](const std::string& extra) {
        auto bad = parse_config(base + "  job_signing_public_key: /k.pem\n" + extra);
        return bad ? std::string("parsed") : bad.error().message;
    };
    EXPECT_EQ(error("jobs:\n  workers: 0\n").rfind("jobs.workers: ", 0), 0u);
    EXPECT_EQ(error("jobs:\n  sandbox: {mode: loose}\n"),
              "jobs.sandbox.mode: must be strict or best_effort");
    EXPECT_EQ(error("jobs:\n  sandbox: {memory: 1MiB}\n").rfind("jobs.sandbox.memory: ", 0), 0u);
    EXPECT_EQ(error("jobs:\n  worker_executable: bin/w\n"),
              "jobs.worker_executable: must be an absolute path");
    EXPECT_EQ(error("jobs:\n  workerz: 2\n"), "jobs.workerz: unknown key");
    EXPECT_EQ(error("sources:\n  - {name: a, connector: sqlite, path: /a, sensitivity: PII}\n"),
              "sources[0].sensitivity: must match [a-z0-9_-]{1,32}");
    auto no_key = parse_config(base);
    ASSERT_FALSE(no_key);
    EXPECT_EQ(no_key.error().message.rfind("hub.job_signing_public_key: missing required key", 0),
              0u);
}

TEST(ConfigTest, PostgresSources) {
    const std::string base = R"(agent:
  state_dir: /s
secret_stores:
  files: {type: file, path: /sec}
hub:
  url: https://hub
  client_id: c
  client_secret: {secret: "files/x"}
  job_signing_public_key: /k.pem
sources:
)";
    auto config = parse_config(base + R"(  - name: warehouse
    connector: postgres
    host: db.internal
    port: 6432
    database: analytics
    user: {secret: "files/pg#user"}
    password: {secret: "files/pg#password"}
    sslmode: verify-ca
    ca_file: /etc/secure-agent/db-ca.pem
    sensitivity: pii
  - {name: crm, connector: postgres, host: 10.0.0.5, database: crm,
     user: {secret: "files/crm#user"}, password: {secret: "files/crm#password"},
     statement_timeout: 1, lock_timeout: 2}
  - {name: shop, connector: mariadb, host: maria.internal,
     user: {secret: "files/shop#user"}, password: {secret: "files/shop#password"}}
)");
    ASSERT_TRUE(config) << config.error().message;
    const auto& pg = config->sources[0];
    EXPECT_EQ(pg.connector, "postgres");
    EXPECT_EQ(pg.host, "db.internal");
    EXPECT_EQ(pg.port, 6432);
    EXPECT_EQ(pg.database, "analytics");
    EXPECT_EQ(pg.user, (secrets::SecretRef{"files", "pg", "user"}));
    EXPECT_EQ(pg.password, (secrets::SecretRef{"files", "pg", "password"}));
    EXPECT_EQ(pg.sslmode, "verify-ca");
    EXPECT_EQ(pg.ca_file, "/etc/secure-agent/db-ca.pem");
    EXPECT_EQ(pg.sensitivity, "pii");
    EXPECT_EQ(pg.statement_timeout_seconds, 30);
    EXPECT_EQ(pg.lock_timeout_seconds, 5);
    EXPECT_EQ(config->sources[1].port, 5432);
    EXPECT_EQ(config->sources[1].sslmode, "verify-full");
    EXPECT_EQ(config->sources[1].statement_timeout_seconds, 1);
    EXPECT_EQ(config->sources[1].lock_timeout_seconds, 2);
    const auto& maria = config->sources[2];
    EXPECT_EQ(maria.connector, "mariadb");
    EXPECT_EQ(maria.port, 3306);
    EXPECT_EQ(maria.database, "");  // every database the account can see
    EXPECT_EQ(maria.sslmode, "verify-full");

    const auto error = [&](const std::string& source) {
        auto bad = parse_config(base + source);
        return bad ? std::string("parsed") : bad.error().message;
    };
    EXPECT_EQ(error("  - {name: a, connector: postgres, host: h, database: d, user: admin,\n"
                    "     password: {secret: \"files/p\"}}\n"),
              "sources[0].user: literal secrets are not allowed; use {secret: "
              "\"STORE/PATH#KEY\"}");
    EXPECT_EQ(error("  - {name: a, connector: postgres, host: h, database: d,\n"
                    "     user: {secret: \"files/u\"}}\n"),
              "sources[0].password: missing required key");
    EXPECT_EQ(error("  - {name: a, connector: postgres, host: h, database: d,\n"
                    "     user: {secret: \"vault/u\"}, password: {secret: \"files/p\"}}\n"),
              "sources[0].user: unknown secret store \"vault\"");
    EXPECT_EQ(error("  - {name: a, connector: postgres, path: /x.db, host: h, database: d,\n"
                    "     user: {secret: \"files/u\"}, password: {secret: \"files/p\"}}\n"),
              "sources[0].path: not a setting of the postgres connector (it takes: host, port, "
              "database, user, password, sslmode, ca_file, statement_timeout, lock_timeout)");
    EXPECT_EQ(
        error("  - {name: a, connector: postgres, host: h, database: d, statement_timeout: 0,\n"
              "     user: {secret: \"files/u\"}, password: {secret: \"files/p\"}}\n"),
        "sources[0].statement_timeout: must be an integer between 1 and 3600");
    EXPECT_EQ(error("  - {name: a, connector: mariadb, host: h,\n"
                    "     user: {secret: \"files/u\"}}\n"),
              "sources[0].password: missing required key");
    EXPECT_EQ(error("  - {name: a, connector: sqlite, path: /x.db, host: h}\n"),
              "sources[0].host: not a setting of the sqlite connector (it takes: path)");
    EXPECT_EQ(error("  - {name: a, connector: postgres, host: h, database: d, sslmode: prefer,\n"
                    "     user: {secret: \"files/u\"}, password: {secret: \"files/p\"}}\n"),
              "sources[0].sslmode: must be one of disable, require, verify-ca, verify-full");
    EXPECT_EQ(error("  - {name: a, connector: postgres, database: d,\n"
                    "     user: {secret: \"files/u\"}, password: {secret: \"files/p\"}}\n"),
              "sources[0].host: missing required key");
}

TEST(ConfigTest, NonMappingsAndEmptyInput) {
    EXPECT_EQ(error_of(""), "(root): config is empty");
    EXPECT_EQ(error_of("- a\n- b\n"), "(root): must be a mapping");
    EXPECT_EQ(
        error_of(variant("agent:\n  id: edge-1\n  state_dir: /var/lib/secure-agent", "agent: [1]")),
        "agent: must be a mapping");
    EXPECT_EQ(error_of(variant("client_id: cid_abc", "client_id: {a: b}")),
              "hub.client_id: must be a string");
}

TEST(ConfigTest, GarbageNeverThrows) {
    for (const char* text :
         {"\t\x01\x02", "{{{{", "agent: &a [*a]", "? [a]\n: b\n", "%YAML 9\n---"}) {
        auto config = parse_config(text);
        EXPECT_FALSE(config) << text;
    }
}

class ConfigFilesTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-config-" + crypto::random_token(8));
        fs::create_directories(dir_ / "secrets");
        auto key = crypto::Ed25519PrivateKey::generate();
        std::ofstream(dir_ / "job.pub.pem") << key.public_key().pem();
        std::ofstream(dir_ / "ca.pem")
            << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::ofstream(dir_ / "not-a-key.pem") << "hello";
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string config_text(const std::string& ca, const std::string& key,
                            const std::string& secrets) {
        return "agent: {state_dir: " + (dir_ / "state").string() + "}\n" +
               "hub:\n  url: https://h\n  ca_file: " + ca + "\n  job_signing_public_key: " + key +
               "\n  client_id: c\n  client_secret: {secret: \"files/s\"}\n" +
               "secret_stores:\n  files: {type: file, path: " + secrets + "}\n";
    }
    fs::path dir_;
};

TEST_F(ConfigFilesTest, LoadsFileAndChecksReferencedFiles) {
    const fs::path file = dir_ / "agent.yaml";
    const std::string text = config_text(
        (dir_ / "ca.pem").string(), (dir_ / "job.pub.pem").string(), (dir_ / "secrets").string());
    std::ofstream(file) << text;
    auto config = load_config(file.string());
    ASSERT_TRUE(config) << config.error().describe();
    EXPECT_EQ(config->fingerprint, crypto::sha256_hex(text));
    EXPECT_TRUE(check_files(*config));

    auto missing = load_config((dir_ / "nope.yaml").string());
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
}

TEST_F(ConfigFilesTest, ReportsMissingOrBadFilesByKey) {
    auto check = [&](const std::string& text) {
        auto config = parse_config(text);
        EXPECT_TRUE(config) << config.error().describe();
        auto status = check_files(*config);
        EXPECT_FALSE(status);
        return status ? std::string() : status.error().message;
    };
    const std::string ca = (dir_ / "ca.pem").string();
    const std::string key = (dir_ / "job.pub.pem").string();
    const std::string secrets = (dir_ / "secrets").string();
    EXPECT_EQ(
        check(config_text((dir_ / "no-ca.pem").string(), key, secrets)).rfind("hub.ca_file: ", 0),
        0u);
    EXPECT_EQ(check(config_text(key, key, secrets)).rfind("hub.ca_file: ", 0), 0u);
    EXPECT_EQ(check(config_text(ca, (dir_ / "no-key.pem").string(), secrets))
                  .rfind("hub.job_signing_keys: ", 0),
              0u);
    EXPECT_EQ(check(config_text(ca, (dir_ / "not-a-key.pem").string(), secrets))
                  .rfind("hub.job_signing_keys: ", 0),
              0u);
    EXPECT_EQ(check(config_text(ca, key, (dir_ / "no-secrets").string()))
                  .rfind("secret_stores.files.path: no such directory", 0),
              0u);
    const std::string base = config_text(ca, key, secrets);
    EXPECT_EQ(check(base + "audit:\n  tsa: {url: \"https://tsa\", ca_file: " + key + "}\n"),
              "audit.tsa.ca_file: " + key + " holds no PEM certificate");
    EXPECT_EQ(check(base + "audit:\n  siem: [{name: s, type: syslog, host: h, ca_file: " +
                    (dir_ / "none.pem").string() + "}]\n")
                  .rfind("audit.siem[0].ca_file: ", 0),
              0u);
    EXPECT_EQ(check(base + "audit:\n  siem: [{name: s, type: syslog, host: h, client_cert: " + key +
                    ", client_key: {secret: \"files/k\"}}]\n"),
              "audit.siem[0].client_cert: " + key + " holds no PEM certificate");
    EXPECT_EQ(check(base + "egress:\n  ca_file: " + key + "\n"),
              "egress.ca_file: " + key + " holds no PEM certificate");
    auto global_ca = parse_config(base + "egress:\n  ca_file: " + ca + "\n");
    ASSERT_TRUE(global_ca) << global_ca.error().describe();
    EXPECT_EQ(global_ca->egress.ca_file, ca);
    EXPECT_TRUE(check_files(*global_ca));
}

TEST(LoopbackTest, RecognisesLoopbackLiteralsOnly) {
    EXPECT_TRUE(is_loopback_literal("127.0.0.1"));
    EXPECT_TRUE(is_loopback_literal("127.255.0.9"));
    EXPECT_TRUE(is_loopback_literal("::1"));
    EXPECT_FALSE(is_loopback_literal("128.0.0.1"));
    EXPECT_FALSE(is_loopback_literal("0.0.0.0"));
    EXPECT_FALSE(is_loopback_literal("::"));
    EXPECT_FALSE(is_loopback_literal("::ffff:127.0.0.1"));
    EXPECT_FALSE(is_loopback_literal("localhost"));
    EXPECT_FALSE(is_loopback_literal(""));
}

}  // namespace
}  // namespace sa::agent::config
