#include "agent/connectors/sqlite_connector.h"

#include "agent/connectors/factory.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "common/crypto/random.h"
#include "common/sqlite/database.h"
#include "common/util/files.h"

namespace sa::agent::connectors {
namespace {

namespace fs = std::filesystem;
using metadata::Column;
using metadata::ForeignKey;
using metadata::Index;
using metadata::Table;

class RecordingSink final : public MetadataSink {
  public:
    Status write(const Table& table) override {
        ++calls;
        if (fail_on_call == calls) return fail(ErrorCode::unavailable, "spool disk full");
        tables.push_back(table);
        return {};
    }
    std::vector<Table> tables;
    int calls = 0;
    int fail_on_call = 0;  // 0 = never
};

Column col(std::string name, int64_t ordinal, std::string type, bool nullable,
           std::optional<std::string> default_value = std::nullopt, int64_t pk = 0) {
    return {std::move(name), ordinal, std::move(type), nullable, std::move(default_value), pk};
}

Table table(std::string name, std::vector<Column> columns, std::vector<Index> indexes = {},
            std::vector<ForeignKey> fks = {}) {
    return {.database = "main",
            .schema = "main",
            .name = std::move(name),
            .kind = "table",
            .definition = std::nullopt,
            .columns = std::move(columns),
            .indexes = std::move(indexes),
            .foreign_keys = std::move(fks)};
}

class SqliteConnectorTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-sqlite-connector-" + crypto::random_token(9));
        fs::create_directories(dir_);
        path_ = (dir_ / "source.db").string();
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // Creates path_ with the given schema through a separate, writable connection.
    void create(const std::string& sql) {
        auto db = sqlite::Database::open(path_, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db) << db.error().message;
        auto st = db->exec(sql);
        ASSERT_TRUE(st) << st.error().message;
    }

    Result<ExtractSummary> extract(RecordingSink& sink) {
        auto connector = make_sqlite_connector(path_);
        if (!connector) return std::unexpected(connector.error());
        return (*connector)->extract(sink);
    }

    fs::path dir_;
    std::string path_;
};

constexpr const char* kShopSchema = R"sql(
CREATE TABLE customers(
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL DEFAULT 'new',
  created_at TEXT DEFAULT (datetime('now')),
  score REAL DEFAULT 1.5
);
CREATE TABLE orders(
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  qty INTEGER,
  price REAL,
  total REAL GENERATED ALWAYS AS (qty * price) VIRTUAL
);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE INDEX idx_orders_positive ON orders(qty) WHERE qty > 0;
CREATE UNIQUE INDEX idx_orders_expr ON orders(lower(price), qty DESC);
CREATE TABLE order_lines(
  order_id INTEGER NOT NULL,
  line_no INTEGER NOT NULL,
  sku TEXT,
  PRIMARY KEY (order_id, line_no),
  FOREIGN KEY (order_id) REFERENCES orders(id) ON DELETE CASCADE
);
CREATE TABLE shipments(
  id INTEGER PRIMARY KEY,
  order_id INTEGER,
  line_no INTEGER,
  customer_id INTEGER,
  FOREIGN KEY (order_id, line_no) REFERENCES order_lines(order_id, line_no)
    ON UPDATE CASCADE ON DELETE SET NULL,
  FOREIGN KEY (customer_id) REFERENCES customers
);
CREATE TABLE settings(key TEXT PRIMARY KEY, value BLOB, UNIQUE(value)) WITHOUT ROWID;
CREATE VIEW customer_orders AS SELECT c.email, o.qty
  FROM customers c JOIN orders o ON o.customer_id = c.id;
INSERT INTO customers(email) VALUES ('a@example.com');
INSERT INTO orders(customer_id, qty, price) VALUES (1, 2, 3.5);
)sql";

