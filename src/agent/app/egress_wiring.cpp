#include "agent/app/egress_wiring.h"

#include "agent/app/secret_store_wiring.h"

#include <charconv>
#include <cstdlib>

namespace sa::agent::app {
namespace {

constexpr auto kAuditEvery = std::chrono::minutes(10);

Result<egress::AllowRule> rule_from(const config::EgressAllow& entry, const std::string& origin) {
    egress::AllowRule rule;
    rule.host = entry.host;
    rule.port = entry.port;
    rule.ca_file = entry.ca_file;
    rule.origin = origin;
    rule.max_bytes_per_second = entry.max_bytes_per_second;
    rule.max_redirects = entry.max_redirects;
    for (size_t i = 0; i < entry.cidrs.size(); ++i) {
        auto cidr = egress::Cidr::parse(entry.cidrs[i]);
        if (!cidr) {
            return fail(ErrorCode::invalid_argument,
                        origin + ".cidr[" + std::to_string(i) + "]: " + cidr.error().message);
        }
        rule.cidrs.push_back(*cidr);
    }
    for (size_t i = 0; i < entry.pins.size(); ++i) {
        auto raw = egress::parse_spki_pin(entry.pins[i]);
        if (!raw) {
            return fail(ErrorCode::invalid_argument,
                        origin + ".pins[" + std::to_string(i) + "]: " + raw.error().message);
        }
        rule.spki_pins.push_back(*raw);
    }
    rule.plaintext_http = entry.plaintext_http;
    if (rule.plaintext_http) {
        if (auto ok = egress::check_plaintext_rule(rule); !ok) return std::unexpected(ok.error());
    }
    return rule;
}

Result<std::pair<std::string, int>> host_port(std::string_view url, std::string_view scheme,
                                              int default_port) {
    if (!url.starts_with(scheme)) {
        return fail(ErrorCode::invalid_argument, "not an " + std::string(scheme) + " URL");
    }
    std::string_view rest = url.substr(scheme.size());
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (rest.find('@') != std::string_view::npos)
        return fail(ErrorCode::invalid_argument, "URL with user information");
    std::string_view host = rest;
    std::string_view port_text;
    if (rest.starts_with("[")) {
        const size_t close = rest.find(']');
        if (close == std::string_view::npos)
            return fail(ErrorCode::invalid_argument, "unterminated IPv6 literal");
        host = rest.substr(1, close - 1);
        std::string_view after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return fail(ErrorCode::invalid_argument, "bad authority");
            port_text = after.substr(1);
        }
    } else if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port_text = rest.substr(colon + 1);
    }
    if (host.empty()) return fail(ErrorCode::invalid_argument, "URL without a host");
    int port = default_port;
    if (!port_text.empty()) {
        const auto [end, ec] =
            std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
            port > 65535)
            return fail(ErrorCode::invalid_argument, "bad port in URL");
    }
    return std::pair<std::string, int>{std::string(host), port};
}

// The implicit rule for a plain http:// endpoint of a secret store (a cloud
// metadata service, a Dapr sidecar): only to loopback or link-local, by IP
// literal or by the one well-known name of each.
Result<egress::AllowRule> plaintext_rule(const std::string& url, const std::string& origin) {
    auto target = host_port(url, "http://", 80);
    if (!target) return fail(ErrorCode::invalid_argument, origin + ": " + target.error().message);
    egress::AllowRule rule;
    rule.host = target->first;
    rule.port = target->second;
    rule.origin = origin;
    rule.plaintext_http = true;
    if (rule.host == "metadata.google.internal") {
        rule.cidrs = {*egress::Cidr::parse("169.254.169.254/32")};
    } else if (rule.host == "localhost") {
        rule.cidrs = {*egress::Cidr::parse("127.0.0.0/8"), *egress::Cidr::parse("::1")};
    } else if (!egress::IpAddress::parse(rule.host)) {
        return fail(ErrorCode::invalid_argument,
                    origin +
                        ": plain http only to a loopback or link-local IP address (or add "
                        "an egress.allow entry with plaintext_http and a cidr for " +
                        rule.host + ")");
    }
    if (auto ok = egress::check_plaintext_rule(rule); !ok) return std::unexpected(ok.error());
    return rule;
}

}  // namespace

Result<std::pair<std::string, int>> https_host_port(std::string_view url) {
    return host_port(url, "https://", 443);
}

