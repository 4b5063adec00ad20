#pragma once
// Parsing of the `jobs:` section (internal to the config library).
#include <yaml-cpp/yaml.h>

#include <string>

#include "agent/config/config.h"

namespace sa::agent::config {

// Parses the section at `path` into config.jobs. Throws yaml::ConfigError
// naming the key.
void parse_jobs_section(const YAML::Node& node, const std::string& path, Config& config);

}  // namespace sa::agent::config
