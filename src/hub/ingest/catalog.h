#pragma once
// The hub's catalog: the metadata (model version 2, common/metadata/model.h)
// delivered by successful jobs, per (app, source). Storage: store.cpp, schema
// version 4 (catalog_tables with catalog_columns, catalog_constraints,
// catalog_indexes and catalog_lineage as children; catalog_routines).
//
// Two ways to change it, both called inside the caller's transaction:
//   - replace_catalog: a full extraction. Everything known about (app,
//     source) is replaced by the delivered records: an object that the run
//     does not deliver is gone afterwards.
//   - apply_catalog_delta: an incremental run. Only the delivered objects
//     change (upserted with all their children), only the objects named by
//     Removal records are deleted; everything else stays.
// Nothing else ever removes an object: a missing chunk fails the job before
// the catalog is touched.
//
// Names on the command line ("object names") are matched exactly against the
// spellings NAME, SCHEMA.NAME, SCHEMA/NAME, DATABASE/SCHEMA/NAME and the
// qualified name SOURCE/DATABASE/SCHEMA/NAME; a routine also as any of these
// followed by "(SIGNATURE)". A name that fits several objects is refused as
// ambiguous (the error lists their qualified names).
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
#include "hub/ingest/chunk_stager.h"
#include "hub/store/store.h"

namespace sa::hub::ingest {

// A relation (table, view, materialized view, partition, ...).
struct CatalogEntry {
    std::string app;
    std::string source;
    std::string database;
    std::string schema;
    std::string name;
    std::string kind;  // one of metadata::kind::
    std::optional<std::string> definition;
    int64_t columns = 0;
    std::string job_id;  // the job that delivered it
    int64_t ingested_at_ms = 0;
    std::optional<std::string> owner;
    std::optional<std::string> comment;
    std::optional<int64_t> estimated_rows;
    std::optional<int64_t> estimated_bytes;
    std::optional<metadata::ObjectRef> partition_of;
    std::optional<std::string> partition_bound;
    std::optional<std::string> partition_key;
    std::optional<std::string> fingerprint;  // NULL for rows converted from schema version 3

    std::string qualified_name() const;  // source/database/schema/name
};

struct CatalogFilter {
    std::optional<std::string> app;
    std::optional<std::string> source;
    std::optional<std::string> table;  // matches the bare table (or routine) name
};

struct CatalogColumn {
    CatalogEntry table;
    metadata::Column column;
};

struct CatalogRoutine {
    std::string app;
    std::string source;
    metadata::Routine routine;
    std::optional<std::string> fingerprint;
    std::string job_id;
    int64_t ingested_at_ms = 0;

    std::string qualified_name() const;  // source/database/schema/name(signature)
};

// One relation a view reads; kind is set when that relation is in the
// catalog of the same source and database.
struct LineageRef {
    metadata::ObjectRef ref;
    std::optional<std::string> kind;
};

struct Lineage {
    CatalogEntry object;
    std::vector<LineageRef> reads;      // its depends_on, in delivered order
    std::vector<CatalogEntry> read_by;  // relations whose depends_on names it
};

// {source, database, schema, name, kind, columns (a count), definition, app,
// job_id, ingested_at_ms, qualified_name, owner, comment, estimated_rows,
// estimated_bytes, partition_of ({schema, name} or null), partition_bound,
// partition_key, fingerprint}
nlohmann::json to_json(const CatalogEntry& entry);
// {table (qualified), name, ordinal, data_type, normalized_type, nullable,
// default, comment, identity, generated, generation_expression,
// primary_key_position}
nlohmann::json to_json(const CatalogColumn& column);
// {app, source, database, schema, name, signature, kind, return_type,
// language, owner, comment, qualified_name, fingerprint, job_id, ingested_at_ms}
nlohmann::json to_json(const CatalogRoutine& routine);
// {object: entry, reads: [{schema, name, kind}], read_by: [entry]}
nlohmann::json to_json(const Lineage& lineage);

class Catalog final {
  public:
    explicit Catalog(store::Store& store) : store_(store) {}

    // Relations, ordered by app, source, database, schema, name.
    Result<std::vector<CatalogEntry>> tables(const CatalogFilter& filter);
    // Columns of the relations that match filter, in relation then ordinal order.
    Result<std::vector<CatalogColumn>> columns(const CatalogFilter& filter);
    // Routines (filter.table: the bare routine name), ordered by app, source,
    // database, schema, name, signature.
    Result<std::vector<CatalogRoutine>> routines(const CatalogFilter& filter);

    // True when (app, source) has catalog rows or a succeeded extraction
    // (which may have delivered nothing).
    Result<bool> has_source(const std::optional<std::string>& app, const std::string& source);

    // Lineage of one relation (see "object names" above). Errors: not_found
    // (unknown source or relation), invalid_argument (ambiguous name).
    Result<Lineage> lineage(const std::optional<std::string>& app, const std::string& source,
                            const std::string& relation);
    // The stored record (canonical JSON, as metadata::to_json) of a relation
    // or routine; rebuilt from the rows for a relation converted from schema
    // version 3. Errors as lineage().
    Result<nlohmann::json> record(const std::optional<std::string>& app, const std::string& source,
                                  const std::string& object);
    // A relation rebuilt from its catalog rows (not from the stored record).
    Result<metadata::Table> relation(const std::optional<std::string>& app,
                                     const std::string& source, const std::string& relation);

  private:
    store::Store& store_;
};

// Full extraction: deletes every catalog row of (app, source) and inserts
// records (relations with their children, routines, lineage; prepared by
// prepare_chunk or prepare_records, chunk_stager.h). A Removal
// record or two records with one qualified name are invalid_argument (the
// ingest refuses both earlier, as bad_chunk). Call inside a transaction.
Status replace_catalog(sqlite::Database& db, const std::string& app, const std::string& source,
                       const std::vector<PreparedRecord>& records, const std::string& job_id,
                       int64_t now_ms);

// Incremental run: upserts every Table and Routine of changed_and_removed
// (replacing the children of a relation), deletes exactly the objects named
// by its Removal records (with their children and lineage); every other
// object of (app, source) stays as it is. Removing an object that is not in
// the catalog is not an error. Two records (of any type) for one object are
// invalid_argument. Call inside a transaction.
Status apply_catalog_delta(sqlite::Database& db, const std::string& app, const std::string& source,
                           const std::vector<PreparedRecord>& changed_and_removed,
                           const std::string& job_id, int64_t now_ms);

// The key a record is identified by within one run: "table SOURCE/DB/SCHEMA/NAME"
// or "routine SOURCE/DB/SCHEMA/NAME(SIGNATURE)" (a Removal gets the key of the
// object it removes).
std::string object_key(const std::string& source, const metadata::Record& record);

}  // namespace sa::hub::ingest