std::vector<Table> expected_shop() {
    Table view{.database = "main",
               .schema = "main",
               .name = "customer_orders",
               .kind = "view",
               .definition =
                   "CREATE VIEW customer_orders AS SELECT c.email, o.qty\n"
                   "  FROM customers c JOIN orders o ON o.customer_id = c.id",
               .columns = {col("email", 1, "TEXT", true), col("qty", 2, "INTEGER", true)}};
    return {
        view,
        table("customers",
              {col("id", 1, "INTEGER", false, std::nullopt, 1), col("email", 2, "TEXT", false),
               col("status", 3, "TEXT", false, "'new'"),
               col("created_at", 4, "TEXT", true, "datetime('now')"),
               col("score", 5, "REAL", true, "1.5")},
              {{"sqlite_autoindex_customers_1", true, "unique_constraint", false, {"email"}}}),
        table("order_lines",
              {col("order_id", 1, "INTEGER", false, std::nullopt, 1),
               col("line_no", 2, "INTEGER", false, std::nullopt, 2), col("sku", 3, "TEXT", true)},
              {{"sqlite_autoindex_order_lines_1",
                true,
                "primary_key",
                false,
                {"order_id", "line_no"}}},
              {{"orders", {"order_id"}, {"id"}, "NO ACTION", "CASCADE"}}),
        table("orders",
              {col("id", 1, "INTEGER", false, std::nullopt, 1),
               col("customer_id", 2, "INTEGER", false), col("qty", 3, "INTEGER", true),
               col("price", 4, "REAL", true), col("total", 5, "REAL", true)},
              {{"idx_orders_customer", false, "create_index", false, {"customer_id"}},
               {"idx_orders_expr", true, "create_index", false, {"<expr>", "qty"}},
               {"idx_orders_positive", false, "create_index", true, {"qty"}}},
              {{"customers", {"customer_id"}, {"id"}, "NO ACTION", "CASCADE"}}),
        table("settings",
              {col("key", 1, "TEXT", false, std::nullopt, 1), col("value", 2, "BLOB", true)},
              {{"sqlite_autoindex_settings_1", true, "primary_key", false, {"key"}},
               {"sqlite_autoindex_settings_2", true, "unique_constraint", false, {"value"}}}),
        table("shipments",
              {col("id", 1, "INTEGER", false, std::nullopt, 1), col("order_id", 2, "INTEGER", true),
               col("line_no", 3, "INTEGER", true), col("customer_id", 4, "INTEGER", true)},
              {},
              {{"order_lines",
                {"order_id", "line_no"},
                {"order_id", "line_no"},
                "CASCADE",
                "SET NULL"},
               {"customers", {"customer_id"}, {""}, "NO ACTION", "NO ACTION"}}),
    };
}

TEST_F(SqliteConnectorTest, ExtractsTablesViewsColumnsIndexesAndForeignKeys) {
    create(kShopSchema);
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();

    auto expected = expected_shop();
    ASSERT_EQ(sink.tables.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        // JSON comparison prints a readable diff of the whole object.
        EXPECT_EQ(metadata::to_json(sink.tables[i]).dump(1),
                  metadata::to_json(expected[i]).dump(1));
    }
    EXPECT_EQ(summary->tables, 5);
    EXPECT_EQ(summary->views, 1);
    EXPECT_EQ(summary->columns, 21);
    EXPECT_EQ(summary->indexes, 7);
    EXPECT_EQ(summary->foreign_keys, 4);
}

TEST_F(SqliteConnectorTest, ExtractedTablesSurviveTheWireFormat) {
    create(kShopSchema);
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    for (const auto& t : sink.tables) {
        auto back = metadata::table_from_json(metadata::to_json(t));
        ASSERT_TRUE(back) << t.name << ": " << back.error().message;
    }
}

TEST_F(SqliteConnectorTest, ExtractingTwiceGivesTheSameResult) {
    create(kShopSchema);
    auto connector = make_sqlite_connector(path_);
    ASSERT_TRUE(connector);
    RecordingSink first, second;
    ASSERT_TRUE((*connector)->extract(first));
    ASSERT_TRUE((*connector)->extract(second));
    ASSERT_EQ(first.tables.size(), second.tables.size());
    for (size_t i = 0; i < first.tables.size(); ++i) {
        EXPECT_EQ(metadata::to_json(first.tables[i]), metadata::to_json(second.tables[i]));
    }
}

