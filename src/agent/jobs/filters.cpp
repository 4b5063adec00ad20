#include "agent/jobs/filters.h"

#include <regex>
#include <tuple>
#include <utility>

#include "common/protocol/protocol.h"

namespace sa::agent::jobs {

namespace {

using nlohmann::json;

// Bounds what a job (signed, but by a hub we only partly trust) or a policy
// can make the worker compile and run per catalog object.
constexpr size_t kMaxPatternsPerList = protocol::kMaxFilterPatterns;
constexpr size_t kMaxPatternLength = protocol::kMaxFilterPatternBytes;

// Longer names are not matched at all (see set_allows). Real engines cap
// identifiers far lower (PostgreSQL 63, SQL Server 128 characters).
constexpr size_t kMaxMatchedNameBytes = 1024;

// nosubs: regex_match only answers yes/no, so no capture bookkeeping.
constexpr auto kRegexFlags = std::regex::ECMAScript | std::regex::nosubs;

Result<std::regex> compile_pattern(const std::string& pattern, const std::string& where) {
    if (pattern.empty()) return fail(ErrorCode::invalid_argument, where + ": must not be empty");
    if (pattern.size() > kMaxPatternLength) {
        // Not echoed: a pattern this long is junk and would flood the message.
        return fail(ErrorCode::invalid_argument, where + ": pattern is longer than " +
                                                     std::to_string(kMaxPatternLength) + " bytes");
    }
    try {
        return std::regex(pattern, kRegexFlags);
    } catch (const std::regex_error& e) {
        return fail(
            ErrorCode::invalid_argument,
            where + ": \"" + pattern + "\" is not a valid regular expression (" + e.what() + ")");
    }
}

Result<std::vector<std::string>> pattern_list_from_json(const json& value,
                                                        const std::string& where) {
    if (!value.is_array()) {
        return fail(ErrorCode::invalid_argument, where + ": must be a list of strings");
    }
    if (value.size() > kMaxPatternsPerList) {
        return fail(ErrorCode::invalid_argument,
                    where + ": more than " + std::to_string(kMaxPatternsPerList) + " patterns");
    }
    std::vector<std::string> out;
    out.reserve(value.size());
    for (size_t i = 0; i < value.size(); ++i) {
        const std::string at = where + "[" + std::to_string(i) + "]";
        if (!value[i].is_string()) {
            return fail(ErrorCode::invalid_argument, at + ": must be a string");
        }
        std::string pattern = value[i].get<std::string>();
        // Compiled here too so a bad pattern is refused when the job or policy
        // is read, not half-way through an extraction.
        if (auto re = compile_pattern(pattern, at); !re) return std::unexpected(re.error());
        out.push_back(std::move(pattern));
    }
    return out;
}

Result<PatternSet> pattern_set_from_json(const json& value, const std::string& where) {
    if (!value.is_object()) {
        return fail(ErrorCode::invalid_argument,
                    where + ": must be an object with \"include\" and/or \"exclude\"");
    }
    PatternSet set;
    for (const auto& [key, child] : value.items()) {
        if (key == "include" || key == "exclude") {
            auto list = pattern_list_from_json(child, where + "." + key);
            if (!list) return std::unexpected(list.error());
            (key == "include" ? set.include : set.exclude) = std::move(*list);
        } else {
            return fail(ErrorCode::invalid_argument, where + "." + key + ": unknown key");
        }
    }
    return set;
}

json pattern_set_to_json(const PatternSet& set) {
    json out = json::object();
    if (!set.include.empty()) out["include"] = set.include;
    if (!set.exclude.empty()) out["exclude"] = set.exclude;
    return out;
}

struct CompiledSet {
    std::vector<std::regex> include;
    std::vector<std::regex> exclude;
};

// A regex that fails to run (libstdc++ throws error_complexity/error_stack
// on pathological input) counts as "not allowed": filters fail closed.
bool matches_any(const std::vector<std::regex>& patterns, std::string_view name, bool on_error) {
    for (const auto& re : patterns) {
        try {
            if (std::regex_match(name.begin(), name.end(), re)) return true;
        } catch (const std::regex_error&) {
            return on_error;
        }
    }
    return false;
}

bool set_allows(const CompiledSet& set, std::string_view name) {
    if (set.include.empty() && set.exclude.empty()) return true;
    // libstdc++ matches by recursion, one level per character: a hostile
    // catalog (say a SQLite file with a megabyte-long table name) would
    // overflow the stack. Such a name never passes a set with patterns.
    if (name.size() > kMaxMatchedNameBytes) return false;
    if (matches_any(set.exclude, name, /*on_error=*/true)) return false;
    if (set.include.empty()) return true;
    return matches_any(set.include, name, /*on_error=*/false);
}

Result<CompiledSet> compile_set(const PatternSet& set, const std::string& where) {
    CompiledSet out;
    for (auto [list, target, name] : {std::tuple{&set.include, &out.include, "include"},
                                      std::tuple{&set.exclude, &out.exclude, "exclude"}}) {
        if (list->size() > kMaxPatternsPerList) {
            return fail(ErrorCode::invalid_argument, where + "." + name + ": more than " +
                                                         std::to_string(kMaxPatternsPerList) +
                                                         " patterns");
        }
        for (size_t i = 0; i < list->size(); ++i) {
            auto re =
                compile_pattern((*list)[i], where + "." + name + "[" + std::to_string(i) + "]");
            if (!re) return std::unexpected(re.error());
            target->push_back(std::move(*re));
        }
    }
    return out;
}

}  // namespace

Result<ObjectFilters> filters_from_json(const nlohmann::json& value, std::string_view where) {
    const std::string base(where);
    if (!value.is_object()) {
        return fail(ErrorCode::invalid_argument,
                    base + ": must be an object with \"schemas\" and/or \"tables\"");
    }
    ObjectFilters filters;
    for (const auto& [key, child] : value.items()) {
        if (key == "schemas" || key == "tables") {
            auto set = pattern_set_from_json(child, base + "." + key);
            if (!set) return std::unexpected(set.error());
            (key == "schemas" ? filters.schemas : filters.tables) = std::move(*set);
        } else {
            return fail(ErrorCode::invalid_argument, base + "." + key + ": unknown key");
        }
    }
    return filters;
}

nlohmann::json to_json(const ObjectFilters& filters) {
    json out = json::object();
    if (!filters.schemas.empty()) out["schemas"] = pattern_set_to_json(filters.schemas);
    if (!filters.tables.empty()) out["tables"] = pattern_set_to_json(filters.tables);
    return out;
}

struct CompiledFilters::Compiled {
    std::vector<CompiledSet> schemas;
    std::vector<CompiledSet> tables;
};

Result<CompiledFilters> CompiledFilters::compile(const std::vector<ObjectFilters>& all_of) {
    auto compiled = std::make_unique<Compiled>();
    for (size_t i = 0; i < all_of.size(); ++i) {
        const std::string where = "filters[" + std::to_string(i) + "]";
        auto schemas = compile_set(all_of[i].schemas, where + ".schemas");
        if (!schemas) return std::unexpected(schemas.error());
        auto tables = compile_set(all_of[i].tables, where + ".tables");
        if (!tables) return std::unexpected(tables.error());
        compiled->schemas.push_back(std::move(*schemas));
        compiled->tables.push_back(std::move(*tables));
    }
    return CompiledFilters(std::move(compiled));
}

CompiledFilters::CompiledFilters(std::unique_ptr<Compiled> compiled)
    : compiled_(std::move(compiled)) {}
CompiledFilters::CompiledFilters(CompiledFilters&&) noexcept = default;
CompiledFilters& CompiledFilters::operator=(CompiledFilters&&) noexcept = default;
CompiledFilters::~CompiledFilters() = default;

bool CompiledFilters::schema_allowed(std::string_view schema) const {
    // A moved-from object allows nothing rather than everything.
    if (!compiled_) return false;
    for (const auto& set : compiled_->schemas) {
        if (!set_allows(set, schema)) return false;
    }
    return true;
}

bool CompiledFilters::table_allowed(std::string_view schema, std::string_view table) const {
    if (!schema_allowed(schema)) return false;
    for (const auto& set : compiled_->tables) {
        if (!set_allows(set, table)) return false;
    }
    return true;
}

}  // namespace sa::agent::jobs
