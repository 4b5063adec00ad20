#include "agent/config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <initializer_list>
#include <set>

#include "agent/config/jobs_section.h"
#include "agent/config/secret_stores_section.h"
#include "agent/config/sources_section.h"
#include "agent/config/yaml_reader.h"
#include "agent/egress/policy.h"
#include "agent/egress/proxy.h"
#include "common/crypto/digest.h"
#include "common/crypto/ed25519.h"
#include "common/util/files.h"

namespace sa::agent::config {
namespace {

using yaml::ConfigError;
using yaml::error_at;
using yaml::is_name;
using yaml::join;
using yaml::list;
using yaml::Map;
using yaml::parse_bool;
using yaml::parse_byte_count;
using yaml::parse_int;
using yaml::parse_secret_field;
using yaml::quoted;

std::string parse_hub_url(const std::string& url, const std::string& path) {
    static constexpr std::string_view kScheme = "https://";
    if (url.rfind(kScheme, 0) != 0) error_at(path, "must start with https://");
    if (url.find_first_of(" \t\r\n") != std::string::npos)
        error_at(path, "must not contain spaces");
    if (url.find_first_of("?#") != std::string::npos) {
        error_at(path, "must not have a query or fragment");
    }
    const std::string rest = url.substr(kScheme.size());
    const std::string authority = rest.substr(0, rest.find('/'));
    if (authority.find('@') != std::string::npos) {
        error_at(path, "must not contain user credentials");
    }
    if (authority.empty() || authority.front() == ':') error_at(path, "has no host");
    std::string out = url;
    while (out.size() > kScheme.size() && out.back() == '/') out.pop_back();
    return out;
}

void parse_listen(const std::string& text, const std::string& path, HealthSection& out) {
    std::string host;
    std::string port_text;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            error_at(path, "must be HOST:PORT (IPv6 as [::1]:PORT)");
        }
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string::npos || text.find(':') != colon) {
            error_at(path, "must be HOST:PORT (IPv6 as [::1]:PORT)");
        }
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    if (!is_loopback_literal(host)) {
        error_at(path, "must be a loopback address (127.0.0.0/8 or ::1)");
    }
    int port = -1;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port < 0 || port > 65535) {
        error_at(path, "port must be an integer between 0 and 65535");
    }
    out.host = host;
    out.port = port;
}

// Host names are letters, digits, '-' and '.'; "*." may lead; IP literals pass.
bool valid_egress_host(const std::string& host) {
    if (egress::IpAddress::parse(host)) return true;
    std::string_view name = host;
    if (name.starts_with("*.")) name.remove_prefix(2);
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.')
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    });
}

std::string host_name() {
    char buf[HOST_NAME_MAX + 1] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return {};
    return buf;
}

