#include "agent/connectors/sqlite_connector.h"

#include <filesystem>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/sqlite/database.h"

namespace sa::agent::connectors {

namespace {

using sqlite::Database;
using sqlite::Statement;

// Every object name reaches SQLite only as a bound parameter of a pragma's
// table-valued form; 'main' pins the lookup to the opened file (a temp
// object of the same name cannot shadow it).
constexpr std::string_view kSchemaSql =
    "SELECT type, name, sql FROM sqlite_schema "
    "WHERE type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";
constexpr std::string_view kColumnsSql =
    "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden "
    "FROM pragma_table_xinfo(?1, 'main') ORDER BY cid";
constexpr std::string_view kIndexesSql =
    "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1, 'main') ORDER BY name";
constexpr std::string_view kIndexColumnsSql =
    "SELECT name FROM pragma_index_xinfo(?1, 'main') WHERE key = 1 ORDER BY seqno";
// SQLite numbers foreign keys last-declared first; descending id gives the
// declaration order, which is what a reader of the DDL expects.
constexpr std::string_view kForeignKeysSql =
    "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete "
    "FROM pragma_foreign_key_list(?1, 'main') ORDER BY id DESC, seq";

// pragma_table_xinfo "hidden": 1 marks the hidden columns of a virtual table
// (not part of its declared shape); 2 and 3 are generated columns, kept.
constexpr int64_t kHiddenVirtualTableColumn = 1;

std::string origin_name(std::string_view origin) {
    if (origin == "pk") return "primary_key";
    if (origin == "u") return "unique_constraint";
    return "create_index";  // "c"
}

bool is_virtual_table(std::string_view sql) {
    // sqlite_schema keeps the statement as written; only the leading words matter.
    constexpr std::string_view kPrefix = "CREATE VIRTUAL TABLE";
    if (sql.size() < kPrefix.size()) return false;
    for (size_t i = 0; i < kPrefix.size(); ++i) {
        char c = sql[i];
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
        if (c != kPrefix[i]) return false;
    }
    return true;
}

class SqliteConnector final : public Connector {
  public:
    SqliteConnector(std::string path, Database db) : path_(std::move(path)), db_(std::move(db)) {}

    Result<ExtractSummary> extract(MetadataSink& sink) override;
    Result<ConnectionInfo> test_connection() override;
    Result<PreflightReport> preflight() override;
    Result<std::vector<SchemaInfo>> list_schemas() override;

  private:
    struct Statements {
        Statement schema;
        Statement columns;
        Statement indexes;
        Statement index_columns;
        Statement foreign_keys;
    };

    Result<Statements> prepare_all();
    // Fills columns, indexes and foreign keys of table. A failing pragma is
    // returned as is so that the caller can decide whether the object is skipped.
    Status describe(Statements& s, metadata::Table& table);
    Status read_columns(Statement& st, metadata::Table& table);
    Status read_indexes(Statements& s, metadata::Table& table);
    Status read_foreign_keys(Statement& st, metadata::Table& table);
    Error with_path(const Error& e) const {
        return Error{e.code, "SQLite source " + path_ + ": " + e.message};
    }

