#include "agent/app/doctor.h"

#include <cctype>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/app/audit_services.h"
#include "agent/app/commands.h"
#include "agent/app/egress_wiring.h"
#include "agent/app/job_runner.h"
#include "agent/app/secret_store_wiring.h"
#include "agent/auth/clock.h"
#include "agent/auth/token_client.h"
#include "agent/config/config.h"
#include "agent/control/hub_client.h"
#include "agent/egress/http_client.h"
#include "agent/egress/proxy.h"
#include "agent/egress/stream_client.h"
#include "agent/jobs/policy.h"
#include "agent/sandbox/probe.h"
#include "agent/secrets/secret_stores.h"
#include "agent/siem/client_certificate.h"
#include "build_info.h"
#include "common/protocol/protocol.h"
#include "common/sqlite/database.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

enum class Outcome { ok, fail, skip };

struct Line {
    std::string check;
    std::string target;
    Outcome outcome = Outcome::ok;
    std::string detail;
    std::string fix;
};

// Collects the checks; in text mode each line is printed as soon as it is
// known, so a slow timeout shows where the doctor is.
class Report final {
  public:
    Report(std::ostream& out, bool json) : out_(out), json_(json) {}

    void ok(std::string check, std::string target, std::string detail) {
        add({std::move(check), std::move(target), Outcome::ok, std::move(detail), {}});
    }
    void fail(std::string check, std::string target, std::string detail, std::string fix) {
        add({std::move(check), std::move(target), Outcome::fail, std::move(detail),
             std::move(fix)});
    }
    void skip(std::string check, std::string target, std::string why) {
        add({std::move(check), std::move(target), Outcome::skip, std::move(why), {}});
    }

    size_t failed() const { return count(Outcome::fail); }

    // Put in front of the details that follow (names the destination when
    // it is not the hub); "" to stop.
    void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }

    void finish() {
        if (json_) {
            nlohmann::json array = nlohmann::json::array();
            for (const Line& line : lines_) {
                nlohmann::json item{{"check", line.check},
                                    {"target", line.target},
                                    {"status", line.outcome == Outcome::ok     ? "ok"
                                               : line.outcome == Outcome::fail ? "fail"
                                                                               : "skip"},
                                    {"detail", line.detail}};
                if (!line.fix.empty()) item["fix"] = line.fix;
                array.push_back(std::move(item));
            }
            out_ << array.dump(2) << "\n";
            return;
        }
        const size_t ok = count(Outcome::ok);
        const size_t failed = count(Outcome::fail);
        const size_t skipped = count(Outcome::skip);
        if (failed == 0 && skipped == 0) {
            out_ << "doctor: all " << ok << " checks passed\n";
        } else {
            out_ << "doctor: " << failed << " failed, " << skipped << " skipped, " << ok << " ok\n";
        }
    }

  private:
    size_t count(Outcome outcome) const {
        size_t n = 0;
        for (const Line& line : lines_) n += line.outcome == outcome ? 1 : 0;
        return n;
    }

    void add(Line line) {
        line.detail = prefix_ + line.detail;
        if (!json_) {
            std::string name = line.check;
            if (name.size() < 10) name.resize(10, ' ');
            const char* tag = line.outcome == Outcome::ok     ? "[ ok ] "
                              : line.outcome == Outcome::fail ? "[FAIL] "
                                                              : "[skip] ";
            out_ << tag << name << " " << line.detail << "\n";
            if (!line.fix.empty()) out_ << "        fix: " << line.fix << "\n";
            out_.flush();
        }
        lines_.push_back(std::move(line));
    }

    std::ostream& out_;
    bool json_;
    std::vector<Line> lines_;
    std::string prefix_;
};

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

