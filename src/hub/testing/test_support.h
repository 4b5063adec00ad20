#pragma once
// Helpers for hub_tests only: temporary directories, cheap scrypt, sample
// metadata chunks.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/crypto/password_hash.h"
#include "common/crypto/random.h"
#include "common/metadata/model.h"
#include "common/testing/temp_dir.h"

namespace sa::hub::testing {

// scrypt at a cost that keeps tests fast; production uses the default.
inline crypto::ScryptParams fast_scrypt() {
    return crypto::ScryptParams{.n = 16, .r = 8, .p = 1};
}

using sa::testing::TempDir;

inline metadata::Table sample_table(const std::string& name, int columns,
                                    const std::string& kind = "table") {
    metadata::Table t;
    t.database = "main";
    t.schema = "main";
    t.name = name;
    t.kind = kind;
    if (kind == "view") t.definition = "CREATE VIEW " + name + " AS SELECT 1 AS id";
    for (int i = 1; i <= columns; ++i) {
        metadata::Column c;
        c.name = i == 1 ? "id" : "c" + std::to_string(i);
        c.ordinal = i;
        c.data_type = i == 1 ? "INTEGER" : "TEXT";
        c.normalized_type = i == 1 ? "integer" : "string";
        c.nullable = i != 1;
        c.primary_key_position = i == 1 && kind == "table" ? 1 : 0;
        if (i == 2) c.default_value = "'x'";
        t.columns.push_back(c);
    }
    if (kind == "table") {
        metadata::Index index;
        index.name = "idx_" + name;
        index.origin = "create_index";
        index.keys = {metadata::IndexKey{"id", ""}};
        t.indexes.push_back(index);
        metadata::Constraint fk;
        fk.type = "foreign_key";
        fk.columns = {"id"};
        fk.references = metadata::ObjectRef{"main", "parent"};
        fk.referenced_columns = {"id"};
        fk.on_update = "NO ACTION";
        fk.on_delete = "CASCADE";
        t.constraints.push_back(fk);
    }
    return t;
}

inline std::string chunk_of(const std::vector<metadata::Table>& tables) {
    std::string out;
    for (const auto& t : tables) out += metadata::to_json(t).dump() + "\n";
    return out;
}

inline std::string records_chunk(const std::vector<metadata::Record>& records) {
    std::string out;
    for (const auto& r : records) out += metadata::to_json(r).dump() + "\n";
    return out;
}

}  // namespace sa::hub::testing
