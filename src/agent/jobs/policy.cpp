#include "agent/jobs/policy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "agent/config/yaml_reader.h"
#include "agent/jobs/printable.h"
#include "agent/jobs/refusal_reasons.h"
#include "common/crypto/digest.h"
#include "common/protocol/protocol.h"

namespace sa::agent::jobs {

namespace {

namespace yaml = config::yaml;
using yaml::error_at;
using yaml::Map;

// A policy is a few dozen lines; anything near this is not one.
constexpr size_t kMaxPolicyBytes = 1024 * 1024;
constexpr size_t kMaxRules = 1000;
constexpr int64_t kMaxDurationSeconds = 24 * 3600;
// max_bytes: below 1 MiB nearly every extraction would fail, which is a typo
// far more often than an intent.
constexpr int64_t kMinMaxBytes = 1 << 20;
constexpr int64_t kMaxMaxBytes = int64_t{1} << 50;
constexpr int64_t kMaxMaxObjects = 1'000'000'000;

constexpr std::array<const char*, 4> kOperations = {
    protocol::kOperationExtractMetadata, protocol::kOperationTestConnection,
    protocol::kOperationPreflight, protocol::kOperationListSchemas};
constexpr std::array<const char*, 7> kDays = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

std::string index_path(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

YAML::Node require_sequence(const YAML::Node& node, const std::string& path) {
    if (!node.IsSequence()) error_at(path, "must be a list");
    return node;
}

std::vector<std::string> string_list(const YAML::Node& node, const std::string& path,
                                     bool allow_empty) {
    require_sequence(node, path);
    if (!allow_empty && node.size() == 0) error_at(path, "must not be empty");
    std::vector<std::string> out;
    for (size_t i = 0; i < node.size(); ++i) {
        out.push_back(Map::string_value(node[i], index_path(path, i)));
    }
    return out;
}

// "warehouse", "*" or "crm-*": a name, optionally ending in one "*".
void check_source_pattern(const std::string& pattern, const std::string& path) {
    if (pattern == "*") return;
    const bool prefix = pattern.ends_with('*');
    const std::string_view name(pattern.data(), pattern.size() - (prefix ? 1 : 0));
    if (!yaml::is_name(name, 128)) {
        error_at(path,
                 "must be a source name ([A-Za-z0-9_.-]{1,128}), \"*\", or a name prefix "
                 "followed by \"*\"");
    }
}

bool source_matches(const std::string& pattern, const std::string& source) {
    if (pattern.ends_with('*')) {
        return source.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
    }
    return pattern == source;
}

std::chrono::seconds parse_duration(const YAML::Node& node, const std::string& path) {
    const std::string what = "must be a duration between 1s and 24h, like 90s, 30m or 2h";
    if (!node.IsScalar()) error_at(path, what);
    const std::string& text = node.Scalar();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end + 1 != text.data() + text.size()) error_at(path, what);
    int64_t unit = 0;
    switch (*end) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        default:
            error_at(path, what);
    }
    if (value < 1 || value > kMaxDurationSeconds / unit) error_at(path, what);
    return std::chrono::seconds(value * unit);
}

int64_t parse_count(const YAML::Node& node, int64_t max, const std::string& path) {
    const std::string what = "must be 0 (no limit) or an integer up to " + std::to_string(max);
    if (!node.IsScalar()) error_at(path, what);
    const std::string& text = node.Scalar();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > max) {
        error_at(path, what);
    }
    return value;
}

// "HH:MM"; allow_24 admits "24:00" (the end of the day).
int parse_time_of_day(const YAML::Node& node, const std::string& path, bool allow_24) {
    const std::string what = allow_24 ? "must be a UTC time \"HH:MM\" from 00:00 to 24:00"
                                      : "must be a UTC time \"HH:MM\" from 00:00 to 23:59";
    if (!node.IsScalar()) error_at(path, what);
    const std::string& t = node.Scalar();
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (t.size() != 5 || !digit(t[0]) || !digit(t[1]) || t[2] != ':' || !digit(t[3]) ||
        !digit(t[4])) {
        error_at(path, what);
    }
    const int hours = (t[0] - '0') * 10 + (t[1] - '0');
    const int minutes = (t[3] - '0') * 10 + (t[4] - '0');
    if (minutes > 59) error_at(path, what);
    if (hours > 23 && !(allow_24 && hours == 24 && minutes == 0)) error_at(path, what);
    return hours * 60 + minutes;
}