std::set<std::string> directory_listing(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
}

TEST_F(SqliteConnectorTest, SourceFileIsLeftUntouched) {
    create(kShopSchema);
    auto before = util::read_file(path_);
    ASSERT_TRUE(before);
    auto mtime_before = fs::last_write_time(path_);
    auto listing_before = directory_listing(dir_);

    {
        RecordingSink sink;
        ASSERT_TRUE(extract(sink));
    }

    auto after = util::read_file(path_);
    ASSERT_TRUE(after);
    EXPECT_TRUE(*before == *after) << "database bytes changed";
    EXPECT_EQ(fs::last_write_time(path_), mtime_before);
    EXPECT_EQ(directory_listing(dir_), listing_before) << "journal or other files were left behind";
}

TEST_F(SqliteConnectorTest, MissingFileIsNotFoundNamingThePath) {
    auto connector = make_sqlite_connector(path_);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::not_found);
    EXPECT_EQ(connector.error().message, "sqlite source file not found: " + path_);
    // Read-only opening must not have created the file either.
    EXPECT_FALSE(fs::exists(path_));
}

TEST_F(SqliteConnectorTest, DirectoryIsRefused) {
    auto connector = make_sqlite_connector(dir_.string());
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(connector.error().message.find(dir_.string()), std::string::npos);
}

TEST_F(SqliteConnectorTest, SinkErrorStopsExtractionAndPropagates) {
    create(kShopSchema);
    RecordingSink sink;
    sink.fail_on_call = 2;
    auto summary = extract(sink);
    ASSERT_FALSE(summary);
    EXPECT_EQ(summary.error().code, ErrorCode::unavailable);
    EXPECT_EQ(summary.error().message, "spool disk full");
    EXPECT_EQ(sink.calls, 2);
    EXPECT_EQ(sink.tables.size(), 1u);
}

TEST_F(SqliteConnectorTest, GarbageFileErrorsCleanly) {
    std::ofstream(path_, std::ios::binary) << std::string(8192, 'x') << "not a database";
    auto connector = make_sqlite_connector(path_);
    ASSERT_FALSE(connector);
    EXPECT_EQ(connector.error().code, ErrorCode::io);
    EXPECT_NE(connector.error().message.find(path_), std::string::npos);
}

TEST_F(SqliteConnectorTest, CorruptDatabaseErrorsCleanly) {
    create(kShopSchema);
    auto bytes = util::read_file(path_);
    ASSERT_TRUE(bytes);
    // Keep the 100-byte header valid, clobber the schema b-tree page after it.
    std::string corrupt = *bytes;
    for (size_t i = 100; i < 4096 && i < corrupt.size(); ++i) corrupt[i] = '\xff';
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << corrupt;

    auto connector = make_sqlite_connector(path_);
    if (connector) {
        RecordingSink sink;
        auto summary = (*connector)->extract(sink);
        ASSERT_FALSE(summary);
        EXPECT_NE(summary.error().message.find(path_), std::string::npos);
    } else {
        EXPECT_EQ(connector.error().code, ErrorCode::io);
        EXPECT_NE(connector.error().message.find(path_), std::string::npos);
    }
}

TEST_F(SqliteConnectorTest, EmptyFileIsAnEmptyDatabase) {
    std::ofstream(path_, std::ios::binary).flush();
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_EQ(summary->tables, 0);
    EXPECT_TRUE(sink.tables.empty());
}

