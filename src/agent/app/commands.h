#pragma once
// The secure-agent commands, callable without the CLI layer (tests).
// Exit codes: 0 ok, 1 runtime failure, 2 configuration error.
#include <iosfwd>
#include <string>

#include "agent/auth/token_client.h"
#include "agent/config/config.h"

namespace sa::agent::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitConfig = 2;

// `run`: startup steps, then the control loop until SIGTERM/SIGINT.
int run_agent(const std::string& config_path);

// `check-config`: "config OK" and a summary on out; on error
// "config error: <key.path>: <what>" on err. Reads no secret.
int check_config(const std::string& config_path, std::ostream& out, std::ostream& err);

// `version`: version, protocol version and SHA-256 of the running binary.
int print_version(std::ostream& out);

// SHA-256 (hex) of /proc/self/exe, or an error.
std::string binary_sha256();

// The hub's token client options from the config: token URL, client id,
// client secret reference and how the secret is sent (hub.client_auth).
auth::TokenClient::Options hub_token_options(const config::Config& config);

}  // namespace sa::agent::app
