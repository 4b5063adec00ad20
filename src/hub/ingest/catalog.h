#pragma once
// The hub's catalog: the metadata delivered by successful jobs, per (app,
// source). A successful completion replaces everything known about that
// source at once (replace_catalog, inside the completion's transaction).
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/metadata/model.h"
#include "common/result.h"
#include "common/sqlite/database.h"
#include "hub/store/store.h"

namespace sa::hub::ingest {

struct CatalogEntry {
    std::string app;
    std::string source;
    std::string database;
    std::string schema;
    std::string name;
    std::string kind;  // "table" or "view"
    std::optional<std::string> definition;
    int64_t columns = 0;
    std::string job_id;  // the job that delivered it
    int64_t ingested_at_ms = 0;

    std::string qualified_name() const;  // source/database/schema/name
};

struct CatalogFilter {
    std::optional<std::string> app;
    std::optional<std::string> source;
    std::optional<std::string> table;  // matches the bare table name
};

struct CatalogColumn {
    CatalogEntry table;
    metadata::Column column;
};

// {source, database, schema, name, kind, columns, definition, app, job_id}
nlohmann::json to_json(const CatalogEntry& entry);

class Catalog final {
  public:
    explicit Catalog(store::Store& store) : store_(store) {}

    // Tables and views, ordered by app, source, database, schema, name.
    Result<std::vector<CatalogEntry>> tables(const CatalogFilter& filter);
    // Columns of the tables that match filter, in table then ordinal order.
    Result<std::vector<CatalogColumn>> columns(const CatalogFilter& filter);

  private:
    store::Store& store_;
};

// Deletes every catalog row of (app, source) and inserts tables with their
// columns, indexes and foreign keys. Call inside a transaction on db.
Status replace_catalog(sqlite::Database& db, const std::string& app, const std::string& source,
                       const std::vector<metadata::Table>& tables, const std::string& job_id,
                       int64_t now_ms);

}  // namespace sa::hub::ingest