TEST_F(SqliteConnectorTest, NamesWithQuotesAndSpacesAreNeverSpliced) {
    create(R"sql(
CREATE TABLE "weird ""name""; DROP" (
  "col ""x""" INTEGER PRIMARY KEY,
  "sp ace" TEXT NOT NULL,
  "it's" TEXT
);
CREATE INDEX "idx ""q""; DROP" ON "weird ""name""; DROP"("sp ace", "it's");
CREATE TABLE child(parent INTEGER REFERENCES "weird ""name""; DROP"("col ""x"""));
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    ASSERT_EQ(sink.tables.size(), 2u);
    const Table& child = sink.tables[0];
    const Table& weird = sink.tables[1];
    EXPECT_EQ(weird.name, "weird \"name\"; DROP");
    ASSERT_EQ(weird.columns.size(), 3u);
    EXPECT_EQ(weird.columns[0].name, "col \"x\"");
    EXPECT_EQ(weird.columns[1].name, "sp ace");
    EXPECT_FALSE(weird.columns[1].nullable);
    EXPECT_EQ(weird.columns[2].name, "it's");
    ASSERT_EQ(weird.indexes.size(), 1u);
    EXPECT_EQ(weird.indexes[0].name, "idx \"q\"; DROP");
    EXPECT_EQ(weird.indexes[0].columns, (std::vector<std::string>{"sp ace", "it's"}));
    ASSERT_EQ(child.foreign_keys.size(), 1u);
    EXPECT_EQ(child.foreign_keys[0].referenced_table, "weird \"name\"; DROP");
    EXPECT_EQ(child.foreign_keys[0].referenced_columns, std::vector<std::string>{"col \"x\""});
}

TEST_F(SqliteConnectorTest, VirtualTablesAreIncludedOrSkipped) {
    create(R"sql(
CREATE VIRTUAL TABLE docs USING fts5(title, body);
PRAGMA writable_schema = ON;
INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql)
  VALUES ('table', 'ghost', 'ghost', 0, 'CREATE VIRTUAL TABLE ghost USING no_such_module(a, b)');
PRAGMA writable_schema = OFF;
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    const Table* docs = nullptr;
    for (const auto& t : sink.tables) {
        EXPECT_NE(t.name, "ghost") << "a virtual table whose module is missing is skipped";
        if (t.name == "docs") docs = &t;
    }
    ASSERT_NE(docs, nullptr);
    EXPECT_EQ(docs->kind, "table");
    // fts5's hidden columns (docs, rank) are not part of the declared shape.
    ASSERT_EQ(docs->columns.size(), 2u);
    EXPECT_EQ(docs->columns[0].name, "title");
    EXPECT_EQ(docs->columns[1].name, "body");
    EXPECT_EQ(summary->tables, static_cast<int64_t>(sink.tables.size()));
}

TEST_F(SqliteConnectorTest, BrokenViewKeepsItsDefinition) {
    create(R"sql(
CREATE TABLE gone(a INTEGER);
CREATE VIEW stale AS SELECT a FROM gone;
DROP TABLE gone;
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    ASSERT_EQ(sink.tables.size(), 1u);
    EXPECT_EQ(sink.tables[0].kind, "view");
    EXPECT_EQ(sink.tables[0].definition, "CREATE VIEW stale AS SELECT a FROM gone");
    EXPECT_TRUE(sink.tables[0].columns.empty());
    EXPECT_EQ(summary->views, 1);
}

TEST_F(SqliteConnectorTest, IntegerPrimaryKeyDescIsNotTheRowid) {
    // SQLite quirk: "INTEGER PRIMARY KEY DESC" is not a rowid alias and may hold NULL.
    create("CREATE TABLE q(x INTEGER PRIMARY KEY DESC, y TEXT);");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_EQ(sink.tables.size(), 1u);
    EXPECT_TRUE(sink.tables[0].columns[0].nullable);
    EXPECT_EQ(sink.tables[0].columns[0].primary_key_position, 1);
}

TEST_F(SqliteConnectorTest, ThousandsOfTablesAreCounted) {
    constexpr int kTables = 2000;
    std::string sql = "BEGIN;";
    for (int i = 0; i < kTables; ++i) {
        std::string name = "t" + std::to_string(i);
        sql += "CREATE TABLE " + name + "(id INTEGER PRIMARY KEY, label TEXT NOT NULL, ref INTEGER";
        if (i > 0) sql += " REFERENCES t" + std::to_string(i - 1) + "(id)";
        sql += ");CREATE INDEX idx_" + name + " ON " + name + "(label);";
    }
    sql += "CREATE VIEW v_all AS SELECT id FROM t0;COMMIT;";
    create(sql);

    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_EQ(summary->tables, kTables);
    EXPECT_EQ(summary->views, 1);
    EXPECT_EQ(summary->columns, 3 * kTables + 1);
    EXPECT_EQ(summary->indexes, kTables);
    EXPECT_EQ(summary->foreign_keys, kTables - 1);
    EXPECT_EQ(sink.tables.size(), static_cast<size_t>(kTables + 1));
}

TEST_F(SqliteConnectorTest, TestConnectionReportsTheLibraryVersion) {
    create(kShopSchema);
    auto connector = make_sqlite_connector(path_);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto info = (*connector)->test_connection();
    ASSERT_TRUE(info) << info.error().describe();
    EXPECT_EQ(info->server_version, sqlite3_libversion());
}

TEST_F(SqliteConnectorTest, PreflightChecksOpenCatalogAndObjects) {
    create(kShopSchema);
    auto connector = make_sqlite_connector(path_);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto report = (*connector)->preflight();
    ASSERT_TRUE(report) << report.error().describe();
    EXPECT_EQ(report->server_version, sqlite3_libversion());
    ASSERT_EQ(report->checks.size(), 3u);
    EXPECT_EQ(report->checks[0].name, "open");
    EXPECT_TRUE(report->checks[0].ok);
    EXPECT_EQ(report->checks[1].name, "read_catalog");
    EXPECT_TRUE(report->checks[1].ok);
    EXPECT_EQ(report->checks[1].detail, "5 tables, 1 views");
    EXPECT_EQ(report->checks[2].name, "describe_objects");
    EXPECT_TRUE(report->checks[2].ok);
    EXPECT_EQ(report->checks[2].detail, "6 of 6 tables and views readable");
}

TEST_F(SqliteConnectorTest, PreflightCountsObjectsThatCannotBeDescribed) {
    create(
        "CREATE TABLE t(a); CREATE VIEW v AS SELECT a FROM t; DROP TABLE t;"
        "CREATE TABLE u(b);");
    auto connector = make_sqlite_connector(path_);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto report = (*connector)->preflight();
    ASSERT_TRUE(report) << report.error().describe();
    ASSERT_EQ(report->checks.size(), 3u);
    EXPECT_FALSE(report->checks[2].ok);
    EXPECT_EQ(report->checks[2].detail, "1 of 2 tables and views readable");
}

TEST_F(SqliteConnectorTest, ListSchemasCountsTablesAndViewsOfMain) {
    create(kShopSchema);
    auto connector = make_sqlite_connector(path_);
    ASSERT_TRUE(connector) << connector.error().describe();
    auto schemas = (*connector)->list_schemas();
    ASSERT_TRUE(schemas) << schemas.error().describe();
    ASSERT_EQ(schemas->size(), 1u);
    EXPECT_EQ((*schemas)[0].database, "main");
    EXPECT_EQ((*schemas)[0].schema, "main");
    EXPECT_EQ((*schemas)[0].tables, 6);
}

TEST_F(SqliteConnectorTest, FactoryDispatchesOnTheConnectorName) {
    create(kShopSchema);
    auto connector =
        make_connector(SourceParams{.name = "shop", .connector = "sqlite", .path = path_});
    ASSERT_TRUE(connector) << connector.error().describe();
    RecordingSink sink;
    ASSERT_TRUE((*connector)->extract(sink));
    EXPECT_EQ(sink.tables.size(), 6u);

    auto unknown = make_connector(SourceParams{.name = "shop", .connector = "oracle"});
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(unknown.error().message.find("\"oracle\""), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::connectors
