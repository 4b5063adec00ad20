#pragma once
// The metadata model shared by the agent (producer) and the hub (consumer),
// version 2 (docs/metadata-model.md, JSON Schema in
// docs/metadata-model.schema.json).
//
// Wire form: newline-delimited JSON, one record per line. A record is a
// relation (table, view, ... with its columns, constraints and indexes
// nested), a routine, or a removal (incremental runs). Parsing is strict:
// the hub treats chunks as untrusted input. Version 1 lines (tables and
// views only, foreign keys in "foreign_keys") are still read and converted.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace sa::metadata {

inline constexpr int kModelVersion = 2;

// Relation kinds (Table::kind).
namespace kind {
inline constexpr std::string_view kTable = "table";
inline constexpr std::string_view kView = "view";
inline constexpr std::string_view kMaterializedView = "materialized_view";
inline constexpr std::string_view kPartitionedTable = "partitioned_table";
inline constexpr std::string_view kPartition = "partition";
inline constexpr std::string_view kForeignTable = "foreign_table";
}  // namespace kind
bool is_relation_kind(std::string_view kind);
// view and materialized_view: relations defined by a query.
bool is_view_kind(std::string_view kind);

// Engine-independent type families (Column::normalized_type). A domain
// normalises to its base type; an array of anything is "array".
namespace type {
inline constexpr std::string_view kBoolean = "boolean";
inline constexpr std::string_view kInteger = "integer";
inline constexpr std::string_view kDecimal = "decimal";
inline constexpr std::string_view kFloat = "float";
inline constexpr std::string_view kString = "string";
inline constexpr std::string_view kBinary = "binary";
inline constexpr std::string_view kDate = "date";
inline constexpr std::string_view kTime = "time";
inline constexpr std::string_view kTimestamp = "timestamp";
inline constexpr std::string_view kTimestampTz = "timestamp_tz";
inline constexpr std::string_view kInterval = "interval";
inline constexpr std::string_view kJson = "json";
inline constexpr std::string_view kUuid = "uuid";
inline constexpr std::string_view kXml = "xml";
inline constexpr std::string_view kArray = "array";
inline constexpr std::string_view kEnum = "enum";
inline constexpr std::string_view kGeometry = "geometry";
inline constexpr std::string_view kNetwork = "network";
inline constexpr std::string_view kOther = "other";
}  // namespace type
bool is_normalized_type(std::string_view name);

// A relation in the same database (MySQL/MariaDB: schema is the database).
struct ObjectRef {
    std::string schema;
    std::string name;
    bool operator==(const ObjectRef&) const = default;
};

struct Column {
    std::string name;
    int64_t ordinal = 0;          // 1-based position in the table
    std::string data_type;        // as the engine spells it ("" when untyped)
    std::string normalized_type;  // one of the type:: names
    bool nullable = true;
    std::optional<std::string> default_value;  // SQL expression text
    std::optional<std::string> comment;
    std::string identity;   // "" | "always" | "by_default" (auto_increment, rowid alias)
    std::string generated;  // "" | "stored" | "virtual"
    // Only with generated, and only where the engine exposes the text
    // (SQLite does not).
    std::optional<std::string> generation_expression;
    int64_t primary_key_position = 0;  // 0 = not part of the primary key
    bool operator==(const Column&) const = default;
};

struct Constraint {
    std::string name;  // "" where the engine keeps no name (SQLite)
    std::string type;  // "primary_key" | "unique" | "foreign_key" | "check"
    std::vector<std::string> columns;
    // foreign_key only: the referenced table, its columns (same length as
    // columns; an entry "" means the referenced table's primary key column
    // in that position, as SQLite allows) and the actions ("NO ACTION",
    // "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT").
    std::optional<ObjectRef> references;
    std::vector<std::string> referenced_columns;
    std::string on_update;
    std::string on_delete;
    std::optional<std::string> definition;  // check: the condition as the engine prints it
    bool operator==(const Constraint&) const = default;
};

// One part of an index key: a column, or an expression (exactly one is set).
struct IndexKey {
    std::string column;
    std::string expression;
    bool operator==(const IndexKey&) const = default;
};

