#pragma once
// A connector reads structural metadata (never table contents) from one
// source and streams it, one relation or routine at a time, into a sink, so
// memory stays bounded however large the catalog is.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/metadata/model.h"
#include "common/result.h"

namespace sa::agent::connectors {

class MetadataSink {
  public:
    virtual ~MetadataSink() = default;
    // Asked before a relation's details are read: false skips it (the job's
    // filters, applied client-side so no pattern ever reaches SQL text).
    virtual bool wants(std::string_view schema, std::string_view relation) const = 0;
    // Asked before a schema's routines are read.
    virtual bool wants_schema(std::string_view schema) const = 0;
    virtual Status write(const metadata::Table& table) = 0;
    virtual Status write(const metadata::Routine& routine) = 0;
};

struct ExtractSummary {
    int64_t tables = 0;  // every relation kind that is not a view
    int64_t views = 0;   // views and materialized views
    int64_t columns = 0;
    int64_t indexes = 0;
    int64_t foreign_keys = 0;
    int64_t constraints = 0;  // all types, foreign keys included
    int64_t routines = 0;
};

// Adds one relation to the summary: every connector counts the same way.
inline void add_to_summary(ExtractSummary& summary, const metadata::Table& table) {
    (metadata::is_view_kind(table.kind) ? summary.views : summary.tables) += 1;
    summary.columns += static_cast<int64_t>(table.columns.size());
    summary.indexes += static_cast<int64_t>(table.indexes.size());
    summary.constraints += static_cast<int64_t>(table.constraints.size());
    for (const auto& c : table.constraints) summary.foreign_keys += c.type == "foreign_key";
}

// test_connection(): the source answered a trivial query.
struct ConnectionInfo {
    std::string server_version;  // e.g. "3.40.1" for SQLite
};

// preflight(): what a job would need, checked one step at a time. A failed
// check is a result, not an error: the report says which step failed.
struct PreflightCheck {
    std::string name;  // "open", "read_catalog", "count_tables", ...
    bool ok = false;
    std::string detail;  // never the source's path or a credential
};

struct PreflightReport {
    std::string server_version;
    std::vector<PreflightCheck> checks;
};

// list_schemas(): one entry per schema the source holds.
struct SchemaInfo {
    std::string database;
    std::string schema;
    int64_t tables = 0;  // tables and views in the schema
};

// Implementations are built by a factory (make_connector in factory.h) that
// opens the source, so every method works on an open source. Not
// thread-safe: one job, one connector. Error messages may name the source's
// path; callers that report them elsewhere must scrub it (the worker does).
class Connector {
  public:
    virtual ~Connector() = default;
    // Streams every relation and routine the sink wants into it, each record
    // complete (columns, constraints, indexes nested). Stops at the first
    // sink error. Temporary objects are never extracted.
    virtual Result<ExtractSummary> extract(MetadataSink& sink) = 0;
    // Runs a trivial query. Errors: the source's (unavailable, io, ...).
    virtual Result<ConnectionInfo> test_connection() = 0;
    // Errors only for failures outside the checks themselves.
    virtual Result<PreflightReport> preflight() = 0;
    virtual Result<std::vector<SchemaInfo>> list_schemas() = 0;
};

using ConnectorPtr = std::unique_ptr<Connector>;

}  // namespace sa::agent::connectors