Config parse_document(const YAML::Node& root) {
    Config config;
    if (!root.IsDefined() || root.IsNull()) error_at("", "config is empty");
    Map top(
        root, "",
        {"agent", "hub", "secret_stores", "sources", "jobs", "health", "audit", "egress", "log"});

    // agent
    if (!top.has("agent")) error_at("agent", "missing required key");
    {
        Map agent(top.get("agent"), "agent", {"id", "state_dir", "key"});
        if (auto id = agent.optional_string("id")) {
            if (!is_name(*id, 128)) error_at(agent.at("id"), "must match [A-Za-z0-9_.-]{1,128}");
            config.agent.id = *id;
        } else {
            config.agent.id = host_name();
            if (!is_name(config.agent.id, 128)) {
                error_at(agent.at("id"), "the host name " + quoted(config.agent.id) +
                                             " is not a valid agent id; set agent.id");
            }
        }
        config.agent.state_dir = agent.required_string("state_dir");
    }

    // secret_stores (before hub: references are checked against it)
    if (top.has("secret_stores")) {
        parse_secret_stores(top.get("secret_stores"), "secret_stores", config);
    }
    auto check_store = [&](const secrets::SecretRef& ref, const std::string& path) {
        const bool known = std::any_of(config.secret_stores.begin(), config.secret_stores.end(),
                                       [&](const auto& s) { return s.name == ref.store; });
        if (!known) error_at(path, "unknown secret store " + quoted(ref.store));
    };

    // agent.key (after secret_stores: the reference is checked against them)
    {
        Map agent(top.get("agent"), "agent", {"id", "state_dir", "key"});
        if (agent.has("key")) {
            config.agent.key = parse_secret_field(agent.get("key"), agent.at("key"));
            check_store(*config.agent.key, agent.at("key"));
        }
    }

    // hub
    if (!top.has("hub")) error_at("hub", "missing required key");
    {
        Map hub(top.get("hub"), "hub",
                {"url", "ca_file", "job_signing_public_key", "job_signing_keys", "client_id",
                 "client_secret", "private_key", "client_auth", "poll_wait_seconds"});
        config.hub.url = parse_hub_url(hub.required_string("url"), hub.at("url"));
        config.hub.ca_file = hub.optional_string("ca_file");
        if (auto single = hub.optional_string("job_signing_public_key")) {
            config.hub.job_signing_keys.push_back(*single);
        }
        if (hub.has("job_signing_keys")) {
            const YAML::Node keys = hub.get("job_signing_keys");
            if (!keys.IsSequence() || keys.size() == 0) {
                error_at(hub.at("job_signing_keys"), "must be a non-empty list of key files");
            }
            for (size_t i = 0; i < keys.size(); ++i) {
                config.hub.job_signing_keys.push_back(Map::string_value(
                    keys[i], hub.at("job_signing_keys") + "[" + std::to_string(i) + "]"));
            }
        }
        if (config.hub.job_signing_keys.empty()) {
            error_at(hub.at("job_signing_public_key"),
                     "missing required key (or job_signing_keys): the hub's job-signing public "
                     "key the agent pins");
        }
        config.hub.client_id = hub.required_string("client_id");
        if (auto method = hub.optional_string("client_auth")) {
            if (*method != "client_secret_basic" && *method != "client_secret_post" &&
                *method != "private_key_jwt") {
                error_at(hub.at("client_auth"),
                         "must be one of client_secret_basic, client_secret_post, "
                         "private_key_jwt");
            }
            config.hub.client_auth = *method;
        }
        // private_key_jwt signs with a private key; the secret methods send a
        // client secret. Exactly the credential the method uses is accepted.
        const bool key_auth = config.hub.client_auth == "private_key_jwt";
        const char* credential = key_auth ? "private_key" : "client_secret";
        const char* other = key_auth ? "client_secret" : "private_key";
        if (hub.has(other)) {
            error_at(hub.at(other), std::string("not used with client_auth ") +
                                        config.hub.client_auth + " (the credential is hub." +
                                        credential + ")");
        }
        if (!hub.has(credential)) error_at(hub.at(credential), "missing required key");
        config.hub.client_secret = parse_secret_field(hub.get(credential), hub.at(credential));
        check_store(config.hub.client_secret, hub.at(credential));
        if (hub.has("poll_wait_seconds")) {
            config.hub.poll_wait_seconds =
                parse_int(hub.get("poll_wait_seconds"), 0, 30, hub.at("poll_wait_seconds"));
        }
    }

    // sources
    if (top.has("sources")) parse_sources(top.get("sources"), "sources", config, check_store);

    if (top.has("jobs")) parse_jobs_section(top.get("jobs"), "jobs", config);

    // health
    if (top.has("health")) {
        Map health(top.get("health"), "health",
                   {"listen", "probe_interval_seconds", "probe_failure_threshold"});
        if (health.has("probe_interval_seconds")) {
            const int interval = parse_int(health.get("probe_interval_seconds"), 0, 3600,
                                           health.at("probe_interval_seconds"));
            if (interval != 0 && interval < 5) {
                error_at(health.at("probe_interval_seconds"),
                         "must be 0 (probes off) or between 5 and 3600");
            }
            config.health.probe_interval_seconds = interval;
        }
        if (health.has("probe_failure_threshold")) {
            config.health.probe_failure_threshold =
                parse_int(health.get("probe_failure_threshold"), 1, 100,
                          health.at("probe_failure_threshold"));
        }
        if (auto listen = health.optional_string("listen")) {
            parse_listen(*listen, health.at("listen"), config.health);
        }
    }

    // audit
    config.audit.dir = config.agent.state_dir + "/audit";
    if (top.has("audit")) {
        Map audit(top.get("audit"), "audit",
                  {"dir", "batch_interval_ms", "checkpoint_every_records", "checkpoint_interval_ms",
                   "on_failure", "retention_days", "tsa", "siem", "hmac_salt"});
        if (auto dir = audit.optional_string("dir")) config.audit.dir = *dir;
        if (audit.has("batch_interval_ms")) {
            config.audit.batch_interval_ms =
                parse_int(audit.get("batch_interval_ms"), 1, 1000, audit.at("batch_interval_ms"));
        }
        if (audit.has("checkpoint_every_records")) {
            config.audit.checkpoint_every_records =
                parse_int(audit.get("checkpoint_every_records"), 1, 1000000,
                          audit.at("checkpoint_every_records"));
        }
        if (audit.has("checkpoint_interval_ms")) {
            config.audit.checkpoint_interval_ms =
                parse_int(audit.get("checkpoint_interval_ms"), 100, 3600000,
                          audit.at("checkpoint_interval_ms"));
        }
        if (auto mode = audit.optional_string("on_failure")) {
            if (*mode == "fail_closed") {
                config.audit.on_failure = AuditOnFailure::fail_closed;
            } else if (*mode == "fail_open") {
                config.audit.on_failure = AuditOnFailure::fail_open;
            } else {
                error_at(audit.at("on_failure"), "must be one of fail_closed, fail_open");
            }
        }
        if (audit.has("retention_days")) {
            config.audit.retention_days =
                parse_int(audit.get("retention_days"), 30, 365, audit.at("retention_days"));
        }
        if (audit.has("tsa")) {
            Map tsa(audit.get("tsa"), audit.at("tsa"), {"url", "ca_file", "tls_ca_file"});
            TsaSection out;
            out.url = tsa.required_string("url");
            if (!out.url.starts_with("https://") || out.url.size() <= 8) {
                error_at(tsa.at("url"), "must be an https:// URL");
            }
            out.ca_file = tsa.required_string("ca_file");
            out.tls_ca_file = tsa.optional_string("tls_ca_file");
            config.audit.tsa = std::move(out);
        }
        if (audit.has("siem")) {
            const YAML::Node list = audit.get("siem");
            if (!list.IsSequence()) error_at(audit.at("siem"), "must be a list");
            std::set<std::string> names;
            for (size_t i = 0; i < list.size(); ++i) {
                const std::string path = audit.at("siem") + "[" + std::to_string(i) + "]";
                Map entry(list[i], path,
                          {"name", "type", "host", "port", "transport", "ca_file", "client_cert",
                           "client_key", "path", "max_backlog_mb"});
                SiemExport out;
                out.name = entry.required_string("name");
                if (!is_name(out.name, 64)) {
                    error_at(entry.at("name"), "must match [A-Za-z0-9_.-]{1,64}");
                }
                if (!names.insert(out.name).second) {
                    error_at(entry.at("name"), "duplicate export name " + quoted(out.name));
                }
                const std::string type = entry.required_string("type");
                if (type == "syslog") {
                    out.type = SiemExport::Type::syslog;
                    out.host = entry.required_string("host");
                    if (entry.has("port")) {
                        out.port = parse_int(entry.get("port"), 1, 65535, entry.at("port"));
                    }
                    if (auto transport = entry.optional_string("transport")) {
                        if (*transport == "tls") {
                            out.tls = true;
                        } else if (*transport == "tcp") {
                            out.tls = false;
                            if (!entry.has("port")) out.port = 514;
                        } else {
                            error_at(entry.at("transport"), "must be one of tls, tcp");
                        }
                    }
                    out.ca_file = entry.optional_string("ca_file");
                    if (out.ca_file && !out.tls) {
                        error_at(entry.at("ca_file"), "only applies to transport: tls");
                    }
                    // Mutual TLS: a certificate only with its key, and only over TLS.
                    out.client_cert = entry.optional_string("client_cert");
                    if (entry.has("client_key")) {
                        out.client_key =
                            parse_secret_field(entry.get("client_key"), entry.at("client_key"));
                        check_store(*out.client_key, entry.at("client_key"));
                    }
                    if ((out.client_cert || out.client_key) && !out.tls) {
                        error_at(entry.at(out.client_cert ? "client_cert" : "client_key"),
                                 "only applies to transport: tls");
                    }
                    if (out.client_cert && !out.client_key) {
                        error_at(entry.at("client_key"),
                                 "missing: client_cert needs its private key as "
                                 "{secret: \"STORE/PATH#KEY\"}");
                    }
                    if (out.client_key && !out.client_cert) {
                        error_at(entry.at("client_cert"),
                                 "missing: client_key needs its certificate chain (PEM file)");
                    }
                    if (entry.has("path")) error_at(entry.at("path"), "only applies to json_lines");
                } else if (type == "json_lines") {
                    out.type = SiemExport::Type::json_lines;
                    out.path = entry.required_string("path");
                    for (const char* key :
                         {"host", "port", "transport", "ca_file", "client_cert", "client_key"}) {
                        if (entry.has(key)) error_at(entry.at(key), "only applies to syslog");
                    }
                } else {
                    error_at(entry.at("type"), "must be one of syslog, json_lines");
                }
                if (entry.has("max_backlog_mb")) {
                    out.max_backlog_mb = parse_int(entry.get("max_backlog_mb"), 1, 65536,
                                                   entry.at("max_backlog_mb"));
                }
                config.audit.siem.push_back(std::move(out));
            }
        }
        if (audit.has("hmac_salt")) {
            config.audit.hmac_salt =
                parse_secret_field(audit.get("hmac_salt"), audit.at("hmac_salt"));
            check_store(*config.audit.hmac_salt, audit.at("hmac_salt"));
        }
    }

    // egress
    if (top.has("egress")) {
        Map egress(top.get("egress"), "egress",
                   {"min_tls", "allow", "deny", "ca_file", "proxy", "max_bytes_per_second",
                    "burst_bytes"});
        config.egress.ca_file = egress.optional_string("ca_file");
        constexpr int64_t kMinRate = 1024;
        constexpr int64_t kMaxRate = int64_t{1} << 40;
        if (egress.has("max_bytes_per_second")) {
            config.egress.max_bytes_per_second =
                parse_byte_count(egress.get("max_bytes_per_second"), kMinRate, kMaxRate,
                                 egress.at("max_bytes_per_second"));
        }
        if (egress.has("burst_bytes")) {
            config.egress.burst_bytes = parse_byte_count(egress.get("burst_bytes"), kMinRate,
                                                         kMaxRate, egress.at("burst_bytes"));
        }
        if (auto min_tls = egress.optional_string("min_tls")) {
            if (*min_tls != "1.2" && *min_tls != "1.3")
                error_at(egress.at("min_tls"), "must be \"1.2\" or \"1.3\"");
            config.egress.min_tls = *min_tls;
        }
        // A CIDR as a string or a list of them.
        const auto cidr_list = [](const YAML::Node& node, const std::string& path) {
            std::vector<std::string> out;
            if (node.IsScalar()) {
                out.push_back(Map::string_value(node, path));
            } else if (node.IsSequence()) {
                for (size_t i = 0; i < node.size(); ++i)
                    out.push_back(Map::string_value(node[i], path + "[" + std::to_string(i) + "]"));
            } else {
                error_at(path, "must be a CIDR or a list of them");
            }
            for (size_t i = 0; i < out.size(); ++i) {
                if (auto cidr = egress::Cidr::parse(out[i]); !cidr) {
                    error_at(node.IsScalar() ? path : path + "[" + std::to_string(i) + "]",
                             cidr.error().message);
                }
            }
            return out;
        };
        if (egress.has("allow")) {
            const YAML::Node list = egress.get("allow");
            if (!list.IsSequence()) error_at(egress.at("allow"), "must be a list");
            for (size_t i = 0; i < list.size(); ++i) {
                const std::string path = egress.at("allow") + "[" + std::to_string(i) + "]";
                Map entry(list[i], path,
                          {"host", "port", "cidr", "ca_file", "pins", "max_bytes_per_second",
                           "max_redirects", "plaintext_http"});
                EgressAllow out;
                out.host = entry.required_string("host");
                if (!valid_egress_host(out.host)) {
                    error_at(entry.at("host"),
                             "must be a host name, \"*.\" plus a domain, or an IP address");
                }
                if (entry.has("port"))
                    out.port = parse_int(entry.get("port"), 1, 65535, entry.at("port"));
                if (entry.has("cidr")) out.cidrs = cidr_list(entry.get("cidr"), entry.at("cidr"));
                out.ca_file = entry.optional_string("ca_file");
                if (entry.has("max_bytes_per_second")) {
                    out.max_bytes_per_second =
                        parse_byte_count(entry.get("max_bytes_per_second"), kMinRate, kMaxRate,
                                         entry.at("max_bytes_per_second"));
                }
                if (entry.has("max_redirects")) {
                    out.max_redirects =
                        parse_int(entry.get("max_redirects"), 0, 10, entry.at("max_redirects"));
                }
                if (entry.has("plaintext_http")) {
                    out.plaintext_http =
                        parse_bool(entry.get("plaintext_http"), entry.at("plaintext_http"));
                }
                if (entry.has("pins")) {
                    const YAML::Node pins = entry.get("pins");
                    if (!pins.IsSequence()) error_at(entry.at("pins"), "must be a list");
                    for (size_t j = 0; j < pins.size(); ++j) {
                        const std::string pin_path =
                            entry.at("pins") + "[" + std::to_string(j) + "]";
                        const std::string pin = Map::string_value(pins[j], pin_path);
                        if (auto raw = egress::parse_spki_pin(pin); !raw)
                            error_at(pin_path, raw.error().message);
                        out.pins.push_back(pin);
                    }
                }
                config.egress.allow.push_back(std::move(out));
            }
        }
        if (egress.has("deny"))
            config.egress.deny = cidr_list(egress.get("deny"), egress.at("deny"));
        if (egress.has("proxy")) {
            Map proxy(egress.get("proxy"), egress.at("proxy"),
                      {"url", "username", "password", "no_proxy"});
            EgressProxy out;
            out.url = proxy.required_string("url");
            // The URL is checked here so a typo is a config error, not a
            // connection failure; parse_proxy_url refuses credentials in it.
            if (auto parsed = egress::parse_proxy_url(out.url); !parsed) {
                error_at(proxy.at("url"), parsed.error().message);
            } else if (!parsed->username.empty()) {
                error_at(proxy.at("url"),
                         "must not contain a user name; use egress.proxy.username");
            } else if (parsed->tls) {
                error_at(proxy.at("url"), "https:// proxies are not supported; use http://");
            }
            if (auto username = proxy.optional_string("username")) out.username = *username;
            if (proxy.has("password")) {
                out.password = parse_secret_field(proxy.get("password"), proxy.at("password"));
                check_store(*out.password, proxy.at("password"));
                // Remote stores connect through the proxy: its password
                // must be readable before they exist.
                if (config.remote_secret_stores.contains(out.password->store)) {
                    error_at(proxy.at("password"),
                             "must name a file or env store (remote secret stores connect "
                             "through the proxy)");
                }
            }
            if (out.username.empty() && out.password)
                error_at(proxy.at("username"), "missing: a password needs a user name");
            if (!out.username.empty() && !out.password)
                error_at(proxy.at("password"), "missing: a user name needs a password");
            if (proxy.has("no_proxy")) {
                const YAML::Node list = proxy.get("no_proxy");
                if (list.IsScalar()) {
                    out.no_proxy = egress::parse_no_proxy(list.Scalar());
                } else if (list.IsSequence()) {
                    for (size_t i = 0; i < list.size(); ++i) {
                        const std::string text = Map::string_value(
                            list[i], proxy.at("no_proxy") + "[" + std::to_string(i) + "]");
                        for (auto& entry : egress::parse_no_proxy(text))
                            out.no_proxy.push_back(std::move(entry));
                    }
                } else {
                    error_at(proxy.at("no_proxy"), "must be a list or a comma-separated string");
                }
            }
            config.egress.proxy = std::move(out);
        }
    }

    // log
    if (top.has("log")) {
        Map log(top.get("log"), "log", {"level"});
        if (auto level = log.optional_string("level")) {
            if (*level == "debug") {
                config.log_level = LogLevel::debug;
            } else if (*level == "info") {
                config.log_level = LogLevel::info;
            } else if (*level == "warn") {
                config.log_level = LogLevel::warn;
            } else if (*level == "error") {
                config.log_level = LogLevel::error;
            } else {
                error_at(log.at("level"), "must be one of debug, info, warn, error");
            }
        }
    }
    return config;
}

}  // namespace