TimeWindow parse_window(const YAML::Node& node, const std::string& path) {
    Map map(node, path, {"days", "from", "to"});
    TimeWindow window;
    if (map.has("days")) {
        window.days_mask = 0;
        const auto days = string_list(map.get("days"), map.at("days"), false);
        for (size_t i = 0; i < days.size(); ++i) {
            const auto it = std::find(kDays.begin(), kDays.end(), days[i]);
            if (it == kDays.end()) {
                error_at(index_path(map.at("days"), i),
                         "unknown day " + yaml::quoted(days[i]) +
                             "; use mon, tue, wed, thu, fri, sat, sun");
            }
            window.days_mask |= static_cast<uint8_t>(1u << (it - kDays.begin()));
        }
    }
    if (!map.has("from")) error_at(map.at("from"), "missing required key");
    if (!map.has("to")) error_at(map.at("to"), "missing required key");
    window.from_minute = parse_time_of_day(map.get("from"), map.at("from"), false);
    window.to_minute = parse_time_of_day(map.get("to"), map.at("to"), true);
    if (window.from_minute == window.to_minute) {
        error_at(map.at("to"), "must differ from \"from\" (for the whole day use 00:00 to 24:00)");
    }
    return window;
}

PatternSet parse_pattern_set(const YAML::Node& node, const std::string& path) {
    Map map(node, path, {"include", "exclude"});
    PatternSet set;
    if (map.has("include")) set.include = string_list(map.get("include"), map.at("include"), true);
    if (map.has("exclude")) set.exclude = string_list(map.get("exclude"), map.at("exclude"), true);
    return set;
}

JobLimits parse_limits(const YAML::Node& node, const std::string& path) {
    Map map(node, path, {"max_duration", "max_objects", "max_bytes"});
    JobLimits limits;
    if (map.has("max_duration")) {
        limits.max_duration = parse_duration(map.get("max_duration"), map.at("max_duration"));
    }
    if (map.has("max_objects")) {
        limits.max_objects =
            parse_count(map.get("max_objects"), kMaxMaxObjects, map.at("max_objects"));
    }
    if (map.has("max_bytes")) {
        limits.max_bytes = yaml::parse_byte_count(map.get("max_bytes"), kMinMaxBytes, kMaxMaxBytes,
                                                  map.at("max_bytes"));
    }
    return limits;
}

PolicyRule parse_rule(const YAML::Node& node, const std::string& path) {
    Map map(node, path,
            {"name", "sources", "operations", "schemas", "tables", "limits", "windows"});
    PolicyRule rule;
    rule.name = map.required_string("name");
    if (!yaml::is_name(rule.name, 64)) error_at(map.at("name"), "must match [A-Za-z0-9_.-]{1,64}");

    if (!map.has("sources")) error_at(map.at("sources"), "missing required key");
    rule.sources = string_list(map.get("sources"), map.at("sources"), false);
    for (size_t i = 0; i < rule.sources.size(); ++i) {
        check_source_pattern(rule.sources[i], index_path(map.at("sources"), i));
    }

    if (!map.has("operations")) error_at(map.at("operations"), "missing required key");
    rule.operations = string_list(map.get("operations"), map.at("operations"), false);
    for (size_t i = 0; i < rule.operations.size(); ++i) {
        const std::string& op = rule.operations[i];
        if (std::none_of(kOperations.begin(), kOperations.end(),
                         [&](const char* known) { return op == known; })) {
            error_at(index_path(map.at("operations"), i),
                     "unknown operation " + yaml::quoted(op) +
                         "; use extract_metadata, test_connection, preflight, list_schemas");
        }
    }

    if (map.has("schemas"))
        rule.filters.schemas = parse_pattern_set(map.get("schemas"), map.at("schemas"));
    if (map.has("tables"))
        rule.filters.tables = parse_pattern_set(map.get("tables"), map.at("tables"));
    // Pattern count, length and syntax are checked by the same code that
    // checks a job's filters; its messages already carry the key path.
    if (auto checked = filters_from_json(to_json(rule.filters), path); !checked) {
        throw yaml::ConfigError{checked.error().message};
    }

    if (map.has("limits")) rule.limits = parse_limits(map.get("limits"), map.at("limits"));

    if (map.has("windows")) {
        const YAML::Node windows = require_sequence(map.get("windows"), map.at("windows"));
        if (windows.size() == 0) {
            error_at(map.at("windows"), "must not be empty (leave it out to allow any time)");
        }
        for (size_t i = 0; i < windows.size(); ++i) {
            rule.windows.push_back(parse_window(windows[i], index_path(map.at("windows"), i)));
        }
    }
    return rule;
}