Result<egress::PolicyOptions> egress_policy_options(const config::Config& config,
                                                    const egress::ProxyConfig* proxy) {
    egress::PolicyOptions options;
    options.min_tls = config.egress.min_tls == "1.3" ? egress::TlsMin::v1_3 : egress::TlsMin::v1_2;
    options.max_bytes_per_second = config.egress.max_bytes_per_second;
    options.burst_bytes = config.egress.burst_bytes;
    for (size_t i = 0; i < config.egress.deny.size(); ++i) {
        auto cidr = egress::Cidr::parse(config.egress.deny[i]);
        if (!cidr) {
            return fail(ErrorCode::invalid_argument,
                        "egress.deny[" + std::to_string(i) + "]: " + cidr.error().message);
        }
        options.extra_deny.push_back(*cidr);
    }
    for (size_t i = 0; i < config.egress.allow.size(); ++i) {
        auto rule = rule_from(config.egress.allow[i], "egress.allow[" + std::to_string(i) + "]");
        if (!rule) return std::unexpected(rule.error());
        options.allow.push_back(std::move(*rule));
    }
    // The destinations this config names are meant to be reached.
    const auto add_url = [&](const std::string& url, const std::optional<std::string>& ca_file,
                             const std::string& origin) -> Status {
        auto host_port = https_host_port(url);
        if (!host_port) {
            return fail(ErrorCode::invalid_argument, origin + ": " + host_port.error().message);
        }
        egress::AllowRule rule;
        rule.host = host_port->first;
        rule.port = host_port->second;
        rule.ca_file = ca_file;
        rule.origin = origin;
        options.allow.push_back(std::move(rule));
        return {};
    };
    if (auto st = add_url(config.hub.url, config.hub.ca_file, "hub.url"); !st)
        return std::unexpected(st.error());
    if (config.audit.tsa) {
        if (auto st =
                add_url(config.audit.tsa->url, config.audit.tsa->tls_ca_file, "audit.tsa.url");
            !st)
            return std::unexpected(st.error());
    }
    for (size_t i = 0; i < config.audit.siem.size(); ++i) {
        const auto& target = config.audit.siem[i];
        if (target.type != config::SiemExport::Type::syslog) continue;
        egress::AllowRule rule;
        rule.host = target.host;
        rule.port = target.port;
        rule.ca_file = target.ca_file;
        rule.origin = "audit.siem[" + std::to_string(i) + "]";
        options.allow.push_back(std::move(rule));
    }
    // Database sources: the supervisor checks each job's connection here and
    // hands the worker the checked address (the worker never resolves).
    for (size_t i = 0; i < config.sources.size(); ++i) {
        const auto& source = config.sources[i];
        if (source.host.empty()) continue;
        egress::AllowRule rule;
        rule.host = source.host;
        rule.port = source.port;
        rule.origin = "sources[" + std::to_string(i) + "]";
        options.allow.push_back(std::move(rule));
    }
    for (const StoreEndpoint& endpoint : secret_store_endpoints(config)) {
        if (endpoint.url.starts_with("http://")) {
            auto rule = plaintext_rule(endpoint.url, endpoint.origin);
            if (!rule) return std::unexpected(rule.error());
            options.allow.push_back(std::move(*rule));
        } else if (auto st = add_url(endpoint.url, std::nullopt, endpoint.origin); !st) {
            return std::unexpected(st.error());
        }
    }
    // The global CA (a TLS-inspecting proxy's) for every destination without
    // its own; a rule's CA replaces the client's, so this reaches them all.
    if (config.egress.ca_file) {
        for (auto& rule : options.allow) {
            if (!rule.ca_file && !rule.plaintext_http) rule.ca_file = config.egress.ca_file;
        }
    }
    if (proxy != nullptr) {
        egress::AllowRule rule;
        rule.host = proxy->host;
        rule.port = proxy->port;
        rule.origin = config.egress.proxy ? "egress.proxy" : "HTTPS_PROXY";
        options.allow.push_back(std::move(rule));
    }
    return options;
}

