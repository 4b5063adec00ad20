#include "agent/config/sources_section.h"

#include <algorithm>
#include <set>

#include "agent/config/yaml_reader.h"

namespace sa::agent::config {

using yaml::error_at;
using yaml::is_name;
using yaml::list;
using yaml::Map;
using yaml::parse_int;
using yaml::parse_secret_field;
using yaml::quoted;

namespace {

bool is_label(const std::string& label) {
    return !label.empty() && label.size() <= 32 &&
           std::all_of(label.begin(), label.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
           });
}

// The keys each connector takes besides name, connector and sensitivity.
const std::vector<std::string>& connector_keys(const std::string& connector) {
    static const std::vector<std::string> sqlite{"path"};
    static const std::vector<std::string> network{
        "host",    "port",    "database",          "user",        "password",
        "sslmode", "ca_file", "statement_timeout", "lock_timeout"};
    return connector == "sqlite" ? sqlite : network;
}

}  // namespace

void parse_sources(
    const YAML::Node& node, const std::string& path, Config& config,
    const std::function<void(const secrets::SecretRef&, const std::string&)>& check_store) {
    if (!node.IsSequence()) error_at(path, "must be a list");
    std::set<std::string> names;
    for (size_t i = 0; i < node.size(); ++i) {
        const std::string where = path + "[" + std::to_string(i) + "]";
        Map source(node[i], where,
                   {"name", "connector", "sensitivity", "path", "host", "port", "database", "user",
                    "password", "sslmode", "ca_file", "statement_timeout", "lock_timeout"});
        SourceConfig out;
        out.name = source.required_string("name");
        if (!is_name(out.name, 128))
            error_at(source.at("name"), "must match [A-Za-z0-9_.-]{1,128}");
        if (!names.insert(out.name).second) {
            error_at(source.at("name"), "duplicate source name " + quoted(out.name));
        }
        out.connector = source.required_string("connector");
        const auto& connectors = supported_connectors();
        if (std::find(connectors.begin(), connectors.end(), out.connector) == connectors.end()) {
            error_at(source.at("connector"), "unknown connector " + quoted(out.connector) +
                                                 " (supported: " + list(connectors) + ")");
        }
        // A key of another connector is a mistake, not something to ignore.
        for (const char* key : {"path", "host", "port", "database", "user", "password", "sslmode",
                                "ca_file", "statement_timeout", "lock_timeout"}) {
            const auto& keys = connector_keys(out.connector);
            if (source.has(key) && std::find(keys.begin(), keys.end(), key) == keys.end()) {
                error_at(source.at(key), "not a setting of the " + out.connector +
                                             " connector (it takes: " + list(keys) + ")");
            }
        }
        if (auto label = source.optional_string("sensitivity")) {
            if (!is_label(*label))
                error_at(source.at("sensitivity"), "must match [a-z0-9_-]{1,32}");
            out.sensitivity = *label;
        }
        if (out.connector == "sqlite") {
            out.path = source.required_string("path");
        } else {
            out.host = source.required_string("host");
            if (out.connector == "mariadb") out.port = 3306;
            if (source.has("port"))
                out.port = parse_int(source.get("port"), 1, 65535, source.at("port"));
            // A MariaDB server's databases are its schemas: without one, every
            // database the account can see is read.
            out.database = out.connector == "mariadb"
                               ? source.optional_string("database").value_or("")
                               : source.required_string("database");
            // Whole seconds, 1 s to 1 h: the engines' own units (MariaDB's
            // max_statement_time and lock_wait_timeout are in seconds).
            if (source.has("statement_timeout")) {
                out.statement_timeout_seconds = parse_int(source.get("statement_timeout"), 1, 3600,
                                                          source.at("statement_timeout"));
            }
            if (source.has("lock_timeout")) {
                out.lock_timeout_seconds =
                    parse_int(source.get("lock_timeout"), 1, 3600, source.at("lock_timeout"));
            }
            for (const char* key : {"user", "password"}) {
                // A database credential is always a reference into a secret store.
                if (!source.has(key)) error_at(source.at(key), "missing required key");
                auto ref = parse_secret_field(source.get(key), source.at(key));
                check_store(ref, source.at(key));
                (std::string(key) == "user" ? out.user : out.password) = std::move(ref);
            }
            if (auto mode = source.optional_string("sslmode")) {
                static const std::vector<std::string> modes{"disable", "require", "verify-ca",
                                                            "verify-full"};
                if (std::find(modes.begin(), modes.end(), *mode) == modes.end()) {
                    error_at(source.at("sslmode"), "must be one of " + list(modes));
                }
                out.sslmode = *mode;
            }
            out.ca_file = source.optional_string("ca_file");
        }
        config.sources.push_back(std::move(out));
    }
}

}  // namespace sa::agent::config
