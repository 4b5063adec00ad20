#pragma once
// Include/exclude filters on schema and table names, from the customer's
// policy and from the signed job. An object is extracted only when it passes
// EVERY filter set (the intersection): a job can narrow what policy allows,
// never widen it.
//
// Patterns are ECMAScript regular expressions matched against the WHOLE name
// (so "public" does not match "public_secret"). An empty include list
// includes everything; exclude wins over include. Names are compared as the
// engine spells them (case-sensitive). A name longer than 1024 bytes never
// passes a set that has any pattern (matching it could exhaust the stack);
// with no patterns at all every name passes. Filters are applied by the worker
// while it reads the catalog; they are never spliced into SQL text.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace sa::agent::jobs {

struct PatternSet {
    std::vector<std::string> include;
    std::vector<std::string> exclude;
    bool empty() const { return include.empty() && exclude.empty(); }
};

struct ObjectFilters {
    PatternSet schemas;
    PatternSet tables;
    bool empty() const { return schemas.empty() && tables.empty(); }
};

// JSON form (the job claim "filters", the worker channel):
// {"schemas": {"include": [...], "exclude": [...]}, "tables": {...}}; every
// key optional. Errors: invalid_argument naming the offending field
// (where + ".schemas.include[2]: ..."), for non-strings, more than 64
// patterns per list, a pattern over 256 bytes or one that does not compile.
Result<ObjectFilters> filters_from_json(const nlohmann::json& value, std::string_view where);
nlohmann::json to_json(const ObjectFilters& filters);

// Several filter sets compiled once; matches() is thread-compatible (const).
class CompiledFilters final {
  public:
    // Errors: invalid_argument for a pattern that does not compile (the
    // message names the pattern's index and list, never echoes >256 bytes).
    static Result<CompiledFilters> compile(const std::vector<ObjectFilters>& all_of);

    CompiledFilters(CompiledFilters&&) noexcept;
    CompiledFilters& operator=(CompiledFilters&&) noexcept;
    ~CompiledFilters();

    bool schema_allowed(std::string_view schema) const;
    // Also checks the schema.
    bool table_allowed(std::string_view schema, std::string_view table) const;

  private:
    struct Compiled;
    explicit CompiledFilters(std::unique_ptr<Compiled> compiled);
    std::unique_ptr<Compiled> compiled_;
};

}  // namespace sa::agent::jobs