Result<std::unique_ptr<AgentProxy>> AgentProxy::load(const config::Config& config,
                                                     const secrets::SecretStores& stores) {
    std::unique_ptr<AgentProxy> proxy(new AgentProxy());
    if (config.egress.proxy) {
        const config::EgressProxy& configured = *config.egress.proxy;
        auto parsed = egress::parse_proxy_url(configured.url);
        if (!parsed) {
            return fail(ErrorCode::invalid_argument, "egress.proxy.url: " + parsed.error().message);
        }
        proxy->config_ = std::move(*parsed);
        proxy->config_.username = configured.username;
        proxy->config_.no_proxy = configured.no_proxy;
        proxy->source_ = "egress.proxy";
        if (configured.password) {
            auto password = stores.read(*configured.password, {.purpose = "egress proxy password"});
            if (!password) return std::unexpected(password.error());
            proxy->password_ = std::move(*password);
            proxy->password_ref_ = configured.password;
        }
    } else {
        // The environment is the fallback. An unusable value is an error, not
        // a silent direct connection past the customer's proxy.
        const char* name = "HTTPS_PROXY";
        const char* value = std::getenv(name);
        if (value == nullptr || *value == '\0') {
            name = "https_proxy";
            value = std::getenv(name);
        }
        if (value == nullptr || *value == '\0') return std::unique_ptr<AgentProxy>();
        auto parsed = egress::parse_proxy_url(value);
        if (!parsed) {
            return fail(ErrorCode::invalid_argument,
                        std::string(name) + ": " + parsed.error().message);
        }
        if (!parsed->username.empty()) {
            return fail(ErrorCode::invalid_argument,
                        std::string(name) +
                            ": a proxy user name needs a password from the secret store; "
                            "configure egress.proxy instead");
        }
        auto from_environment = egress::proxy_from_environment();
        if (!from_environment) {
            return fail(ErrorCode::internal, std::string(name) + " is set but was not read");
        }
        proxy->config_ = std::move(*from_environment);
        proxy->source_ = name;
    }
    if (proxy->config_.tls) {
        return fail(ErrorCode::invalid_argument,
                    proxy->source_ + ": https:// proxies are not supported; use http://");
    }
    if (proxy->password_) proxy->config_.password = &*proxy->password_;
    return proxy;
}

NetworkLog::NetworkLog(const observe::Logger& logger, observe::Registry& registry, Auditor& auditor)
    : logger_(logger), registry_(registry), auditor_(auditor) {
    // The series exist from the start, so dashboards see zeros, not gaps.
    for (const char* decision : {"allowed", "denied"}) {
        registry_.counter("secure_agent_egress_connections_total",
                          "Outbound connection attempts by egress decision.",
                          {{"decision", decision}});
    }
    registry_.counter("secure_agent_egress_pin_mismatch_total",
                      "Connections refused because the server key matched no configured pin.");
}

bool NetworkLog::should_audit(const std::string& key) {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    auto [it, inserted] = last_audited_.try_emplace(key, now);
    if (inserted) return true;
    if (now - it->second < kAuditEvery) return false;
    it->second = now;
    return true;
}

void NetworkLog::record(const egress::ConnectionRecord& c) {
    observe::Fields fields{{"host", c.host},
                           {"port", c.port},
                           {"address", c.address},
                           {"decision", c.decision},
                           {"rule", c.rule},
                           {"tls_version", c.tls_version},
                           {"cipher", c.cipher},
                           {"pin", c.pin},
                           {"bytes_up", c.bytes_up},
                           {"bytes_down", c.bytes_down},
                           {"duration_ms", c.duration_ms}};
    if (!c.via_proxy.empty()) fields["via_proxy"] = c.via_proxy;
    if (!c.job_id.empty()) fields["job_id"] = c.job_id;
    if (!c.error.empty()) fields["error"] = c.error;
    if (c.decision == "denied" || c.pin == "mismatch") {
        logger_.warn("egress connection", fields);
    } else {
        logger_.info("egress connection", fields);
    }

    registry_
        .counter("secure_agent_egress_connections_total",
                 "Outbound connection attempts by egress decision.", {{"decision", c.decision}})
        .inc();
    registry_
        .counter("secure_agent_egress_bytes_total", "Application bytes sent and received.",
                 {{"direction", "up"}})
        .inc(static_cast<double>(c.bytes_up));
    registry_
        .counter("secure_agent_egress_bytes_total", "Application bytes sent and received.",
                 {{"direction", "down"}})
        .inc(static_cast<double>(c.bytes_down));
    registry_
        .histogram("secure_agent_egress_connection_seconds",
                   "Duration of outbound requests and connections.",
                   {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30})
        .observe(static_cast<double>(c.duration_ms) / 1000.0);

    const std::string destination = c.host + ":" + std::to_string(c.port);
    if (c.decision == "denied" && should_audit("denied " + destination)) {
        (void)auditor_.record("egress.denied",
                              {{"host", c.host}, {"port", c.port}, {"reason", c.rule}});
    }
    if (c.pin == "mismatch") {
        registry_
            .counter("secure_agent_egress_pin_mismatch_total",
                     "Connections refused because the server key matched no configured pin.")
            .inc();
        if (should_audit("pin " + destination)) {
            (void)auditor_.record(
                "egress.pin_mismatch",
                {{"host", c.host}, {"port", c.port}, {"address", c.address}, {"rule", c.rule}});
        }
    }
}

}  // namespace sa::agent::app