const SourceConfig* Config::find_source(std::string_view name) const {
    for (const auto& source : sources) {
        if (source.name == name) return &source;
    }
    return nullptr;
}

const std::vector<std::string>& supported_connectors() {
    static const std::vector<std::string> connectors{"sqlite", "postgres", "mariadb"};
    return connectors;
}

const char* to_string(LogLevel level) {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warn:
            return "warn";
        case LogLevel::error:
            return "error";
    }
    return "info";
}

const char* to_string(AuditOnFailure mode) {
    return mode == AuditOnFailure::fail_open ? "fail_open" : "fail_closed";
}

bool is_loopback_literal(std::string_view host) {
    const std::string text(host);
    in_addr v4{};
    if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    in6_addr v6{};
    if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return false;
}

Result<Config> parse_config(std::string_view yaml_text) {
    try {
        const YAML::Node root = YAML::Load(std::string(yaml_text));
        Config config = parse_document(root);
        config.fingerprint = crypto::sha256_hex(yaml_text);
        return config;
    } catch (const ConfigError& e) {
        return fail(ErrorCode::invalid_argument, e.message);
    } catch (const YAML::Exception& e) {
        if (e.mark.is_null()) return fail(ErrorCode::invalid_argument, "YAML error: " + e.msg);
        return fail(ErrorCode::invalid_argument,
                    "line " + std::to_string(e.mark.line + 1) + ", column " +
                        std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
    } catch (const std::exception& e) {
        return fail(ErrorCode::invalid_argument, std::string("cannot parse config: ") + e.what());
    }
}

Result<Config> load_config(const std::string& path) {
    auto text = util::read_file(path);
    if (!text) return std::unexpected(text.error());
    return parse_config(*text);
}

namespace {

Status check_pem_certificates(const std::string& file, const std::string& key) {
    auto ca = util::read_file(file);
    if (!ca) return fail(ErrorCode::invalid_argument, key + ": " + ca.error().message);
    if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return fail(ErrorCode::invalid_argument, key + ": " + file + " holds no PEM certificate");
    }
    return {};
}

}  // namespace

