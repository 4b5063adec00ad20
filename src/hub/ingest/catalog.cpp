#include "hub/ingest/catalog.h"

namespace sa::hub::ingest {
namespace {

using sqlite::Statement;

constexpr const char* kEntryColumns =
    "t.app, t.source, t.database_name, t.schema_name, t.name, t.kind, t.definition, "
    "(SELECT count(*) FROM catalog_columns c WHERE c.table_id = t.id), t.job_id, "
    "t.ingested_at_ms";

// ?1 app, ?2 source, ?3 table name; NULL = any.
constexpr const char* kFilter =
    " WHERE (?1 IS NULL OR t.app = ?1) AND (?2 IS NULL OR t.source = ?2) AND "
    "(?3 IS NULL OR t.name = ?3)";

CatalogEntry read_entry(const Statement& s) {
    return CatalogEntry{s.text(0), s.text(1),          s.text(2),    s.text(3), s.text(4),
                        s.text(5), s.optional_text(6), s.integer(7), s.text(8), s.integer(9)};
}

std::string json_array(const std::vector<std::string>& items) {
    return nlohmann::json(items).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string CatalogEntry::qualified_name() const {
    return source + "/" + database + "/" + schema + "/" + name;
}

nlohmann::json to_json(const CatalogEntry& e) {
    return {
        {"app", e.app},
        {"source", e.source},
        {"database", e.database},
        {"schema", e.schema},
        {"name", e.name},
        {"kind", e.kind},
        {"columns", e.columns},
        {"definition", e.definition ? nlohmann::json(*e.definition) : nlohmann::json(nullptr)},
        {"job_id", e.job_id},
        {"ingested_at_ms", e.ingested_at_ms},
    };
}

Result<std::vector<CatalogEntry>> Catalog::tables(const CatalogFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<CatalogEntry>> {
        auto st = store::prepare(db,
                                 std::string("SELECT ") + kEntryColumns + " FROM catalog_tables t" +
                                     kFilter +
                                     " ORDER BY t.app, t.source, t.database_name, "
                                     "t.schema_name, t.name",
                                 filter.app, filter.source, filter.table);
        if (!st) return std::unexpected(st.error());
        std::vector<CatalogEntry> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == Statement::Step::done) break;
            out.push_back(read_entry(*st));
        }
        return out;
    });
}

Result<std::vector<CatalogColumn>> Catalog::columns(const CatalogFilter& filter) {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<CatalogColumn>> {
        auto st = store::prepare(
            db,
            std::string("SELECT ") + kEntryColumns +
                ", c.name, c.ordinal, c.data_type, c.nullable, c.default_value, "
                "c.primary_key_position FROM catalog_tables t JOIN catalog_columns c ON "
                "c.table_id = t.id" +
                kFilter +
                " ORDER BY t.app, t.source, t.database_name, t.schema_name, t.name, c.ordinal",
            filter.app, filter.source, filter.table);
        if (!st) return std::unexpected(st.error());
        std::vector<CatalogColumn> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == Statement::Step::done) break;
            metadata::Column c;
            c.name = st->text(10);
            c.ordinal = st->integer(11);
            c.data_type = st->text(12);
            c.nullable = st->integer(13) != 0;
            c.default_value = st->optional_text(14);
            c.primary_key_position = st->integer(15);
            out.push_back(CatalogColumn{read_entry(*st), std::move(c)});
        }
        return out;
    });
}

Status replace_catalog(sqlite::Database& db, const std::string& app, const std::string& source,
                       const std::vector<metadata::Table>& tables, const std::string& job_id,
                       int64_t now_ms) {
    // Children first: correct whether or not foreign_keys is enabled.
    for (const char* child : {"catalog_columns", "catalog_indexes", "catalog_foreign_keys"}) {
        if (auto s = store::execute(db,
                                    std::string("DELETE FROM ") + child +
                                        " WHERE table_id IN (SELECT id FROM catalog_tables "
                                        "WHERE app = ? AND source = ?)",
                                    app, source);
            !s) {
            return s;
        }
    }
    if (auto s = store::execute(db, "DELETE FROM catalog_tables WHERE app = ? AND source = ?", app,
                                source);
        !s) {
        return s;
    }
    auto table_st = db.prepare(
        "INSERT INTO catalog_tables(app, source, database_name, schema_name, name, kind, "
        "definition, job_id, ingested_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    auto column_st = db.prepare(
        "INSERT INTO catalog_columns(table_id, name, ordinal, data_type, nullable, default_value, "
        "primary_key_position) VALUES (?, ?, ?, ?, ?, ?, ?)");
    auto index_st = db.prepare(
        "INSERT INTO catalog_indexes(table_id, name, is_unique, origin, partial, columns) "
        "VALUES (?, ?, ?, ?, ?, ?)");
    auto fk_st = db.prepare(
        "INSERT INTO catalog_foreign_keys(table_id, position, referenced_table, columns, "
        "referenced_columns, on_update, on_delete) VALUES (?, ?, ?, ?, ?, ?, ?)");
    for (auto* st : {&table_st, &column_st, &index_st, &fk_st}) {
        if (!*st) return std::unexpected(st->error());
    }
    for (const auto& t : tables) {
        table_st->reset();
        store::bind_one(*table_st, 1, app);
        store::bind_one(*table_st, 2, source);
        store::bind_one(*table_st, 3, t.database);
        store::bind_one(*table_st, 4, t.schema);
        store::bind_one(*table_st, 5, t.name);
        store::bind_one(*table_st, 6, t.kind);
        store::bind_one(*table_st, 7, t.definition);
        store::bind_one(*table_st, 8, job_id);
        store::bind_one(*table_st, 9, now_ms);
        if (auto s = table_st->run(); !s) return s;
        int64_t table_id = db.last_insert_rowid();
        for (const auto& c : t.columns) {
            column_st->reset();
            store::bind_one(*column_st, 1, table_id);
            store::bind_one(*column_st, 2, c.name);
            store::bind_one(*column_st, 3, c.ordinal);
            store::bind_one(*column_st, 4, c.data_type);
            store::bind_one(*column_st, 5, c.nullable);
            store::bind_one(*column_st, 6, c.default_value);
            store::bind_one(*column_st, 7, c.primary_key_position);
            if (auto s = column_st->run(); !s) return s;
        }
        for (const auto& i : t.indexes) {
            index_st->reset();
            store::bind_one(*index_st, 1, table_id);
            store::bind_one(*index_st, 2, i.name);
            store::bind_one(*index_st, 3, i.unique);
            store::bind_one(*index_st, 4, i.origin);
            store::bind_one(*index_st, 5, i.partial);
            store::bind_one(*index_st, 6, json_array(i.columns));
            if (auto s = index_st->run(); !s) return s;
        }
        int64_t position = 0;
        for (const auto& fk : t.foreign_keys) {
            fk_st->reset();
            store::bind_one(*fk_st, 1, table_id);
            store::bind_one(*fk_st, 2, position++);
            store::bind_one(*fk_st, 3, fk.referenced_table);
            store::bind_one(*fk_st, 4, json_array(fk.columns));
            store::bind_one(*fk_st, 5, json_array(fk.referenced_columns));
            store::bind_one(*fk_st, 6, fk.on_update);
            store::bind_one(*fk_st, 7, fk.on_delete);
            if (auto s = fk_st->run(); !s) return s;
        }
    }
    return {};
}

}  // namespace sa::hub::ingest
