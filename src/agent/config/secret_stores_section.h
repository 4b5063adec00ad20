#pragma once
// Parsing of the `secret_stores:` section (internal to the config library).
#include <yaml-cpp/yaml.h>

#include <string>

#include "agent/config/config.h"

namespace sa::agent::config {

// Parses the section at `path` into config.secret_stores and
// config.remote_secret_stores. Throws yaml::ConfigError naming the key.
void parse_secret_stores(const YAML::Node& node, const std::string& path, Config& config);

}  // namespace sa::agent::config
