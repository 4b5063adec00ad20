#include "agent/config/yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <utility>

namespace sa::agent::config::yaml {

[[noreturn]] void error_at(const std::string& path, const std::string& what) {
    throw ConfigError{(path.empty() ? std::string("(root)") : path) + ": " + what};
}

std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
}

std::string quoted(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

std::string list(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
}

bool is_name(std::string_view s, size_t max) {
    if (s.empty() || s.size() > max) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
    });
}

int parse_int(const YAML::Node& node, int min, int max, const std::string& path) {
    const std::string what =
        "must be an integer between " + std::to_string(min) + " and " + std::to_string(max);
    if (!node.IsScalar()) error_at(path, what);
    const std::string& text = node.Scalar();
    int value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
        error_at(path, what);
    }
    return value;
}

bool parse_bool(const YAML::Node& node, const std::string& path) {
    if (!node.IsScalar() || (node.Scalar() != "true" && node.Scalar() != "false")) {
        error_at(path, "must be true or false");
    }
    return node.Scalar() == "true";
}

int64_t parse_byte_count(const YAML::Node& node, int64_t min, int64_t max,
                         const std::string& path) {
    const std::string what = "must be 0 (no limit) or an integer between " + std::to_string(min) +
                             " and " + std::to_string(max) +
                             " (bytes, or with a unit: KiB, MiB, GiB, TiB, kB, MB, GB, TB)";
    if (!node.IsScalar()) error_at(path, what);
    const std::string& text = node.Scalar();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value < 0) error_at(path, what);
    const std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
    static const std::pair<std::string_view, int64_t> kUnits[] = {{"", 1},
                                                                  {"B", 1},
                                                                  {"KiB", 1ll << 10},
                                                                  {"MiB", 1ll << 20},
                                                                  {"GiB", 1ll << 30},
                                                                  {"TiB", 1ll << 40},
                                                                  {"kB", 1000},
                                                                  {"KB", 1000},
                                                                  {"MB", 1000'000},
                                                                  {"GB", 1000'000'000},
                                                                  {"TB", 1000'000'000'000}};
    const auto found = std::find_if(std::begin(kUnits), std::end(kUnits),
                                    [&](const auto& u) { return u.first == unit; });
    if (found == std::end(kUnits)) error_at(path, what);
    if (value > max / found->second) error_at(path, what);
    value *= found->second;
    if (value != 0 && (value < min || value > max)) error_at(path, what);
    return value;
}

secrets::SecretRef parse_secret_field(const YAML::Node& node, const std::string& path) {
    // The value is not echoed: a literal here is very likely a real secret.
    if (!node.IsMap()) {
        error_at(path, "literal secrets are not allowed; use {secret: \"STORE/PATH#KEY\"}");
    }
    Map map(node, path, {"secret"});
    const std::string text = map.required_string("secret");
    auto ref = secrets::parse_secret_ref(text);
    if (!ref) error_at(map.at("secret"), ref.error().message);
    return *ref;
}

}  // namespace sa::agent::config::yaml
