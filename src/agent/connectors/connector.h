#pragma once
// A connector reads structural metadata (never table contents) from one
// source and streams it, one table or view at a time, into a sink, so memory
// stays bounded however large the catalog is.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/metadata/model.h"
#include "common/result.h"

namespace sa::agent::connectors {

class MetadataSink {
  public:
    virtual ~MetadataSink() = default;
    virtual Status write(const metadata::Table& table) = 0;
};

struct ExtractSummary {
    int64_t tables = 0;
    int64_t views = 0;
    int64_t columns = 0;
    int64_t indexes = 0;
    int64_t foreign_keys = 0;
};

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
    // Streams every table and view into sink. Stops at the first sink error.
    virtual Result<ExtractSummary> extract(MetadataSink& sink) = 0;
    // Runs a trivial query. Errors: the source's (unavailable, io, ...).
    virtual Result<ConnectionInfo> test_connection() = 0;
    // Errors only for failures outside the checks themselves.
    virtual Result<PreflightReport> preflight() = 0;
    virtual Result<std::vector<SchemaInfo>> list_schemas() = 0;
};

using ConnectorPtr = std::unique_ptr<Connector>;

}  // namespace sa::agent::connectors