Policy parse_root(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) error_at("", "the policy file is empty");
    Map top(root, "", {"version", "max_concurrent_jobs", "rules"});
    if (!top.has("version")) error_at("version", "missing required key");
    const YAML::Node version = top.get("version");
    if (!version.IsScalar() || version.Scalar() != "1") {
        error_at("version", "must be 1 (the only policy version this agent understands)");
    }
    Policy policy;
    if (top.has("max_concurrent_jobs")) {
        policy.max_concurrent_jobs =
            yaml::parse_int(top.get("max_concurrent_jobs"), 1, 64, "max_concurrent_jobs");
    }
    if (!top.has("rules"))
        error_at("rules", "missing required key (an empty list refuses every job)");
    const YAML::Node rules = require_sequence(top.get("rules"), "rules");
    if (rules.size() > kMaxRules) {
        error_at("rules", "more than " + std::to_string(kMaxRules) + " rules");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < rules.size(); ++i) {
        const std::string path = index_path("rules", i);
        policy.rules.push_back(parse_rule(rules[i], path));
        if (!names.insert(policy.rules.back().name).second) {
            error_at(path + ".name",
                     "duplicate rule name " + yaml::quoted(policy.rules.back().name));
        }
    }
    return policy;
}

// Weekday of a Unix time, Monday = 0 (1970-01-01 was a Thursday).
int weekday(int64_t days_since_epoch) {
    const int64_t d = (days_since_epoch + 3) % 7;
    return static_cast<int>(d < 0 ? d + 7 : d);
}

bool in_window(const TimeWindow& w, int64_t now) {
    int64_t day = now / 86400;
    int64_t second_of_day = now % 86400;
    if (second_of_day < 0) {
        second_of_day += 86400;
        --day;
    }
    const int minute = static_cast<int>(second_of_day / 60);
    auto day_listed = [&](int64_t d) { return (w.days_mask >> weekday(d)) & 1u; };
    if (w.from_minute < w.to_minute) {
        return day_listed(day) && minute >= w.from_minute && minute < w.to_minute;
    }
    // Wraps midnight: the evening part belongs to today, the morning part to
    // the window that started yesterday.
    if (minute >= w.from_minute) return day_listed(day);
    if (minute < w.to_minute) return day_listed(day - 1);
    return false;
}

std::string describe_windows(const std::vector<TimeWindow>& windows) {
    std::string out;
    for (const auto& w : windows) out += (out.empty() ? "" : "; ") + describe(w);
    return out + " UTC";
}

// A job include pattern that names exactly one object: [A-Za-z0-9_$]+,
// optionally anchored with ^...$ (which regex_match implies anyway).
std::optional<std::string> literal_name(const std::string& pattern) {
    std::string_view p(pattern);
    if (p.size() >= 2 && p.front() == '^' && p.back() == '$') p = p.substr(1, p.size() - 2);
    if (p.empty()) return std::nullopt;
    for (const char c : p) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '$';
        if (!ok) return std::nullopt;
    }
    return std::string(p);
}

PolicyDecision refused(std::string rule, const char* code, std::string message) {
    PolicyDecision d;
    d.rule = std::move(rule);
    d.reason_code = code;
    d.message = std::move(message);
    return d;
}

// filter_outside_policy when the job explicitly asks for a schema or table
// the rule excludes; nullopt when its literal includes are all inside.
std::optional<PolicyDecision> check_job_filters(const PolicyRule& rule, const Job& job) {
    ObjectFilters schemas_only;
    schemas_only.schemas = rule.filters.schemas;
    ObjectFilters tables_only;
    tables_only.tables = rule.filters.tables;
    auto schemas = CompiledFilters::compile({schemas_only});
    auto tables = CompiledFilters::compile({tables_only});
    if (!schemas || !tables) {
        // parse_policy compiles every pattern; only a Policy built by hand
        // gets here. Fail closed.
        return refused(rule.name, reason::kFilterOutsidePolicy,
                       "rule " + rule.name + " has a filter that does not compile");
    }
    for (const auto& pattern : job.filters.schemas.include) {
        auto name = literal_name(pattern);
        if (name && !schemas->schema_allowed(*name)) {
            return refused(
                rule.name, reason::kFilterOutsidePolicy,
                "job asks for schema \"" + *name + "\", which rule " + rule.name + " excludes");
        }
    }
    for (const auto& pattern : job.filters.tables.include) {
        auto name = literal_name(pattern);
        // The table patterns alone: the schema is checked above.
        if (name && !tables->table_allowed("", *name)) {
            return refused(
                rule.name, reason::kFilterOutsidePolicy,
                "job asks for table \"" + *name + "\", which rule " + rule.name + " excludes");
        }
    }
    return std::nullopt;
}

// Job fields come from a verified job, but a hub could still send odd
// names: keep messages one bounded, printable line.
std::string printable(std::string_view text) {
    return jobs::printable(text, 128);
}

}  // namespace

Result<Policy> parse_policy(std::string_view yaml_text, std::string_view file_name) {
    const std::string prefix = std::string(file_name) + ": ";
    try {
        const YAML::Node root = YAML::Load(std::string(yaml_text));
        Policy policy = parse_root(root);
        policy.source_name = std::string(file_name);
        policy.sha256_hex = crypto::sha256_hex(yaml_text);
        return policy;
    } catch (const yaml::ConfigError& e) {
        return fail(ErrorCode::invalid_argument, prefix + e.message);
    } catch (const YAML::ParserException& e) {
        return fail(ErrorCode::invalid_argument,
                    prefix + "line " + std::to_string(e.mark.line + 1) + ", column " +
                        std::to_string(e.mark.column + 1) + ": " + e.msg);
    } catch (const YAML::Exception& e) {
        return fail(ErrorCode::invalid_argument, prefix + e.what());
    }
}

