#pragma once
// The agent's egress policy and network log, built from its config.
//
// Policy: the `egress.allow` entries first (so an entry for the hub can add
// pins), then the destinations the config itself names, allowed implicitly
// with their CA files: hub.url, audit.tsa.url and each syslog target of
// audit.siem. Everything else is denied before a packet is sent. Note the
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
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "agent/app/auditor.h"
#include "agent/config/config.h"
#include "agent/egress/policy.h"
#include "agent/observe/logger.h"
#include "agent/observe/metrics.h"
#include "common/result.h"

namespace sa::agent::app {

// Host (brackets stripped) and port (default 443) of an https:// URL.
// invalid_argument for anything else.
Result<std::pair<std::string, int>> https_host_port(std::string_view url);

// Errors: invalid_argument naming the config key (a pin or CIDR that does not
// parse; config validation normally catches these first).
Result<egress::PolicyOptions> egress_policy_options(const config::Config& config);

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
