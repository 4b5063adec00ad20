#pragma once
// The metadata model shared by the agent (producer) and the hub (consumer).
// Wire form: newline-delimited JSON, one table or view per line, with its
// columns, indexes and foreign keys nested (see docs/protocol.md, "Chunks").
// Parsing is strict: the hub treats chunks as untrusted input.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sa::metadata {

inline constexpr int kModelVersion = 1;

struct Column {
    std::string name;
    int64_t ordinal = 0;    // 1-based position in the table
    std::string data_type;  // as the engine spells it ("" when untyped)
    bool nullable = true;
    std::optional<std::string> default_value;  // SQL expression text
    int64_t primary_key_position = 0;          // 0 = not part of the primary key
};

struct Index {
    std::string name;
    bool unique = false;
    std::string origin;  // "create_index", "primary_key", "unique_constraint"
    bool partial = false;
    std::vector<std::string> columns;  // "<expr>" for expression parts
};

struct ForeignKey {
    std::string referenced_table;
    std::vector<std::string> columns;
    std::vector<std::string> referenced_columns;  // empty entries: the referenced primary key
    std::string on_update;
    std::string on_delete;
};

struct Table {
    std::string database;  // e.g. "main" for SQLite
    std::string schema;    // e.g. "main" for SQLite
    std::string name;
    std::string kind;                       // "table" or "view"
    std::optional<std::string> definition;  // view SQL
    std::vector<Column> columns;
    std::vector<Index> indexes;
    std::vector<ForeignKey> foreign_keys;
};

nlohmann::json to_json(const Table& table);
// Errors name the offending field, e.g. "columns[3].ordinal: expected integer".
Result<Table> table_from_json(const nlohmann::json& json);

// Parses one NDJSON chunk; errors carry the 1-based line number.
Result<std::vector<Table>> parse_chunk(std::string_view ndjson);

// "source/database/schema/table"
std::string qualified_name(std::string_view source, const Table& table);

}  // namespace sa::metadata