Result<Policy> load_policy_file(const std::string& path) {
    // One descriptor for the mode check and the read, so the file checked is
    // the file read.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT)
            return fail(ErrorCode::not_found, "policy file " + path + " does not exist");
        if (err == EACCES) {
            return fail(ErrorCode::permission_denied,
                        "cannot read policy file " + path + ": permission denied");
        }
        return fail(ErrorCode::io, "cannot open policy file " + path + ": " + std::strerror(err));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return fail(ErrorCode::io, "cannot stat policy file " + path + ": " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(ErrorCode::invalid_argument, "policy file " + path + " is not a regular file");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return fail(ErrorCode::permission_denied,
                    "policy file " + path + " is writable by group or others (mode " + mode +
                        "); only its owner may change it: chmod go-w " + path);
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxPolicyBytes) {
        return fail(ErrorCode::invalid_argument, "policy file " + path + " is larger than 1 MiB");
    }
    std::string content;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(ErrorCode::io,
                        "cannot read policy file " + path + ": " + std::strerror(errno));
        }
        if (n == 0) break;
        content.append(buf, static_cast<size_t>(n));
        if (content.size() > kMaxPolicyBytes) {
            return fail(ErrorCode::invalid_argument,
                        "policy file " + path + " is larger than 1 MiB");
        }
    }
    return parse_policy(content, path);
}

Policy default_policy() {
    PolicyRule rule;
    rule.name = "default";
    rule.sources = {"*"};
    rule.operations.assign(kOperations.begin(), kOperations.end());
    Policy policy;
    policy.max_concurrent_jobs = 1;
    policy.rules.push_back(std::move(rule));
    policy.source_name = "built-in default";
    return policy;
}

std::string describe(const TimeWindow& window) {
    std::string days;
    if ((window.days_mask & 0x7f) == 0x7f) {
        days = "every day";
    } else {
        for (size_t d = 0; d < kDays.size(); ++d) {
            if ((window.days_mask >> d) & 1u)
                days += (days.empty() ? "" : ",") + std::string(kDays[d]);
        }
    }
    auto hhmm = [](int minute) {
        char text[8];
        std::snprintf(text, sizeof text, "%02d:%02d", minute / 60 % 100, minute % 60);
        return std::string(text);
    };
    return days + " " + hhmm(window.from_minute) + "-" + hhmm(window.to_minute);
}

PolicyDecision evaluate(const Policy& policy, const Job& job, int64_t now_unix_seconds) {
    const std::string source = printable(job.source);
    const std::string operation = printable(job.operation);
    const PolicyRule* source_named_by = nullptr;
    const PolicyRule* blocked_by_window = nullptr;
    for (const auto& rule : policy.rules) {
        if (std::none_of(rule.sources.begin(), rule.sources.end(),
                         [&](const std::string& p) { return source_matches(p, job.source); })) {
            continue;
        }
        if (!source_named_by) source_named_by = &rule;
        if (std::find(rule.operations.begin(), rule.operations.end(), job.operation) ==
            rule.operations.end()) {
            continue;
        }
        if (!rule.windows.empty() &&
            std::none_of(rule.windows.begin(), rule.windows.end(),
                         [&](const TimeWindow& w) { return in_window(w, now_unix_seconds); })) {
            if (!blocked_by_window) blocked_by_window = &rule;
            continue;
        }
        if (auto refusal = check_job_filters(rule, job)) return std::move(*refusal);
        PolicyDecision d;
        d.allowed = true;
        d.rule = rule.name;
        d.message = "rule " + rule.name + " allows " + operation + " on source " + source;
        d.limits = rule.limits;
        d.filters = {rule.filters, job.filters};
        return d;
    }
    if (blocked_by_window) {
        return refused(blocked_by_window->name, reason::kOutsideTimeWindow,
                       "rule " + blocked_by_window->name + " allows " + operation + " on source " +
                           source + " only " + describe_windows(blocked_by_window->windows));
    }
    if (source_named_by) {
        return refused("default-deny", reason::kOperationNotAllowed,
                       "no rule of the policy (" + policy.source_name + ") allows operation " +
                           operation + " on source " + source + " (rule " + source_named_by->name +
                           " names the source)");
    }
    return refused("default-deny", reason::kSourceNotAllowed,
                   "no rule of the policy (" + policy.source_name + ") names source " + source);
}

}  // namespace sa::agent::jobs
