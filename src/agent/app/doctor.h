#pragma once
// `secure-agent doctor --config FILE [--json]`: a preflight for people
// installing the agent (issue #4). It checks, in order and with the same
// egress policy, CA files, pins and proxy the agent itself would use:
//
//   config   load_config + check_files, the secret stores and the egress policy
//   policy   the job policy file (jobs.policy_file) loads
//   sandbox  which sandbox layers a job worker gets on this host (tried in a
//            child); a missing layer fails only in strict mode
//   for each destination (hub.url, then audit.tsa.url and each syslog target
//   of audit.siem, then any DoctorOptions::extra_urls):
//     dns    the egress policy's decision and the checked addresses
//     proxy  (only with a proxy) the proxy is allowed and reachable, and
//            CONNECT to the destination succeeds
//     tcp    a connection to a checked address
//     tls    TLS version, certificate chain and host name
//     pins   (only when the destination's rule has SPKI pins)
//   token    an access token from hub.url + /oauth2/token with the configured
//            client credentials (the secret is read from its store, never printed)
//   hub-api  an authenticated answer from the hub
//   source   each configured source (sqlite: the file opens read-only)
//
// Output: one line per check, "[ ok ] NAME  DETAIL", "[FAIL] NAME  DETAIL"
// followed by "        fix: ...", or "[skip] NAME  why" when a check it
// depends on failed; then a summary line. With json, one JSON array of
// {"check", "target", "status": "ok"|"fail"|"skip", "detail", "fix"?}.
// Nothing secret is ever printed.
//
// Exit code: kExitOk when every check passed, kExitConfig when the config
// cannot be used (nothing else is checked then), kExitFailure otherwise.
//
// Every connection goes through the egress layer (HttpClient,
// StreamConnection); the probes are plain GETs of the destination URL, so
// any HTTP answer proves TCP and TLS, and the client's error codes say which
// step failed.
#include <chrono>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "agent/egress/policy.h"

namespace sa::agent::app {

struct DoctorOptions {
    // Name resolution for the egress policy; null: the system resolver.
    std::shared_ptr<egress::Resolver> resolver;
    // Print a JSON array instead of lines.
    bool json = false;
    // More https:// URLs to check like the configured destinations (dns,
    // proxy, tcp, tls, pins): "would the agent be allowed to reach this?".
    std::vector<std::string> extra_urls;
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds request_timeout{20'000};
};

int run_doctor(const std::string& config_path, std::ostream& out, DoctorOptions options = {});

}  // namespace sa::agent::app