std::string host_port(const std::string& host, int port) {
    const bool v6 = contains(host, ":");
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// What the doctor connects to, and which config keys fix what.
struct Target {
    enum class Kind { https, syslog_tls, syslog_tcp };
    Kind kind = Kind::https;
    std::string origin;  // "hub.url", "audit.tsa.url", "audit.siem[0]", "--url"
    std::string url;     // https
    std::string host;
    int port = 0;
    std::optional<std::string> ca_file;  // syslog: the target's own CA
    std::string ca_key;                  // the key that sets this destination's CA
    // syslog_tls with mutual TLS: presented like the agent does, so a SIEM
    // that requires it does not fail the TLS check.
    std::optional<siem::ClientCertificate> client_certificate;
};

// The key to edit for a CA problem: the allowing rule's ca_file when an
// egress.allow entry matched, else the destination's own key.
std::string ca_key_for(const Target& target, const egress::AllowRule* rule) {
    if (rule != nullptr && rule->origin.starts_with("egress.allow")) {
        return rule->origin + ".ca_file (or " + target.ca_key + ")";
    }
    return target.ca_key;
}

// Fix for a failed EgressPolicy::check.
std::string policy_fix(const Error& error, const Target& target, const std::string& host,
                       int port) {
    const std::string& m = error.message;
    if (contains(m, "not in egress allowlist")) {
        return "add an egress.allow entry {host: " + host + ", port: " + std::to_string(port) +
               "} if the agent should reach it (docs/egress.md)";
    }
    if (contains(m, " resolves to ") && contains(m, ", which is ")) {
        // The denied addresses, to propose the narrowest cidr.
        std::string cidrs;
        bool metadata = false;
        static const std::regex denied(R"(([0-9A-Fa-f:.]+), which is )");
        for (auto it = std::sregex_iterator(m.begin(), m.end(), denied);
             it != std::sregex_iterator(); ++it) {
            const std::string address = (*it)[1];
            metadata = metadata || address == "169.254.169.254";
            cidrs +=
                (cidrs.empty() ? "" : ", ") + address + (contains(address, ":") ? "/128" : "/32");
        }
        std::string fix = "if " + host + " really lives at that address, add an egress.allow " +
                          "entry {host: " + host + ", port: " + std::to_string(port) + ", cidr: [" +
                          cidrs + "]}; otherwise fix its DNS record";
        if (metadata) {
            fix +=
                " (169.254.169.254 is the cloud metadata service: the name is almost "
                "certainly wrong)";
        }
        return fix;
    }
    if (contains(m, "outside the cidrs of")) {
        return "widen the cidr of the egress.allow entry for " + host +
               ", or fix the DNS record it resolves from";
    }
    if (error.code == ErrorCode::unavailable) {
        return "check the host name in " + target.origin +
               " and this machine's DNS "
               "(getent hosts " +
               host + "; /etc/resolv.conf)";
    }
    return "correct the host or port in " + target.origin;
}

// The TLS failure text from libcurl/OpenSSL, turned into the likely fix.
std::string tls_fix(const std::string& message, const Target& target, const egress::AllowRule* rule,
                    const std::string& min_tls) {
    std::string lower = message;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // Parts are given in lower case.
    const auto has = [&](std::string_view part) { return contains(lower, part); };
    if (has("certificate has expired") || has("certificate is not yet valid")) {
        return "the server certificate is outside its validity period: renew it, and check "
               "this machine's clock";
    }
    if (has("subject name") || has("does not match target host") || has("host name") ||
        has("hostname mismatch")) {
        return "the host in " + target.origin + " (" + target.host +
               ") must be in the server certificate's subject alternative names: use the name "
               "the certificate was issued for, or reissue the certificate with this name";
    }
    if (has("local issuer") || has("self-signed") || has("self signed") ||
        has("unable to get issuer") || has("certificate verify failed") || has("unknown ca") ||
        has("issuer certificate")) {
        return "the server certificate is not issued by a trusted CA: set " +
               ca_key_for(target, rule) +
               " to the PEM of the CA that issued it (the whole chain up to the root)";
    }
    if (has("ca file") || has("cafile") || has("error setting certificate")) {
        return "the CA file cannot be read or is not PEM: check " + ca_key_for(target, rule);
    }
    if (has("wrong version number") || has("packet length too long") ||
        has("record layer failure")) {
        return "the server at " + host_port(target.host, target.port) +
               " does not answer with TLS (plain HTTP?): use its HTTPS port in " + target.origin;
    }
    if (has("protocol version") || has("unsupported protocol") || has("no protocols available")) {
        return "the server does not speak TLS " + min_tls +
               " or newer (egress.min_tls): upgrade the server's TLS configuration; the "
               "agent never goes below TLS 1.2";
    }
    if (has("handshake failure") || has("no shared cipher") || has("cipher")) {
        return "the server offers no cipher suite the agent accepts: enable modern "
               "(ECDHE, AES-GCM or ChaCha20) suites on the server";
    }
    return "check the server's TLS setup (certificate, chain, TLS version) and " +
           ca_key_for(target, rule);
}

// Which step of a probe failed, from the egress client's error.
enum class FailedAt { none, proxy, tcp, tls, pins };

FailedAt classify(const Error& error, bool proxied) {
    const std::string& m = error.message;
    if (error.code == ErrorCode::integrity) return FailedAt::pins;
    if (proxied && contains(m, "egress: proxy ")) return FailedAt::proxy;
    if (contains(m, "TLS handshake with")) return FailedAt::tls;
    return FailedAt::tcp;
}

std::string proxy_fix(const Error& error, const std::string& proxy_source, const std::string& host,
                      int port) {
    const std::string& m = error.message;
    if (contains(m, "(HTTP 407)")) {
        return "the proxy refused the credentials: check egress.proxy.username and the "
               "secret referenced by egress.proxy.password";
    }
    if (contains(m, "refused CONNECT")) {
        return "the proxy's policy refuses CONNECT to " + host_port(host, port) +
               ": ask the proxy's admin to allow it (for squid: http_access and the "
               "SSL_ports/Safe_ports acls)";
    }
    if (contains(m, "not supported") || contains(m, "https://")) {
        return "use an http:// proxy URL in " + proxy_source +
               " (CONNECT keeps TLS end to end; https:// proxies are not supported)";
    }
    return "check the proxy's host and port in " + proxy_source +
           " and that this machine may connect to it";
}

std::string tcp_fix(const Error& error, const std::string& where, const std::string& address) {
    const std::string& m = error.message;
    const std::string at = address.empty() ? where : where + " (" + address + ")";
    if (contains(m, "refused") || contains(m, "Couldn't connect")) {
        return "nothing accepts connections at " + at +
               ": is the server running, and is the port in the URL right? (if it is, a "
               "firewall between this machine and the server rejects the connection)";
    }
    if (contains(m, "timed out") || contains(m, "Timeout")) {
        return "no answer from " + at +
               ": a firewall probably drops outbound connections from this machine to it";
    }
    if (contains(m, "unreachable")) {
        return "no route to " + at + ": check this machine's network and routing";
    }
    if (error.code == ErrorCode::permission_denied) {
        return "the egress policy refused the connection: see docs/egress.md";
    }
    return "check that " + at + " is reachable from this machine";
}

class Doctor final {
  public:
    Doctor(const config::Config& config, const secrets::SecretStores& stores,
           const egress::EgressPolicy& policy, const egress::ProxyConfig* proxy,
           std::string proxy_source, const DoctorOptions& options, Report& report)
        : config_(config),
          stores_(stores),
          policy_(policy),
          proxy_(proxy),
          proxy_source_(std::move(proxy_source)),
          options_(options),
          report_(report) {}

    // dns, proxy, tcp, tls, pins for one destination; true when all passed.
    bool check_destination(const Target& target) {
        report_.set_prefix(target.origin == "hub.url" ? "" : target.origin + ": ");
        const bool passed = check_destination_steps(target);
        report_.set_prefix("");
        return passed;
    }

  private:
    bool check_destination_steps(const Target& target) {
        const std::string where = host_port(target.host, target.port);
        const bool proxied =
            proxy_ != nullptr && !egress::bypasses_proxy(*proxy_, target.host, target.port);
        const std::string label = target.origin + " " + where;
        std::vector<std::string> steps{"dns"};
        if (proxied) steps.push_back("proxy");
        steps.push_back("tcp");
        if (target.kind != Target::Kind::syslog_tcp) steps.push_back("tls");

        // dns: the policy's decision, exactly as the clients will ask for it.
        auto checked = proxied ? policy_.check_via_proxy(target.host, target.port)
                               : policy_.check(target.host, target.port);
        if (!checked) {
            report_.fail("dns", label, error_text(checked.error()),
                         policy_fix(checked.error(), target, target.host, target.port));
            skip_after(label, steps, "dns");
            return false;
        }
        const egress::AllowRule* rule = checked->rule;
        const bool has_pins =
            rule != nullptr && !rule->spki_pins.empty() && target.kind != Target::Kind::syslog_tcp;
        if (has_pins) steps.push_back("pins");
        if (proxied && checked->addresses.empty()) {
            report_.ok("dns", label,
                       where + " allowed by " + rule->origin + " (resolved by the proxy)");
        } else {
            std::string addresses;
            for (const auto& a : checked->addresses) {
                addresses += (addresses.empty() ? "" : ", ") + a.text();
            }
            report_.ok("dns", label,
                       target.host + " -> " + addresses + " (allowed by " + rule->origin + ")");
        }

        // proxy: the proxy itself must be allowed and resolvable.
        std::string proxy_addresses;
        if (proxied) {
            auto proxy_checked = policy_.check(proxy_->host, proxy_->port);
            if (!proxy_checked) {
                Target proxy_target{
                    Target::Kind::https, proxy_source_, "", proxy_->host, proxy_->port, {}, ""};
                report_.fail(
                    "proxy", label,
                    "proxy " + proxy_->where() + " (" + proxy_source_ +
                        "): " + error_text(proxy_checked.error()),
                    policy_fix(proxy_checked.error(), proxy_target, proxy_->host, proxy_->port));
                skip_after(label, steps, "proxy");
                return false;
            }
            for (const auto& a : proxy_checked->addresses) {
                proxy_addresses += (proxy_addresses.empty() ? "" : ", ") + a.text();
            }
        }

        // tcp, tls, pins: one probe through the egress layer.
        egress::ConnectionRecord record;
        const Status probed = probe(target, record);
        FailedAt failed_at = FailedAt::none;
        if (!probed) failed_at = classify(probed.error(), proxied);

        if (proxied) {
            if (failed_at == FailedAt::proxy) {
                report_.fail("proxy", label,
                             "via " + proxy_->where() + " (" + proxy_source_ +
                                 "): " + error_text(probed.error()),
                             proxy_fix(probed.error(), proxy_source_, target.host, target.port));
                skip_after(label, steps, "proxy");
                return false;
            }
            report_.ok("proxy", label,
                       proxy_->where() + " -> " + proxy_addresses + " (" + proxy_source_ +
                           "), CONNECT to " + where + " accepted");
        }

        if (failed_at == FailedAt::tcp) {
            report_.fail("tcp", label, error_text(probed.error()),
                         tcp_fix(probed.error(), proxied ? proxy_->where() : where,
                                 proxied ? std::string() : record.address));
            skip_after(label, steps, "tcp");
            return false;
        }
        report_.ok(
            "tcp", label,
            (proxied ? where + " reached through the proxy tunnel"
                     : where + " reached at " +
                           (record.address.empty() ? std::string("its address") : record.address)) +
                (target.kind == Target::Kind::syslog_tcp ? " (plain TCP: transport tcp)" : ""));

        if (target.kind == Target::Kind::syslog_tcp) return true;  // plain TCP: no TLS

        if (failed_at == FailedAt::tls) {
            report_.fail("tls", label, error_text(probed.error()),
                         tls_fix(probed.error().message, target, rule, min_tls_text()));
            skip_after(label, steps, "tls");
            return false;
        }
        std::string tls_detail = where + " ";
        if (!record.tls_version.empty()) {
            tls_detail += record.tls_version + " " + record.cipher + ", ";
        }
        tls_detail += "certificate chain and host name verified";
        report_.ok("tls", label, tls_detail);

        if (!has_pins) return true;
        if (failed_at == FailedAt::pins) {
            // The egress layer does not hand out the certificate it refused,
            // so the pin actually seen cannot be shown here.
            report_.fail(
                "pins", label, error_text(probed.error()),
                "if the server's key was rotated on purpose, put its current SPKI pin in " +
                    rule->origin + ".pins (openssl s_client -connect " + where +
                    " </dev/null | openssl x509 -pubkey -noout | openssl pkey -pubin "
                    "-outform der | openssl dgst -sha256 -binary | base64); otherwise "
                    "something is intercepting the connection");
            return false;
        }
        report_.ok("pins", label, where + " server key matches a pin of " + rule->origin);
        return true;
    }

  public:
    // token and hub-api, after the hub passed its connection checks.
    void check_hub_credentials() {
        const std::string label = "hub.url " + config_.hub.url;
        auto http = make_client();
        if (!http) {
            report_.fail("token", label, error_text(http.error()), "internal error; report it");
            report_.skip("hub-api", label, "skipped: no token");
            return;
        }
        const auth::SystemClock clock;
        auth::TokenClient::Options token_options = hub_token_options(config_);
        token_options.timeout = options_.request_timeout;
        auth::TokenClient tokens(*http, stores_.reader("hub client secret"), token_options, clock);
        auto token = tokens.access_token();
        const std::string secret_ref = config_.hub.client_secret.to_string();
        if (!token) {
            const Error& error = token.error();
            std::string fix;
            if (error.code == ErrorCode::unauthenticated) {
                fix = "the hub rejected client_id " + config_.hub.client_id +
                      " with the secret at " + secret_ref +
                      ": check hub.client_id and the value stored at that reference "
                      "(hub.client_secret); the hub's admin can tell you the app's client id "
                      "and issue a new secret";
            } else if (contains(error.message, "cannot read the hub client secret")) {
                fix = "hub.client_secret refers to " + secret_ref +
                      ": create that secret in store \"" + config_.hub.client_secret.store +
                      "\" and make it readable by the agent's user";
            } else {
                fix =
                    "the hub did not issue a token: check the hub's log and that hub.url "
                    "points at agent-hub";
            }
            report_.fail("token", label, error_text(error), fix);
            report_.skip("hub-api", label, "skipped: no token");
            return;
        }
        report_.ok("token", label,
                   "client_id " + config_.hub.client_id +
                       ": access token issued (secret read "
                       "from " +
                       secret_ref + ")");
        // An authenticated call without side effects (never a lease: it
        // would take a job).
        control::HubClient hub(*http, tokens,
                               {.hub_url = config_.hub.url,
                                .agent_id = config_.agent.id,
                                .request_timeout = options_.request_timeout});
        const int64_t before = util::unix_millis();
        auto ping = hub.ping();
        const int64_t after = util::unix_millis();
        if (!ping) {
            const Error& error = ping.error();
            std::string fix;
            if (error.code == ErrorCode::not_found) {
                fix = "this agent-hub has no " + std::string(protocol::kPingPath) +
                      ": upgrade agent-hub to the agent's protocol version (" +
                      build::kProtocolVersion + ")";
            } else if (error.code == ErrorCode::unauthenticated ||
                       error.code == ErrorCode::permission_denied) {
                fix = "the hub issued a token but refused it: check that the app of client_id " +
                      config_.hub.client_id + " still exists and that the hub's clock is right";
            } else if (error.code == ErrorCode::invalid_argument) {
                fix = "check agent.id (" + config_.agent.id +
                      ") and that hub.url points at agent-hub";
            } else {
                fix = "the hub failed the call: check the hub's log";
            }
            report_.fail("hub-api", label,
                         "GET " + std::string(protocol::kPingPath) + ": " + error_text(error), fix);
            return;
        }
        // The hub's clock against ours at the middle of the round trip.
        const int64_t middle_s = (before + after) / 2000;
        const int64_t skew = ping->server_time - middle_s;
        const std::string timing = "ping answered in " + std::to_string(ping->rtt.count()) +
                                   " ms, clock offset " + std::to_string(skew) + " s";
        if (skew > protocol::kClockLeewaySeconds || -skew > protocol::kClockLeewaySeconds) {
            report_.fail("hub-api", label, timing,
                         "this machine's clock and the hub's differ by more than " +
                             std::to_string(protocol::kClockLeewaySeconds) +
                             " s, so signed jobs would be refused: synchronise both clocks "
                             "(NTP)");
            return;
        }
        report_.ok("hub-api", label, timing);
    }

    void check_sources() {
        if (config_.sources.empty()) {
            report_.ok("source", "sources", "no sources configured");
            return;
        }
        for (size_t i = 0; i < config_.sources.size(); ++i) {
            check_source(config_.sources[i], "sources[" + std::to_string(i) + "]");
        }
    }

  private:
    static std::string error_text(const Error& error) { return error.message; }

    std::string min_tls_text() const {
        return policy_.min_tls() == egress::TlsMin::v1_3 ? "1.3" : "1.2";
    }

    // Skips the checks after `failed` among `steps` (the ones that apply
    // to this destination, in order).
    void skip_after(const std::string& label, const std::vector<std::string>& steps,
                    const std::string& failed) {
        const std::string why = "skipped: the " + failed + " check failed";
        bool after = false;
        for (const std::string& step : steps) {
            if (after) report_.skip(step, label, why);
            if (step == failed) after = true;
        }
    }

    // The agent's client settings (hub CA, policy, proxy).
    Result<egress::HttpClient> make_client(
        std::function<void(const egress::ConnectionRecord&)> on_connection = nullptr) {
        egress::HttpClient::Options http_options;
        http_options.ca_file = config_.hub.ca_file;
        http_options.connect_timeout = options_.connect_timeout;
        http_options.user_agent = std::string("secure-agent/") + build::kVersion + " doctor";
        http_options.policy = &policy_;
        http_options.proxy = proxy_;
        http_options.on_connection = std::move(on_connection);
        return egress::HttpClient::create(std::move(http_options));
    }

    // A GET of the URL (any HTTP answer proves TCP and TLS), or a stream
    // connection for syslog; record receives the connection's record.
    Status probe(const Target& target, egress::ConnectionRecord& record) {
        const auto capture = [&record](const egress::ConnectionRecord& r) { record = r; };
        if (target.kind == Target::Kind::https) {
            auto http = make_client(capture);
            if (!http) return std::unexpected(http.error());
            egress::HttpRequest request;
            request.url = target.url;
            request.timeout = options_.request_timeout;
            auto response = http->send(request);
            if (!response) return std::unexpected(response.error());
            return {};
        }
        egress::StreamConnection::Options stream_options;
        stream_options.host = target.host;
        stream_options.port = target.port;
        stream_options.tls = target.kind == Target::Kind::syslog_tls;
        stream_options.ca_file = target.ca_file;
        stream_options.connect_timeout = options_.connect_timeout;
        stream_options.policy = &policy_;
        stream_options.proxy = proxy_;
        stream_options.on_connection = capture;
        // The client certificate, when its key can be read and matches; a
        // key problem is the secret check's to report, not a TLS failure.
        crypto::EvpPkeyPtr client_key;
        if (target.client_certificate && stream_options.tls) {
            const auto& cert = *target.client_certificate;
            auto key = siem::read_client_key(cert);
            if (key && siem::check_client_certificate(cert.cert_file, key->get())) {
                client_key = std::move(*key);
                stream_options.configure_tls = [&cert, &client_key](ssl_ctx_st* ctx) {
                    return siem::install_client_certificate(ctx, cert.cert_file, client_key.get());
                };
            }
        }
        auto connection = egress::StreamConnection::open(stream_options);
        if (!connection) return std::unexpected(connection.error());
        // The record (with the TLS details) arrives when the connection closes.
        { auto closing = std::move(*connection); }
        return {};
    }

    // Extension point: a connector that reaches its database over the
    // network goes through the policy like the destinations above (build a
    // Target for its host:port and call check_destination, then the
    // connector's own login check). sqlite is a local file.
    void check_source(const config::SourceConfig& source, const std::string& key) {
        const std::string label = key + " " + source.name;
        if (!source.host.empty()) {
            // A database: the supervisor checks its connection against the
            // egress policy before each job, exactly like this. The login and
            // catalog checks run inside the sandboxed worker: the hub's
            // preflight operation.
            const std::string where = source.host + ":" + std::to_string(source.port);
            auto destination = policy_.check(source.host, source.port);
            if (!destination) {
                report_.fail(
                    "source", label,
                    source.name + " (" + source.connector + "): " + destination.error().message,
                    "allow " + where +
                        " with an egress.allow entry (a name that resolves to a private or "
                        "loopback address also needs its cidr)");
                return;
            }
            report_.ok("source", label,
                       source.name + " (" + source.connector + "): " + where + " -> " +
                           destination->addresses.front().text() + " allowed by " +
                           (destination->rule != nullptr ? destination->rule->origin : "policy") +
                           "; for login and catalog access run `agent-hub job create --operation "
                           "preflight --wait`");
            return;
        }
        if (source.connector != "sqlite") {
            report_.skip("source", label,
                         "no preflight for connector \"" + source.connector + "\" yet");
            return;
        }
        std::error_code ec;
        const auto status = std::filesystem::status(source.path, ec);
        if (!std::filesystem::exists(status)) {
            report_.fail("source", label,
                         source.name + " (sqlite): " + source.path + " does not exist",
                         key + ".path: point it at the SQLite database file");
            return;
        }
        if (!std::filesystem::is_regular_file(status)) {
            report_.fail("source", label,
                         source.name + " (sqlite): " + source.path + " is not a regular file",
                         key + ".path: point it at the SQLite database file");
            return;
        }
        auto db = sqlite::Database::open(source.path, sqlite::Database::Mode::read_only);
        Status read = db ? Status{} : Status{std::unexpected(db.error())};
        if (db) {
            // Opening is lazy: reading the schema proves the file is a
            // database the agent's user can read.
            auto statement = db->prepare("SELECT count(*) FROM sqlite_master");
            if (!statement) {
                read = std::unexpected(statement.error());
            } else if (auto step = statement->step(); !step) {
                read = std::unexpected(step.error());
            }
        }
        if (!read) {
            report_.fail("source", label,
                         source.name + " (sqlite): " + source.path +
                             " cannot be read: " + read.error().message,
                         "make " + source.path +
                             " (and its directory) readable by the agent's user, and check that "
                             "it is a SQLite database (" +
                             key + ".path)");
            return;
        }
        report_.ok("source", label, source.name + " (sqlite): " + source.path + " opens read-only");
    }

    const config::Config& config_;
    const secrets::SecretStores& stores_;
    const egress::EgressPolicy& policy_;
    const egress::ProxyConfig* proxy_;
    std::string proxy_source_;
    const DoctorOptions& options_;
    Report& report_;
};

// "hub.client_secret: literal secrets ..." -> "hub.client_secret".
std::string config_fix(const std::string& message, const std::string& path) {
    if (contains(message, path)) {
        return "--config must name the agent's YAML config file, readable by this user";
    }
    if (message.starts_with("line ")) {
        return "fix the YAML syntax at that position in " + path;
    }
    const size_t colon = message.find(": ");
    const std::string key = colon == std::string::npos ? "" : message.substr(0, colon);
    const bool looks_like_key = !key.empty() && key.find_first_of(" /") == std::string::npos;
    if (looks_like_key) {
        return "change " + key + " in " + path + " (see the configuration reference in the README)";
    }
    return "check " + path + " (see the configuration reference in the README)";
}

}  // namespace