struct Index {
    std::string name;
    bool unique = false;
    std::string origin;  // "create_index" | "primary_key" | "unique_constraint"
    std::string method;  // "btree", "hash", "gin", ...; "" when the engine does not say
    std::optional<std::string> predicate;  // partial index condition; "" when unknown text
    std::vector<IndexKey> keys;
    bool partial() const { return predicate.has_value(); }
    bool operator==(const Index&) const = default;
};

struct Table {
    std::string database;  // "main" for SQLite; the database name for MariaDB
    std::string schema;    // "main" for SQLite; == database for MariaDB
    std::string name;
    std::string kind;  // one of kind::
    std::optional<std::string> owner;
    std::optional<std::string> comment;
    std::optional<int64_t> estimated_rows;       // the engine's statistics, not a count
    std::optional<int64_t> estimated_bytes;      // on-disk size where the engine knows
    std::optional<std::string> definition;       // views: the query text
    std::optional<ObjectRef> partition_of;       // kind partition: the parent
    std::optional<std::string> partition_bound;  // "FOR VALUES FROM (...) TO (...)"
    std::optional<std::string> partition_key;    // partitioned_table: "RANGE (created_at)"
    std::vector<ObjectRef> inherits;             // PostgreSQL inheritance parents, in order
    std::vector<ObjectRef> depends_on;           // views: the relations the query reads (lineage)
    std::vector<Column> columns;
    std::vector<Constraint> constraints;
    std::vector<Index> indexes;
    bool operator==(const Table&) const = default;
};

struct Routine {
    std::string database;
    std::string schema;
    std::string name;
    std::string kind;       // "function" | "procedure" | "aggregate" | "window"
    std::string signature;  // the identity arguments as the engine prints them, e.g.
                            // "a integer, VARIADIC b text[]"; "" for none
    std::optional<std::string> return_type;  // absent for procedures
    std::string language;                    // "sql", "plpgsql", "c", ...; "" when unknown
    std::optional<std::string> owner;
    std::optional<std::string> comment;
    bool operator==(const Routine&) const = default;
};

// An incremental run's statement that an object no longer exists.
struct Removal {
    std::string object;  // "table" (any relation kind) | "routine"
    std::string database;
    std::string schema;
    std::string name;
    std::string signature;  // routines only
    bool operator==(const Removal&) const = default;
};

using Record = std::variant<Table, Routine, Removal>;

nlohmann::json to_json(const Table& table);
nlohmann::json to_json(const Routine& routine);
nlohmann::json to_json(const Removal& removal);
nlohmann::json to_json(const Record& record);

// The compact canonical text of to_json(record) (keys sorted, no spaces,
// invalid UTF-8 replaced by U+FFFD), byte for byte what
// to_json(record).dump(-1, ' ', false, error_handler_t::replace) gives, written
// directly: an order of magnitude faster, which matters for catalogs of
// tens of thousands of tables. One chunk line is serialize(record) + '\n'.
std::string serialize(const Record& record);

// Errors name the offending field, e.g. "columns[3].ordinal: expected integer".
Result<Record> record_from_json(const nlohmann::json& json);
// The same, for a line that must be a relation.
Result<Table> table_from_json(const nlohmann::json& json);

// Parses one NDJSON chunk; errors carry the 1-based line number.
Result<std::vector<Record>> parse_chunk(std::string_view ndjson);

// Stable qualified names: "source/database/schema/table",
// "source/database/schema/table/column", "source/database/schema/name(signature)".
std::string qualified_name(std::string_view source, const Table& table);
std::string qualified_name(std::string_view source, const Table& table, const Column& column);
std::string qualified_name(std::string_view source, const Routine& routine);
std::string qualified_name(std::string_view source, const Removal& removal);

// Lowercase hex SHA-256 over the record's canonical JSON without the
// engine's statistics (estimated_rows, estimated_bytes), so that an
// incremental run sees a change of structure, not of row counts.
std::string fingerprint(const Record& record);

}  // namespace sa::metadata
