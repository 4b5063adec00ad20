#pragma once
// The agent's egress policy and network log, built from its config.
//
// Policy: the `egress.allow` entries first (so an entry for the hub can add
// pins), then the destinations the config itself names, allowed implicitly
// with their CA files: hub.url, audit.tsa.url, each syslog target of
// audit.siem, and the endpoints of the remote secret stores
// (secret_store_endpoints; a plain http:// one - a metadata service, a Dapr
// sidecar - only to a loopback/link-local IP literal, metadata.google.internal
// or localhost, with plaintext_http). Everything else is denied before a
// packet is sent. Note the
// policy's deny ranges: a destination named by host that resolves to a
// private address needs an egress.allow entry with a cidr (docs/egress.md).
//
// NetworkLog: one JSON log line per connection ("egress connection": host,
// port, address, decision and rule, TLS version and cipher, pin result,
// bytes, duration), metrics, and audit records for denials and pin
// mismatches (at most one per destination and kind every 10 minutes, so a
// retrying client cannot flood the audit log).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "agent/app/auditor.h"
#include "agent/config/config.h"
#include "agent/egress/policy.h"
#include "agent/egress/proxy.h"
#include "agent/observe/logger.h"
#include "agent/observe/metrics.h"
#include "agent/secrets/secret_stores.h"
#include "common/result.h"

namespace sa::agent::app {

// Host (brackets stripped) and port (default 443) of an https:// URL.
// invalid_argument for anything else.
Result<std::pair<std::string, int>> https_host_port(std::string_view url);

// Errors: invalid_argument naming the config key (a pin or CIDR that does not
// parse; config validation normally catches these first). With a proxy, its
// host:port is an allowed destination too (origin: the proxy's source).
Result<egress::PolicyOptions> egress_policy_options(const config::Config& config,
                                                    const egress::ProxyConfig* proxy = nullptr);

// The proxy every outbound connection of the agent uses: `egress.proxy` when
// configured, else HTTPS_PROXY / https_proxy with NO_PROXY / no_proxy from
// the environment (config wins). The password is read from the secret store
// once, at load, and held as a SecretValue (locked, wiped) for the life of
// the object: libcurl needs it for every new tunnel.
class AgentProxy final {
  public:
    // nullptr when no proxy is configured or set in the environment. Errors:
    // invalid_argument for an unusable HTTPS_PROXY (named; a user name there
    // is refused because its password could only come from the environment),
    // the secret store's error when the password cannot be read.
    static Result<std::unique_ptr<AgentProxy>> load(const config::Config& config,
                                                    const secrets::SecretStores& stores);
    AgentProxy(const AgentProxy&) = delete;
    AgentProxy& operator=(const AgentProxy&) = delete;

    // Points into this object: it must outlive every client using it.
    const egress::ProxyConfig& config() const { return config_; }
    // "egress.proxy" or "HTTPS_PROXY" (the variable actually used).
    const std::string& source() const { return source_; }
    // The reference the password was read from, for the audit record.
    const std::optional<secrets::SecretRef>& password_ref() const { return password_ref_; }

  private:
    AgentProxy() = default;

    egress::ProxyConfig config_;
    std::optional<secrets::SecretValue> password_;
    std::optional<secrets::SecretRef> password_ref_;
    std::string source_;
};

class NetworkLog final {
  public:
    // References must outlive the log.
    NetworkLog(const observe::Logger& logger, observe::Registry& registry, Auditor& auditor);
    NetworkLog(const NetworkLog&) = delete;
    NetworkLog& operator=(const NetworkLog&) = delete;

    void record(const egress::ConnectionRecord& connection);
    // For HttpClient/StreamConnection Options::on_connection.
    std::function<void(const egress::ConnectionRecord&)> callback() {
        return [this](const egress::ConnectionRecord& c) { record(c); };
    }

  private:
    bool should_audit(const std::string& key);

    const observe::Logger& logger_;
    observe::Registry& registry_;
    Auditor& auditor_;
    std::mutex mutex_;
    std::map<std::string, std::chrono::steady_clock::time_point> last_audited_;
};

}  // namespace sa::agent::app