int run_doctor(const std::string& config_path, std::ostream& out, DoctorOptions options) {
    Report report(out, options.json);
    const auto config_failed = [&](const std::string& message, const std::string& fix) {
        report.fail("config", config_path, message, fix);
        report.finish();
        return kExitConfig;
    };

    // 1. config
    auto loaded = config::load_config(config_path);
    if (!loaded) {
        return config_failed(loaded.error().message,
                             config_fix(loaded.error().message, config_path));
    }
    if (auto files = config::check_files(*loaded); !files) {
        return config_failed(files.error().message, config_fix(files.error().message, config_path));
    }
    const config::Config& config = *loaded;
    // The secret stores as the agent builds them: local ones first (the
    // proxy password comes from one), remote ones under the policy.
    secrets::SecretStores stores;
    add_local_secret_stores(stores, config);
    // The proxy the agent would use (egress.proxy, else HTTPS_PROXY).
    auto agent_proxy = AgentProxy::load(config, stores);
    if (!agent_proxy) {
        return config_failed(
            "proxy: " + agent_proxy.error().message,
            "check egress.proxy (url, username, and that the secret in egress.proxy.password "
            "exists), or the HTTPS_PROXY variable when the config has no proxy");
    }
    const egress::ProxyConfig* proxy = *agent_proxy ? &(*agent_proxy)->config() : nullptr;
    const std::string proxy_source = *agent_proxy ? (*agent_proxy)->source() : std::string();
    auto policy_options = egress_policy_options(config, proxy);
    if (!policy_options) {
        return config_failed(policy_options.error().message,
                             config_fix(policy_options.error().message, config_path));
    }
    const egress::EgressPolicy policy(std::move(*policy_options), options.resolver);
    {
        egress::HttpClient::Options store_http;
        store_http.connect_timeout = options.connect_timeout;
        store_http.user_agent = std::string("secure-agent/") + build::kVersion + " doctor";
        store_http.policy = &policy;
        store_http.proxy = proxy;
        if (auto added = add_remote_secret_stores(stores, config,
                                                  http_store_transports(std::move(store_http)));
            !added) {
            return config_failed(added.error().message,
                                 config_fix(added.error().message, config_path));
        }
    }
    report.ok("config", config_path,
              config_path + " loaded (agent " + config.agent.id + ", fingerprint " +
                  config.fingerprint.substr(0, 12) + ", " +
                  (proxy != nullptr ? "proxy " + proxy->where() + " from " + proxy_source
                                    : std::string("no proxy: direct connections")) +
                  ")");

    // The job policy and the worker sandbox, before any connection (the
    // sandbox probe forks: best done while this process has one thread).
    if (!config.jobs.policy_file) {
        report.ok("policy", "jobs.policy_file",
                  "none: the built-in policy allows every operation on every configured source");
    } else if (auto job_policy = jobs::load_policy_file(*config.jobs.policy_file); !job_policy) {
        report.fail("policy", "jobs.policy_file", job_policy.error().message,
                    "fix the policy file (docs/jobs.md, \"The policy file\"); the agent does not "
                    "start with it");
    } else {
        report.ok("policy", "jobs.policy_file",
                  *config.jobs.policy_file + ": " + std::to_string(job_policy->rules.size()) +
                      " rules, sha256 " + job_policy->sha256_hex.substr(0, 12));
    }
    if (auto layers = sandbox::probe(worker_sandbox_spec(config)); !layers) {
        report.fail("sandbox", "jobs.sandbox", layers.error().message,
                    "job workers cannot be sandboxed on this host");
    } else if (const std::string missing = sandbox::describe_missing(*layers); missing.empty()) {
        report.ok("sandbox", "jobs.sandbox",
                  "every layer available (Landlock ABI " +
                      std::to_string(sandbox::landlock_abi_version()) + ")");
    } else if (config.jobs.sandbox.strict) {
        report.fail("sandbox", "jobs.sandbox", "mode strict, but this host lacks: " + missing,
                    "run on a kernel with Landlock (5.13+; TCP rules need 6.7+) and seccomp, or "
                    "set jobs.sandbox.mode: best_effort to run jobs without the missing layers");
    } else {
        report.ok("sandbox", "jobs.sandbox", "best_effort: job workers run without " + missing);
    }

    Doctor doctor(config, stores, policy, proxy, proxy_source, options, report);

    // 2-8. The hub: connection, then credentials.
    auto hub = https_host_port(config.hub.url);
    if (!hub) {
        return config_failed("hub.url: " + hub.error().message,
                             config_fix("hub.url: ", config_path));
    }
    Target hub_target{Target::Kind::https, "hub.url",          config.hub.url, hub->first,
                      hub->second,         config.hub.ca_file, "hub.ca_file"};
    if (doctor.check_destination(hub_target)) {
        doctor.check_hub_credentials();
    } else {
        const std::string label = "hub.url " + config.hub.url;
        report.skip("token", label, "skipped: the hub cannot be reached");
        report.skip("hub-api", label, "skipped: the hub cannot be reached");
    }

    // The other destinations this config names.
    if (config.audit.tsa) {
        auto tsa = https_host_port(config.audit.tsa->url);
        if (tsa) {
            doctor.check_destination({Target::Kind::https, "audit.tsa.url", config.audit.tsa->url,
                                      tsa->first, tsa->second, config.audit.tsa->tls_ca_file,
                                      "audit.tsa.tls_ca_file"});
        }
    }
    for (size_t i = 0; i < config.audit.siem.size(); ++i) {
        const auto& siem = config.audit.siem[i];
        if (siem.type != config::SiemExport::Type::syslog) continue;
        const std::string key = "audit.siem[" + std::to_string(i) + "]";
        Target target{siem.tls ? Target::Kind::syslog_tls : Target::Kind::syslog_tcp,
                      key,
                      "",
                      siem.host,
                      siem.port,
                      siem.ca_file,
                      key + ".ca_file"};
        if (siem.client_cert && siem.client_key) {
            target.client_certificate =
                siem::ClientCertificate{.cert_file = *siem.client_cert,
                                        .key = *siem.client_key,
                                        .reader = stores.reader("siem client key " + siem.name)};
        }
        doctor.check_destination(target);
    }
    // The SIEM client keys: the reference resolves and the key belongs to
    // the certificate (read as the agent reads it, for each connection).
    for (size_t i = 0; i < config.audit.siem.size(); ++i) {
        const auto& siem = config.audit.siem[i];
        if (!siem.client_key || !siem.client_cert) continue;
        const std::string key = "audit.siem[" + std::to_string(i) + "].client_key";
        const siem::ClientCertificate cert{.cert_file = *siem.client_cert,
                                           .key = *siem.client_key,
                                           .reader = stores.reader("siem client key " + siem.name)};
        if (auto checked = siem::check_client_certificate(cert); !checked) {
            const Error& error = checked.error();
            std::string fix;
            if (error.code == ErrorCode::not_found) {
                fix = "create the secret " + siem.client_key->to_string() + " or fix " + key;
            } else if (error.code == ErrorCode::invalid_argument) {
                fix = "store the unencrypted PEM private key of the certificate in " +
                      *siem.client_cert + " at " + siem.client_key->to_string() +
                      ", or point audit.siem[" + std::to_string(i) +
                      "].client_cert at that key's certificate";
            } else {
                fix = "check that the secret store " + siem.client_key->store +
                      " is reachable and lets the agent read " + siem.client_key->to_string();
            }
            report.fail("secret", key, error.message, fix);
        } else {
            report.ok("secret", key,
                      siem.client_key->to_string() + " is the private key of " + *siem.client_cert);
        }
    }
    // The audit salt from a secret store: it resolves, follows the rules and
    // is the salt the audit directory's HMACs were made with.
    if (config.audit.hmac_salt) {
        const std::string ref = config.audit.hmac_salt->to_string();
        auto salt = load_configured_salt(config, stores);
        Status bound = salt ? Status{} : Status{std::unexpected(salt.error())};
        if (salt && std::filesystem::exists(config.audit.dir)) {
            bound = audit::bind_salt_source(config.audit.dir, **salt, /*record=*/false);
        }
        if (!bound) {
            const Error& error = bound.error();
            std::string fix;
            if (error.code == ErrorCode::conflict) {
                fix = "restore the salt (source) " + config.audit.dir +
                      " was written with, or set audit.dir to a new directory";
            } else if (error.code == ErrorCode::invalid_argument) {
                fix = "store standard base64 text of at least 32 random bytes at " + ref +
                      " (e.g. `openssl rand -base64 32`)";
            } else if (error.code == ErrorCode::not_found) {
                fix = "create the secret " + ref + " or fix audit.hmac_salt";
            } else {
                fix = "check that the secret store " + config.audit.hmac_salt->store +
                      " is reachable and lets the agent read " + ref;
            }
            report.fail("secret", "audit.hmac_salt", error.message, fix);
        } else {
            report.ok("secret", "audit.hmac_salt",
                      ref + " holds a usable salt for " + config.audit.dir);
        }
    }
    for (const std::string& url : options.extra_urls) {
        auto extra = https_host_port(url);
        if (!extra) {
            report.fail("dns", "--url " + url, url + ": " + extra.error().message,
                        "give an https://host[:port] URL");
            continue;
        }
        doctor.check_destination({Target::Kind::https, "--url " + url, url, extra->first,
                                  extra->second, std::nullopt, "egress.allow[].ca_file"});
    }

    // 9. sources
    doctor.check_sources();

    report.finish();
    return report.failed() == 0 ? kExitOk : kExitFailure;
}

}  // namespace sa::agent::app
