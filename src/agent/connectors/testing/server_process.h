#pragma once
// Test support shared by the throwaway database servers (pg_server,
// mariadb_server): shell steps and a free loopback port.
#include <cstdint>
#include <string>

#include "common/result.h"

namespace sa::agent::connectors::testing {

// Single-quotes a path for a shell command: only our own paths (letters,
// digits, '/', '-', '_'), never input from elsewhere.
std::string shell_quote(const std::string& path);

// Runs a shell command; internal error naming the command and its status.
Status run_command(const std::string& command);

// A TCP port on 127.0.0.1 nothing listens on at the moment of asking.
Result<uint16_t> free_loopback_port();

}  // namespace sa::agent::connectors::testing
