#pragma once
// Reading the agent's YAML config with errors that name the exact key
// ("egress.allow[2].port: must be an integer between 1 and 65535"). Internal
// to the config library: config.cpp and the section parsers share it.
//
// Errors are carried out of the parsing helpers by exception (ConfigError)
// and converted to a Result at the module edge (parse_config); they never
// escape the config library.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/secrets/secret_store.h"

namespace sa::agent::config::yaml {

struct ConfigError {
    std::string message;
};

[[noreturn]] void error_at(const std::string& path, const std::string& what);
std::string join(const std::string& path, const std::string& key);
std::string quoted(std::string_view s);
std::string list(const std::vector<std::string>& items);
// [A-Za-z0-9_.-]{1,max}
bool is_name(std::string_view s, size_t max);

// A YAML mapping whose keys are checked: duplicates and unknown keys are
// errors; get() returns an undefined node for an absent key.
class Map final {
  public:
    Map(const YAML::Node& node, std::string path, std::initializer_list<const char*> allowed)
        : node_(node), path_(std::move(path)) {
        if (!node.IsMap()) error_at(path_, "must be a mapping");
        std::set<std::string> seen;
        for (const auto& entry : node) {
            if (!entry.first.IsScalar()) error_at(path_, "keys must be plain strings");
            const std::string key = entry.first.Scalar();
            if (!seen.insert(key).second) error_at(join(path_, key), "duplicate key");
            if (allowed.size() > 0 && std::none_of(allowed.begin(), allowed.end(),
                                                   [&](const char* a) { return key == a; })) {
                error_at(join(path_, key), "unknown key");
            }
        }
    }

    YAML::Node get(const std::string& key) const { return node_[key]; }
    bool has(const std::string& key) const {
        const YAML::Node child = node_[key];
        return child.IsDefined() && !child.IsNull();
    }
    const std::string& path() const { return path_; }
    std::string at(const std::string& key) const { return join(path_, key); }

    std::string required_string(const std::string& key) const {
        if (!has(key)) error_at(at(key), "missing required key");
        return string_value(get(key), at(key));
    }
    std::optional<std::string> optional_string(const std::string& key) const {
        if (!has(key)) return std::nullopt;
        return string_value(get(key), at(key));
    }

    static std::string string_value(const YAML::Node& node, const std::string& path) {
        if (!node.IsScalar()) error_at(path, "must be a string");
        std::string value = node.Scalar();
        if (value.empty()) error_at(path, "must not be empty");
        return value;
    }

  private:
    YAML::Node node_;
    std::string path_;
};

int parse_int(const YAML::Node& node, int min, int max, const std::string& path);
bool parse_bool(const YAML::Node& node, const std::string& path);
// A byte rate or size: 0 (no limit) or min..max, in bytes or with a binary
// (KiB..TiB) or decimal (kB..TB) unit; below min every connection would
// crawl, which is a typo far more often than an intent.
int64_t parse_byte_count(const YAML::Node& node, int64_t min, int64_t max, const std::string& path);
// {secret: "STORE/PATH#KEY"}; a literal is refused without being echoed.
secrets::SecretRef parse_secret_field(const YAML::Node& node, const std::string& path);

}  // namespace sa::agent::config::yaml
