#pragma once
// Parsing of the `sources:` section (internal to the config library).
#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>

#include "agent/config/config.h"

namespace sa::agent::config {

// Parses the list at `path` into config.sources. check_store(ref, key path)
// rejects a reference to a secret store the config does not define. Throws
// yaml::ConfigError naming the key.
void parse_sources(
    const YAML::Node& node, const std::string& path, Config& config,
    const std::function<void(const secrets::SecretRef&, const std::string&)>& check_store);

}  // namespace sa::agent::config