Status check_files(const Config& config) {
    if (config.hub.ca_file) {
        if (auto st = check_pem_certificates(*config.hub.ca_file, "hub.ca_file"); !st) return st;
    }
    if (config.audit.tsa) {
        if (auto st = check_pem_certificates(config.audit.tsa->ca_file, "audit.tsa.ca_file"); !st)
            return st;
        if (const auto& tls_ca = config.audit.tsa->tls_ca_file) {
            if (auto st = check_pem_certificates(*tls_ca, "audit.tsa.tls_ca_file"); !st) return st;
        }
    }
    if (config.egress.ca_file) {
        if (auto st = check_pem_certificates(*config.egress.ca_file, "egress.ca_file"); !st)
            return st;
    }
    for (size_t i = 0; i < config.egress.allow.size(); ++i) {
        const auto& entry = config.egress.allow[i];
        if (!entry.ca_file) continue;
        const std::string key = "egress.allow[" + std::to_string(i) + "].ca_file";
        if (auto st = check_pem_certificates(*entry.ca_file, key); !st) return st;
    }
    for (size_t i = 0; i < config.audit.siem.size(); ++i) {
        const auto& exporter = config.audit.siem[i];
        if (!exporter.ca_file) continue;
        const std::string key = "audit.siem[" + std::to_string(i) + "].ca_file";
        if (auto st = check_pem_certificates(*exporter.ca_file, key); !st) return st;
    }
    for (size_t i = 0; i < config.audit.siem.size(); ++i) {
        const auto& exporter = config.audit.siem[i];
        if (!exporter.client_cert) continue;
        const std::string key = "audit.siem[" + std::to_string(i) + "].client_cert";
        if (auto st = check_pem_certificates(*exporter.client_cert, key); !st) return st;
    }
    for (size_t i = 0; i < config.sources.size(); ++i) {
        const auto& source = config.sources[i];
        if (!source.ca_file) continue;
        const std::string key = "sources[" + std::to_string(i) + "].ca_file";
        if (auto st = check_pem_certificates(*source.ca_file, key); !st) return st;
    }
    for (const auto& file : config.hub.job_signing_keys) {
        auto key = crypto::Ed25519PublicKey::from_pem_file(file);
        if (!key) {
            return fail(ErrorCode::invalid_argument,
                        "hub.job_signing_keys: " + file + ": " + key.error().message);
        }
    }
    if (config.jobs.worker_executable &&
        ::access(config.jobs.worker_executable->c_str(), X_OK) != 0) {
        return fail(
            ErrorCode::invalid_argument,
            "jobs.worker_executable: not an executable file: " + *config.jobs.worker_executable);
    }
    for (const auto& store : config.secret_stores) {
        if (store.type != "file") continue;
        struct stat st {};
        if (::stat(store.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            return fail(ErrorCode::invalid_argument,
                        "secret_stores." + store.name + ".path: no such directory: " + store.path);
        }
    }
    return {};
}

}  // namespace sa::agent::config