    std::string path_;
    Database db_;
};

Result<SqliteConnector::Statements> SqliteConnector::prepare_all() {
    auto schema = db_.prepare(kSchemaSql);
    if (!schema) return std::unexpected(with_path(schema.error()));
    auto columns = db_.prepare(kColumnsSql);
    if (!columns) return std::unexpected(with_path(columns.error()));
    auto indexes = db_.prepare(kIndexesSql);
    if (!indexes) return std::unexpected(with_path(indexes.error()));
    auto index_columns = db_.prepare(kIndexColumnsSql);
    if (!index_columns) return std::unexpected(with_path(index_columns.error()));
    auto foreign_keys = db_.prepare(kForeignKeysSql);
    if (!foreign_keys) return std::unexpected(with_path(foreign_keys.error()));
    return Statements{std::move(*schema), std::move(*columns), std::move(*indexes),
                      std::move(*index_columns), std::move(*foreign_keys)};
}

Status SqliteConnector::read_columns(Statement& st, metadata::Table& table) {
    st.reset();
    st.bind(1, table.name);
    for (;;) {
        auto step = st.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        if (st.integer(6) == kHiddenVirtualTableColumn) continue;
        metadata::Column c;
        c.ordinal = st.integer(0) + 1;
        c.name = st.text(1);
        c.data_type = st.text(2);
        // A view column's NOT NULL flag is always 0 in SQLite: it says nothing.
        c.nullable = table.kind == "view" || st.integer(3) == 0;
        c.default_value = st.optional_text(4);
        c.primary_key_position = st.integer(5);
        table.columns.push_back(std::move(c));
    }
}

Status SqliteConnector::read_indexes(Statements& s, metadata::Table& table) {
    s.indexes.reset();
    s.indexes.bind(1, table.name);
    for (;;) {
        auto step = s.indexes.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        metadata::Index x;
        x.name = s.indexes.text(0);
        x.unique = s.indexes.integer(1) != 0;
        x.origin = origin_name(s.indexes.text(2));
        x.partial = s.indexes.integer(3) != 0;
        s.index_columns.reset();
        s.index_columns.bind(1, x.name);
        for (;;) {
            auto col = s.index_columns.step();
            if (!col) return std::unexpected(col.error());
            if (*col == Statement::Step::done) break;
            // A NULL name is an expression part of the index key.
            x.columns.push_back(s.index_columns.optional_text(0).value_or("<expr>"));
        }
        table.indexes.push_back(std::move(x));
    }
}

Status SqliteConnector::read_foreign_keys(Statement& st, metadata::Table& table) {
    st.reset();
    st.bind(1, table.name);
    std::optional<int64_t> current_id;
    for (;;) {
        auto step = st.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        int64_t id = st.integer(0);
        if (current_id != id) {
            current_id = id;
            table.foreign_keys.push_back(metadata::ForeignKey{
                .referenced_table = st.text(1), .on_update = st.text(4), .on_delete = st.text(5)});
        }
        auto& fk = table.foreign_keys.back();
        fk.columns.push_back(st.text(2));
        // NULL "to": the key references the parent's primary key.
        fk.referenced_columns.push_back(st.text(3));
    }
}

Status SqliteConnector::describe(Statements& s, metadata::Table& table) {
    if (auto st = read_columns(s.columns, table); !st) return st;
    if (table.kind == "view") return {};
    if (auto st = read_indexes(s, table); !st) return st;
    if (auto st = read_foreign_keys(s.foreign_keys, table); !st) return st;

    // table_xinfo reports notnull = 0 for an INTEGER PRIMARY KEY, yet that
    // column is the rowid and can never hold NULL. It is the rowid alias
    // exactly when the table has a single-column primary key and no index
    // backs it (WITHOUT ROWID tables and other primary keys get one, and
    // already report NOT NULL where SQLite enforces it).
    metadata::Column* pk_column = nullptr;
    int pk_columns = 0;
    for (auto& c : table.columns) {
        if (c.primary_key_position > 0) {
            ++pk_columns;
            pk_column = &c;
        }
    }
    bool pk_index = false;
    for (const auto& x : table.indexes) pk_index = pk_index || x.origin == "primary_key";
    if (pk_columns == 1 && !pk_index && pk_column != nullptr) pk_column->nullable = false;
    return {};
}

Result<ExtractSummary> SqliteConnector::extract(MetadataSink& sink) {
    auto statements = prepare_all();
    if (!statements) return std::unexpected(statements.error());
    Statements& s = *statements;
    s.schema.reset();

    // The schema statement stays open for the whole walk, so every table is
    // described from one read snapshot of the file, and only one table's
    // metadata is held at a time.
    ExtractSummary summary;
    for (;;) {
        auto step = s.schema.step();
        if (!step) return std::unexpected(with_path(step.error()));
        if (*step == Statement::Step::done) break;

        metadata::Table table;
        table.database = "main";
        table.schema = "main";
        table.kind = s.schema.text(0);
        table.name = s.schema.text(1);
        std::optional<std::string> sql = s.schema.optional_text(2);
        if (table.kind == "view") table.definition = sql;

        if (auto st = describe(s, table); !st) {
            if (table.kind == "view") {
                // A view over a dropped table or column cannot be expanded; its
                // definition is still worth cataloguing.
                table.columns.clear();
            } else if (sql && is_virtual_table(*sql)) {
                // The module (an extension this build lacks) cannot be loaded:
                // nothing can be said about its columns.
                continue;
            } else {
                return std::unexpected(with_path(st.error()));
            }
        }

        if (auto st = sink.write(table); !st) return std::unexpected(st.error());
        (table.kind == "view" ? summary.views : summary.tables) += 1;
        summary.columns += static_cast<int64_t>(table.columns.size());
        summary.indexes += static_cast<int64_t>(table.indexes.size());
        summary.foreign_keys += static_cast<int64_t>(table.foreign_keys.size());
    }
    return summary;
}

Result<std::string> server_version(Database& db) {
    auto st = db.prepare("SELECT sqlite_version()");
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    if (*step != Statement::Step::row)
        return fail(ErrorCode::internal, "sqlite_version() gave no row");
    return st->text(0);
}

Result<ConnectionInfo> SqliteConnector::test_connection() {
    auto version = server_version(db_);
    if (!version) return std::unexpected(with_path(version.error()));
    return ConnectionInfo{std::move(*version)};
}

Result<PreflightReport> SqliteConnector::preflight() {
    PreflightReport report;
    // The factory opened the file and read its header: "open" has passed.
    report.checks.push_back({"open", true, "opened read-only"});
    if (auto version = server_version(db_); version) report.server_version = std::move(*version);

    auto schema = db_.prepare(kSchemaSql);
    auto columns = db_.prepare(kColumnsSql);
    if (!schema || !columns) {
        const Error& e = !schema ? schema.error() : columns.error();
        report.checks.push_back({"read_catalog", false, e.message});
        return report;
    }
    std::vector<std::pair<std::string, std::string>> objects;  // kind, name
    for (;;) {
        auto step = schema->step();
        if (!step) {
            report.checks.push_back({"read_catalog", false, step.error().message});
            return report;
        }
        if (*step == Statement::Step::done) break;
        objects.emplace_back(schema->text(0), schema->text(1));
    }
    int64_t tables = 0;
    for (const auto& object : objects) tables += object.first == "table" ? 1 : 0;
    report.checks.push_back({"read_catalog", true,
                             std::to_string(tables) + " tables, " +
                                 std::to_string(static_cast<int64_t>(objects.size()) - tables) +
                                 " views"});

    // Describing an object is what extraction does for each of them; one
    // that cannot be described (a virtual table whose module is missing, a
    // view over a dropped table) is counted, not fatal.
    int64_t readable = 0;
    for (const auto& object : objects) {
        columns->reset();
        columns->bind(1, object.second);
        bool ok = true;
        for (;;) {
            auto step = columns->step();
            if (!step) {
                ok = false;
                break;
            }
            if (*step == Statement::Step::done) break;
        }
        readable += ok ? 1 : 0;
    }
    const auto total = static_cast<int64_t>(objects.size());
    report.checks.push_back(
        {"describe_objects", readable == total,
         std::to_string(readable) + " of " + std::to_string(total) + " tables and views readable"});
    return report;
}

Result<std::vector<SchemaInfo>> SqliteConnector::list_schemas() {
    auto databases = db_.prepare("SELECT name FROM pragma_database_list ORDER BY seq");
    if (!databases) return std::unexpected(with_path(databases.error()));
    auto count = db_.prepare(
        "SELECT count(*) FROM pragma_table_list WHERE schema = ?1 "
        "AND type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
    if (!count) return std::unexpected(with_path(count.error()));
    std::vector<SchemaInfo> schemas;
    for (;;) {
        auto step = databases->step();
        if (!step) return std::unexpected(with_path(step.error()));
        if (*step == Statement::Step::done) break;
        SchemaInfo info;
        // An SQLite file is one database; its attached names are schemas,
        // which is how extract() labels its tables ("main"."main").
        info.database = "main";
        info.schema = databases->text(0);
        count->reset();
        count->bind(1, info.schema);
        auto counted = count->step();
        if (!counted) return std::unexpected(with_path(counted.error()));
        info.tables = *counted == Statement::Step::row ? count->integer(0) : 0;
        schemas.push_back(std::move(info));
    }
    return schemas;
}

Status probe(Database& db) {
    auto st = db.prepare("SELECT count(*) FROM sqlite_schema");
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    return {};
}

}  // namespace

Result<ConnectorPtr> make_sqlite_connector(const std::string& path) {
    std::error_code ec;
    auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) {
        if (ec && ec != std::errc::no_such_file_or_directory) {
            return fail(ErrorCode::io,
                        "cannot access sqlite source file " + path + ": " + ec.message());
        }
        return fail(ErrorCode::not_found, "sqlite source file not found: " + path);
    }
    if (!std::filesystem::is_regular_file(status)) {
        return fail(ErrorCode::invalid_argument, "sqlite source is not a regular file: " + path);
    }
    // The wrapper opens without SQLITE_OPEN_URI, so a name like "file:x?mode=rw"
    // is a plain file name and cannot change how the file is opened.
    auto db = Database::open(path, Database::Mode::read_only);
    if (!db) return std::unexpected(db.error());
    // sqlite3_open_v2 does not read the file; this does, so a file that is
    // not a database (or is unreadable) is reported here, naming the path.
    if (auto st = probe(*db); !st) {
        return fail(ErrorCode::io, "cannot read sqlite source " + path + ": " + st.error().message);
    }
    return ConnectorPtr(std::make_unique<SqliteConnector>(path, std::move(*db)));
}

}  // namespace sa::agent::connectors
