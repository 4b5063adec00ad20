#include "agent/connectors/sqlite_connector.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "agent/connectors/factory.h"
#include "common/crypto/random.h"
#include "common/sqlite/database.h"
#include "common/util/files.h"

#include "common/metadata/testing/schema_check.h"

namespace sa::agent::connectors {
namespace {

namespace fs = std::filesystem;
using metadata::Column;
using metadata::Constraint;
using metadata::Index;
using metadata::IndexKey;
using metadata::ObjectRef;
using metadata::Table;

class RecordingSink final : public MetadataSink {
  public:
    bool wants(std::string_view schema, std::string_view relation) const override {
        asked.emplace_back(std::string(schema) + "." + std::string(relation));
        return !filter || filter(relation);
    }
    bool wants_schema(std::string_view) const override { return true; }
    Status write(const Table& table) override {
        ++calls;
        if (fail_on_call == calls) return fail(ErrorCode::unavailable, "spool disk full");
        tables.push_back(table);
        return {};
    }
    Status write(const metadata::Routine&) override {
        ++routines;
        return {};
    }
    std::vector<Table> tables;
    mutable std::vector<std::string> asked;
    std::function<bool(std::string_view)> filter;  // empty: everything
    int calls = 0;
    int routines = 0;
    int fail_on_call = 0;  // 0 = never

    const Table* find(std::string_view name) const {
        for (const auto& t : tables) {
            if (t.name == name) return &t;
        }
        return nullptr;
    }
};

Column col(std::string name, int64_t ordinal, std::string type, std::string normalized,
           bool nullable, std::optional<std::string> default_value = std::nullopt, int64_t pk = 0) {
    Column c;
    c.name = std::move(name);
    c.ordinal = ordinal;
    c.data_type = std::move(type);
    c.normalized_type = std::move(normalized);
    c.nullable = nullable;
    c.default_value = std::move(default_value);
    c.primary_key_position = pk;
    return c;
}

Column rowid_alias(std::string name) {
    Column c = col(std::move(name), 1, "INTEGER", "integer", false, std::nullopt, 1);
    c.identity = "by_default";
    return c;
}

Column generated(Column c, std::string how) {
    c.generated = std::move(how);
    return c;
}

Constraint primary_key(std::vector<std::string> columns) {
    return {.name = "", .type = "primary_key", .columns = std::move(columns)};
}

Constraint unique(std::vector<std::string> columns) {
    return {.name = "", .type = "unique", .columns = std::move(columns)};
}

Constraint foreign_key(std::vector<std::string> columns, std::string parent,
                       std::vector<std::string> parent_columns, std::string on_update,
                       std::string on_delete) {
    return {.name = "",
            .type = "foreign_key",
            .columns = std::move(columns),
            .references = ObjectRef{"main", std::move(parent)},
            .referenced_columns = std::move(parent_columns),
            .on_update = std::move(on_update),
            .on_delete = std::move(on_delete)};
}

IndexKey key(std::string column) {
    return {.column = std::move(column), .expression = ""};
}
IndexKey expression(std::string text) {
    return {.column = "", .expression = std::move(text)};
}

Index index(std::string name, bool unique, std::string origin, std::vector<IndexKey> keys,
            std::optional<std::string> predicate = std::nullopt) {
    return {.name = std::move(name),
            .unique = unique,
            .origin = std::move(origin),
            .method = "btree",
            .predicate = std::move(predicate),
            .keys = std::move(keys)};
}

Table table(std::string name, std::vector<Column> columns, std::vector<Constraint> constraints,
            std::vector<Index> indexes = {}) {
    Table t;
    t.database = "main";
    t.schema = "main";
    t.name = std::move(name);
    t.kind = "table";
    t.columns = std::move(columns);
    t.constraints = std::move(constraints);
    t.indexes = std::move(indexes);
    return t;
}

Table view(std::string name, std::string definition, std::vector<Column> columns,
           std::vector<std::string> depends_on) {
    Table t;
    t.database = "main";
    t.schema = "main";
    t.name = std::move(name);
    t.kind = "view";
    t.definition = std::move(definition);
    t.columns = std::move(columns);
    for (auto& d : depends_on) t.depends_on.push_back({"main", std::move(d)});
    return t;
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
        // No fsync per statement: the fixture is throwaway, the tests stay fast.
        ASSERT_TRUE(db->exec("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY"));
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

// JSON comparison prints a readable diff of the whole object; == then checks
// that nothing was lost on the way to JSON.
void expect_tables(const std::vector<Table>& actual, const std::vector<Table>& expected) {
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(metadata::to_json(actual[i]).dump(1), metadata::to_json(expected[i]).dump(1));
        EXPECT_TRUE(actual[i] == expected[i]) << expected[i].name;
    }
}

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
  customer_id INTEGER NOT NULL REFERENCES CUSTOMERS(id) ON DELETE CASCADE,
  qty INTEGER,
  price REAL,
  total REAL GENERATED ALWAYS AS (qty * price) VIRTUAL,
  doubled NUMERIC AS (qty * 2) STORED
);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE INDEX idx_orders_positive ON orders(qty) WHERE qty > 0 -- only real orders
;
CREATE UNIQUE INDEX idx_orders_expr ON orders(lower(price), qty DESC);
CREATE INDEX "idx ""tricky"", (x)" ON orders ( /* lead */ (qty + 1) * 2 COLLATE NOCASE DESC,
  "price" ASC, substr(',)', 1, 1) ) WHERE price > 0 AND /* kept */ qty <> 1;
CREATE INDEX idx_orders_paren ON orders((qty), abs(price));
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
CREATE VIEW big_orders AS SELECT * FROM customer_orders
  WHERE qty > (SELECT avg(qty) FROM orders);
CREATE VIEW shipment_count AS WITH s AS (SELECT count(*) AS n FROM shipments)
  SELECT n, n + 1 AS next FROM s, settings;
CREATE VIEW joined AS SELECT a.email FROM customer_orders a JOIN big_orders USING (email);
INSERT INTO customers(email) VALUES ('a@example.com');
INSERT INTO orders(customer_id, qty, price) VALUES (1, 2, 3.5);
)sql";

std::vector<Table> expected_shop() {
    return {
        view("big_orders",
             "CREATE VIEW big_orders AS SELECT * FROM customer_orders\n"
             "  WHERE qty > (SELECT avg(qty) FROM orders)",
             {col("email", 1, "TEXT", "string", true), col("qty", 2, "INTEGER", "integer", true)},
             {"customer_orders", "orders"}),
        view("customer_orders",
             "CREATE VIEW customer_orders AS SELECT c.email, o.qty\n"
             "  FROM customers c JOIN orders o ON o.customer_id = c.id",
             {col("email", 1, "TEXT", "string", true), col("qty", 2, "INTEGER", "integer", true)},
             {"customers", "orders"}),
        table("customers",
              {rowid_alias("id"), col("email", 2, "TEXT", "string", false),
               col("status", 3, "TEXT", "string", false, "'new'"),
               col("created_at", 4, "TEXT", "string", true, "datetime('now')"),
               col("score", 5, "REAL", "float", true, "1.5")},
              {primary_key({"id"}), unique({"email"})},
              {index("sqlite_autoindex_customers_1", true, "unique_constraint", {key("email")})}),
        view("joined",
             "CREATE VIEW joined AS SELECT a.email FROM customer_orders a JOIN big_orders USING "
             "(email)",
             {col("email", 1, "TEXT", "string", true)}, {"big_orders", "customer_orders"}),
        table("order_lines",
              {col("order_id", 1, "INTEGER", "integer", false, std::nullopt, 1),
               col("line_no", 2, "INTEGER", "integer", false, std::nullopt, 2),
               col("sku", 3, "TEXT", "string", true)},
              {primary_key({"order_id", "line_no"}),
               foreign_key({"order_id"}, "orders", {"id"}, "NO ACTION", "CASCADE")},
              {index("sqlite_autoindex_order_lines_1", true, "primary_key",
                     {key("order_id"), key("line_no")})}),
        table("orders",
              {rowid_alias("id"), col("customer_id", 2, "INTEGER", "integer", false),
               col("qty", 3, "INTEGER", "integer", true), col("price", 4, "REAL", "float", true),
               generated(col("total", 5, "REAL", "float", true), "virtual"),
               generated(col("doubled", 6, "NUMERIC", "decimal", true), "stored")},
              // The parent's name as the catalog spells it, not as the key wrote it.
              {primary_key({"id"}),
               foreign_key({"customer_id"}, "customers", {"id"}, "NO ACTION", "CASCADE")},
              {index("idx \"tricky\", (x)", false, "create_index",
                     {expression("(qty + 1) * 2 COLLATE NOCASE"), key("price"),
                      expression("substr(',)', 1, 1)")},
                     "price > 0 AND /* kept */ qty <> 1"),
               index("idx_orders_customer", false, "create_index", {key("customer_id")}),
               index("idx_orders_expr", true, "create_index",
                     {expression("lower(price)"), key("qty")}),
               // "(qty)" is a column to SQLite but not a bare name: the keys
               // cannot be lined up with the text, so no expression text is
               // guessed.
               index("idx_orders_paren", false, "create_index",
                     {key("qty"), expression("<expression>")}),
               index("idx_orders_positive", false, "create_index", {key("qty")}, "qty > 0")}),
        table("settings",
              {col("key", 1, "TEXT", "string", false, std::nullopt, 1),
               col("value", 2, "BLOB", "binary", true)},
              {primary_key({"key"}), unique({"value"})},
              {index("sqlite_autoindex_settings_1", true, "primary_key", {key("key")}),
               index("sqlite_autoindex_settings_2", true, "unique_constraint", {key("value")})}),
        view("shipment_count",
             "CREATE VIEW shipment_count AS WITH s AS (SELECT count(*) AS n FROM shipments)\n"
             "  SELECT n, n + 1 AS next FROM s, settings",
             {col("n", 1, "", "other", true), col("next", 2, "", "other", true)},
             {"settings", "shipments"}),
        table("shipments",
              {rowid_alias("id"), col("order_id", 2, "INTEGER", "integer", true),
               col("line_no", 3, "INTEGER", "integer", true),
               col("customer_id", 4, "INTEGER", "integer", true)},
              {primary_key({"id"}),
               foreign_key({"order_id", "line_no"}, "order_lines", {"order_id", "line_no"},
                           "CASCADE", "SET NULL"),
               foreign_key({"customer_id"}, "customers", {""}, "NO ACTION", "NO ACTION")}),
    };
}

TEST_F(SqliteConnectorTest, ExtractsEveryFieldOfTheModel) {
    create(kShopSchema);
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    expect_tables(sink.tables, expected_shop());
    EXPECT_EQ(summary->tables, 5);
    EXPECT_EQ(summary->views, 4);
    EXPECT_EQ(summary->columns, 27);
    EXPECT_EQ(summary->indexes, 9);
    EXPECT_EQ(summary->constraints, 11);
    EXPECT_EQ(summary->foreign_keys, 4);
    EXPECT_EQ(summary->routines, 0);
    EXPECT_EQ(sink.routines, 0) << "SQLite has no stored routines";
}

TEST_F(SqliteConnectorTest, ExtractedRecordsRoundTripThroughTheWireFormat) {
    create(kShopSchema);
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_FALSE(sink.tables.empty());
    for (const auto& t : sink.tables) {
        const auto json = metadata::to_json(t);
        auto back = metadata::record_from_json(json);
        ASSERT_TRUE(back) << t.name << ": " << back.error().message;
        ASSERT_TRUE(std::holds_alternative<Table>(*back)) << t.name;
        EXPECT_TRUE(std::get<Table>(*back) == t) << t.name;
        // And through a chunk, as the hub receives it.
        auto chunk = metadata::parse_chunk(json.dump() + "\n");
        ASSERT_TRUE(chunk) << t.name << ": " << chunk.error().message;
        ASSERT_EQ(chunk->size(), 1u);
        EXPECT_TRUE(std::get<Table>((*chunk)[0]) == t) << t.name;
    }
}

// What the connector really produces is what the published JSON Schema
// describes (checked by an independent validator).
TEST_F(SqliteConnectorTest, EveryRecordMatchesThePublishedSchema) {
    create(kShopSchema);
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    std::vector<metadata::Record> records(sink.tables.begin(), sink.tables.end());
    ASSERT_GT(records.size(), 3u);
    if (auto why = metadata::testing::schema_check_skip_reason(); !why.empty()) {
        GTEST_SKIP() << why;
    }
    auto verdicts = metadata::testing::check_against_schema(records);
    ASSERT_TRUE(verdicts) << verdicts.error().message;
    ASSERT_EQ(verdicts->size(), records.size());
    for (size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ((*verdicts)[i], "ok") << metadata::to_json(records[i]).dump();
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
        EXPECT_TRUE(first.tables[i] == second.tables[i]) << first.tables[i].name;
        EXPECT_EQ(metadata::fingerprint(first.tables[i]), metadata::fingerprint(second.tables[i]));
    }
}

TEST_F(SqliteConnectorTest, FiltersSkipUnwantedRelationsEntirely) {
    create(kShopSchema);
    RecordingSink sink;
    sink.filter = [](std::string_view name) { return name == "orders" || name == "big_orders"; };
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    // Asked about every relation of main, in name order, before any detail.
    EXPECT_EQ(sink.asked,
              (std::vector<std::string>{"main.big_orders", "main.customer_orders", "main.customers",
                                        "main.joined", "main.order_lines", "main.orders",
                                        "main.settings", "main.shipment_count", "main.shipments"}));
    ASSERT_EQ(sink.tables.size(), 2u);
    auto expected = expected_shop();
    EXPECT_TRUE(sink.tables[0] == expected[0]) << "big_orders";
    EXPECT_TRUE(sink.tables[1] == expected[5]) << "orders";
    // Lineage still names relations the filter left out.
    EXPECT_EQ(sink.tables[0].depends_on,
              (std::vector<ObjectRef>{{"main", "customer_orders"}, {"main", "orders"}}));
    EXPECT_EQ(summary->tables, 1);
    EXPECT_EQ(summary->views, 1);
    EXPECT_EQ(summary->columns, 8);
    EXPECT_EQ(summary->indexes, 5);
    EXPECT_EQ(summary->foreign_keys, 1);
}

TEST_F(SqliteConnectorTest, ViewLineageNamesDirectDependenciesOnly) {
    create(R"sql(
CREATE TABLE t(a INTEGER, b TEXT);
CREATE TABLE u(x INTEGER);
CREATE TABLE w(p INTEGER);
CREATE VIEW v0 AS SELECT a FROM t;
CREATE VIEW v1 AS SELECT V0.a, u.x FROM V0 JOIN u ON u.x = V0.a;
CREATE VIEW v2 AS SELECT * FROM v1 WHERE EXISTS (SELECT 1 FROM w WHERE p = v1.a);
CREATE VIEW v3 AS WITH v0 AS (SELECT p AS a FROM w) SELECT a FROM v0;
CREATE VIEW v4 AS SELECT count(*) AS n FROM v2, (SELECT 1 FROM t) AS sub;
CREATE VIEW v5 AS SELECT 1 AS one;
CREATE VIEW v6(k) AS SELECT a FROM t UNION ALL SELECT x FROM u;
CREATE VIEW v7 AS SELECT b FROM main.t, json_each('[1]');
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    auto deps = [&](std::string_view name) {
        const Table* t = sink.find(name);
        EXPECT_NE(t, nullptr) << name;
        std::vector<std::string> out;
        if (t == nullptr) return out;
        for (const auto& d : t->depends_on) {
            EXPECT_EQ(d.schema, "main");
            out.push_back(d.name);
        }
        return out;
    };
    using Names = std::vector<std::string>;
    EXPECT_EQ(deps("v0"), Names{"t"});
    // Spelled "V0" in the query, reported as the catalog names it.
    EXPECT_EQ(deps("v1"), (Names{"u", "v0"}));
    // Not t or u: those are v1's dependencies, not v2's.
    EXPECT_EQ(deps("v2"), (Names{"v1", "w"}));
    // A WITH name shadows the view of the same name.
    EXPECT_EQ(deps("v3"), Names{"w"});
    // A table read without naming a column, inside a subquery, counts.
    EXPECT_EQ(deps("v4"), (Names{"t", "v2"}));
    EXPECT_EQ(deps("v5"), Names{});
    EXPECT_EQ(deps("v6"), (Names{"t", "u"}));
    // Schema-qualified; a table-valued function is not a relation.
    EXPECT_EQ(deps("v7"), Names{"t"});
    EXPECT_TRUE(deps("t").empty()) << "tables have no lineage";
    EXPECT_EQ(summary->views, 8);
}

TEST_F(SqliteConnectorTest, ViewTextIsNeverRunBeyondCreatingTheView) {
    // A tampered file: SQLite loads a view whose stored text carries a second
    // statement. Lineage must not run it (here: it would create a file).
    const std::string attached = (dir_ / "attached.db").string();
    create(
        "CREATE TABLE t(a INTEGER); PRAGMA writable_schema = ON;"
        "INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql) VALUES "
        "('view', 'evil', 'evil', 0, 'CREATE VIEW evil AS SELECT a FROM t; ATTACH ''" +
        attached +
        "'' AS x');"
        "PRAGMA writable_schema = OFF; CREATE VIEW fine AS SELECT a FROM t;");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    EXPECT_FALSE(fs::exists(attached));
    const Table* evil = sink.find("evil");
    ASSERT_NE(evil, nullptr);
    ASSERT_EQ(evil->columns.size(), 1u) << "SQLite itself reads the first statement";
    EXPECT_TRUE(evil->depends_on.empty()) << "a view statement with a tail is not used";
    ASSERT_NE(sink.find("fine"), nullptr);
    EXPECT_EQ(sink.find("fine")->depends_on, (std::vector<ObjectRef>{{"main", "t"}}));
}

TEST_F(SqliteConnectorTest, NormalizedTypesFollowAffinityAndCommonNames) {
    create(R"sql(
CREATE TABLE types(
  a BOOLEAN, b DATE, c DATETIME, d TIMESTAMP, e JSON, f BLOB, g, h REAL, i FLOAT,
  j DOUBLE PRECISION, k NUMERIC, l DECIMAL(10, 2), m INT, n BIGINT, o UNSIGNED BIG INT,
  p VARCHAR(20), q NCHAR(5), r CLOB, s text, t MONEY, u POINT, v TIME, w CHARINT, x bool,
  y "timestamp"
);
CREATE VIEW typed AS SELECT a, p, 1 + 1 AS two, 'x' AS lit FROM types;
)sql");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    const Table* types = sink.find("types");
    ASSERT_NE(types, nullptr);
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& c : types->columns) got.emplace_back(c.data_type, c.normalized_type);
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"BOOLEAN", "boolean"},
        {"DATE", "date"},
        {"DATETIME", "timestamp"},
        {"TIMESTAMP", "timestamp"},
        {"JSON", "json"},
        {"BLOB", "binary"},
        {"", "binary"},  // no declared type: BLOB affinity
        {"REAL", "float"},
        {"FLOAT", "float"},
        {"DOUBLE PRECISION", "float"},
        {"NUMERIC", "decimal"},
        {"DECIMAL(10, 2)", "decimal"},
        {"INT", "integer"},
        {"BIGINT", "integer"},
        {"UNSIGNED BIG INT", "integer"},
        {"VARCHAR(20)", "string"},
        {"NCHAR(5)", "string"},
        {"CLOB", "string"},
        {"TEXT", "string"},    // SQLite spells the type names it knows in capitals
        {"MONEY", "decimal"},  // NUMERIC affinity
        {"POINT", "integer"},  // SQLite's first rule: it contains "INT"
        {"TIME", "time"},
        {"CHARINT", "integer"},  // "INT" wins over "CHAR"
        {"bool", "boolean"},
        {"timestamp", "timestamp"},
    };
    EXPECT_EQ(got, expected);
    for (const auto& c : types->columns) {
        EXPECT_TRUE(metadata::is_normalized_type(c.normalized_type)) << c.name;
    }

    const Table* typed = sink.find("typed");
    ASSERT_NE(typed, nullptr);
    ASSERT_EQ(typed->columns.size(), 4u);
    EXPECT_EQ(typed->columns[0].normalized_type, "boolean");
    EXPECT_EQ(typed->columns[1].normalized_type, "string");
    // Expressions have no declared type in SQLite.
    EXPECT_EQ(typed->columns[2].data_type, "");
    EXPECT_EQ(typed->columns[2].normalized_type, "other");
    EXPECT_EQ(typed->columns[3].normalized_type, "other");
}

TEST_F(SqliteConnectorTest, IdentityIsTheRowidAliasOnly) {
    create(R"sql(
CREATE TABLE alias(id integer primary key autoincrement, v TEXT);
CREATE TABLE not_integer(id INT PRIMARY KEY, v TEXT);
CREATE TABLE desc_quirk(id INTEGER PRIMARY KEY DESC, v TEXT);
CREATE TABLE without_rowid(id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE composite(a INTEGER, b INTEGER, PRIMARY KEY (b, a));
CREATE TABLE table_constraint(v TEXT, id INTEGER, PRIMARY KEY (id));
)sql");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    auto identities = [&](std::string_view name) {
        std::vector<std::string> out;
        const Table* t = sink.find(name);
        EXPECT_NE(t, nullptr) << name;
        if (t != nullptr) {
            for (const auto& c : t->columns) out.push_back(c.identity);
        }
        return out;
    };
    using Names = std::vector<std::string>;
    EXPECT_EQ(identities("alias"), (Names{"by_default", ""}));
    EXPECT_EQ(identities("not_integer"), (Names{"", ""}));
    EXPECT_EQ(identities("desc_quirk"), (Names{"", ""}));
    EXPECT_EQ(identities("without_rowid"), (Names{"", ""}));
    EXPECT_EQ(identities("composite"), (Names{"", ""}));
    EXPECT_EQ(identities("table_constraint"), (Names{"", "by_default"}));
    EXPECT_FALSE(sink.find("table_constraint")->columns[1].nullable);
    // "INTEGER PRIMARY KEY DESC" is not a rowid alias and may hold NULL.
    EXPECT_TRUE(sink.find("desc_quirk")->columns[0].nullable);
    EXPECT_EQ(sink.find("composite")->constraints,
              (std::vector<Constraint>{primary_key({"b", "a"})}));
}

TEST_F(SqliteConnectorTest, EstimatedRowsComeFromAnalyzeOnly) {
    create(R"sql(
CREATE TABLE plain(a INTEGER);
CREATE TABLE indexed(a INTEGER, b TEXT);
CREATE INDEX idx_partial ON indexed(a) WHERE a > 2;
CREATE INDEX idx_b ON indexed(b);
CREATE TABLE empty(a INTEGER);
CREATE VIEW v AS SELECT a FROM plain;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5)
  INSERT INTO plain SELECT i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7)
  INSERT INTO indexed SELECT i, 'x' || i FROM n;
)sql");
    {
        RecordingSink sink;
        ASSERT_TRUE(extract(sink));
        for (const auto& t : sink.tables) {
            EXPECT_FALSE(t.estimated_rows) << t.name << ": no ANALYZE, no estimate";
            EXPECT_FALSE(t.estimated_bytes) << t.name;
        }
    }
    create("ANALYZE;");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_NE(sink.find("plain"), nullptr);
    EXPECT_EQ(sink.find("plain")->estimated_rows, 5);
    // The largest of its indexes' figures (the partial one counts 5).
    EXPECT_EQ(sink.find("indexed")->estimated_rows, 7);
    EXPECT_FALSE(sink.find("empty")->estimated_rows) << "ANALYZE records nothing for it";
    EXPECT_FALSE(sink.find("v")->estimated_rows);
    for (const auto& t : sink.tables) EXPECT_FALSE(t.estimated_bytes) << t.name;
    EXPECT_EQ(sink.find("sqlite_stat1"), nullptr) << "internal tables are not extracted";

    // Statistics of tables the filter skips do not shift onto others.
    RecordingSink filtered;
    filtered.filter = [](std::string_view name) { return name != "indexed"; };
    ASSERT_TRUE(extract(filtered));
    ASSERT_EQ(filtered.tables.size(), 3u);
    EXPECT_FALSE(filtered.find("empty")->estimated_rows);
    EXPECT_EQ(filtered.find("plain")->estimated_rows, 5);
}

TEST_F(SqliteConnectorTest, OwnerCommentAndCheckConstraintsAreAbsent) {
    create("CREATE TABLE t(a INTEGER CHECK (a > 0), b TEXT, CONSTRAINT named CHECK (b <> ''));");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_EQ(sink.tables.size(), 1u);
    EXPECT_FALSE(sink.tables[0].owner);
    EXPECT_FALSE(sink.tables[0].comment);
    EXPECT_TRUE(sink.tables[0].constraints.empty()) << "SQLite does not expose check constraints";
    for (const auto& c : sink.tables[0].columns) EXPECT_FALSE(c.comment);
}

TEST_F(SqliteConnectorTest, IndexTextCopesWithKeywordsAsColumnNames) {
    // ASC and DESC are keywords that SQLite also takes as column names.
    create(R"sql(
CREATE TABLE kw(desc INTEGER, b TEXT);
CREATE INDEX i1 ON kw(desc);
CREATE INDEX i2 ON kw(desc DESC, b COLLATE nocase ASC);
CREATE INDEX i3 ON kw(lower(b) DESC, b || desc, [desc] + 1 ASC) WHERE desc > 0;
CREATE TABLE kw2(asc INTEGER, b TEXT);
CREATE INDEX j1 ON kw2(asc, b ASC);
CREATE INDEX j2 ON kw2(b || asc);
)sql");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_EQ(sink.tables.size(), 2u);
    EXPECT_EQ(sink.tables[0].indexes,
              (std::vector<Index>{
                  index("i1", false, "create_index", {key("desc")}),
                  index("i2", false, "create_index", {key("desc"), key("b")}),
                  index("i3", false, "create_index",
                        {expression("lower(b)"), expression("b || desc"), expression("[desc] + 1")},
                        "desc > 0"),
              }));
    // "b || asc" could be "b" sorted ASC as far as the text goes: no guess.
    EXPECT_EQ(sink.tables[1].indexes,
              (std::vector<Index>{
                  index("j1", false, "create_index", {key("asc"), key("b")}),
                  index("j2", false, "create_index", {expression("<expression>")}),
              }));
}

TEST_F(SqliteConnectorTest, ForeignKeyToAMissingTableKeepsTheNameAsWritten) {
    // SQLite accepts a key whose parent does not exist (yet).
    create("CREATE TABLE child(p INTEGER REFERENCES Nowhere(ID) ON UPDATE RESTRICT);");
    RecordingSink sink;
    ASSERT_TRUE(extract(sink));
    ASSERT_EQ(sink.tables.size(), 1u);
    EXPECT_EQ(
        sink.tables[0].constraints,
        (std::vector<Constraint>{foreign_key({"p"}, "Nowhere", {"ID"}, "RESTRICT", "NO ACTION")}));
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
        ASSERT_NE(sink.find("joined"), nullptr) << "views were described (lineage ran)";
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

TEST_F(SqliteConnectorTest, IdentifierEdgeCasesAreExtractedExactly) {
    create(R"sql(
CREATE TABLE "weird ""name""; DROP" (
  "col ""x""" INTEGER PRIMARY KEY,
  "sp ace" TEXT NOT NULL,
  "it's" TEXT,
  [select] INTEGER
);
CREATE INDEX "idx ""q""; DROP" ON "weird ""name""; DROP"("sp ace", "it's");
CREATE INDEX "expr idx" ON "weird ""name""; DROP"(lower("it's"), [select] DESC)
  WHERE "sp ace" <> 'a''b';
CREATE TABLE child(parent INTEGER REFERENCES "WEIRD ""name""; DROP"("col ""x"""));
CREATE TABLE "MixedCase"("Größe" REAL, "日本語" TEXT UNIQUE);
CREATE TABLE "order"("from" INTEGER, "group" TEXT);
CREATE VIEW "view ""of"" it" AS SELECT "Größe", "日本語", "from"
  FROM "MixedCase", "order", "weird ""name""; DROP";
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    ASSERT_EQ(sink.tables.size(), 5u);

    const Table* weird = sink.find("weird \"name\"; DROP");
    ASSERT_NE(weird, nullptr);
    ASSERT_EQ(weird->columns.size(), 4u);
    EXPECT_EQ(weird->columns[0].name, "col \"x\"");
    EXPECT_EQ(weird->columns[0].identity, "by_default");
    EXPECT_EQ(weird->columns[1].name, "sp ace");
    EXPECT_FALSE(weird->columns[1].nullable);
    EXPECT_EQ(weird->columns[2].name, "it's");
    EXPECT_EQ(weird->columns[3].name, "select");
    EXPECT_EQ(weird->constraints, (std::vector<Constraint>{primary_key({"col \"x\""})}));
    ASSERT_EQ(weird->indexes.size(), 2u);
    EXPECT_EQ(weird->indexes[0],
              index("expr idx", false, "create_index",
                    {expression("lower(\"it's\")"), key("select")}, "\"sp ace\" <> 'a''b'"));
    EXPECT_EQ(weird->indexes[1],
              index("idx \"q\"; DROP", false, "create_index", {key("sp ace"), key("it's")}));

    const Table* child = sink.find("child");
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(child->constraints,
              (std::vector<Constraint>{foreign_key({"parent"}, "weird \"name\"; DROP",
                                                   {"col \"x\""}, "NO ACTION", "NO ACTION")}));

    const Table* mixed = sink.find("MixedCase");
    ASSERT_NE(mixed, nullptr);
    ASSERT_EQ(mixed->columns.size(), 2u);
    EXPECT_EQ(mixed->columns[0].name, "Größe");
    EXPECT_EQ(mixed->columns[1].name, "日本語");
    EXPECT_EQ(mixed->constraints, (std::vector<Constraint>{unique({"日本語"})}));

    const Table* order = sink.find("order");
    ASSERT_NE(order, nullptr);
    EXPECT_EQ(order->columns[0].name, "from");
    EXPECT_EQ(order->columns[1].name, "group");

    const Table* v = sink.find("view \"of\" it");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->depends_on,
              (std::vector<ObjectRef>{
                  {"main", "MixedCase"}, {"main", "order"}, {"main", "weird \"name\"; DROP"}}));
    ASSERT_EQ(v->columns.size(), 3u);
    EXPECT_EQ(v->columns[1].name, "日本語");
}

TEST_F(SqliteConnectorTest, VirtualTablesAreIncludedOrSkipped) {
    create(R"sql(
CREATE VIRTUAL TABLE docs USING fts5(title, body);
CREATE VIEW matching AS SELECT title FROM docs WHERE docs MATCH 'x';
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
    EXPECT_EQ(docs->columns[0].normalized_type, "binary");
    EXPECT_EQ(docs->columns[1].name, "body");
    EXPECT_TRUE(docs->constraints.empty());
    // Its hidden column is a plain column of the stand-in table, so the view
    // still resolves.
    ASSERT_NE(sink.find("matching"), nullptr);
    EXPECT_EQ(sink.find("matching")->depends_on, (std::vector<ObjectRef>{{"main", "docs"}}));
    EXPECT_EQ(summary->tables + summary->views, static_cast<int64_t>(sink.tables.size()));
}

TEST_F(SqliteConnectorTest, BrokenViewKeepsItsDefinition) {
    create(R"sql(
CREATE TABLE gone(a INTEGER);
CREATE VIEW stale AS SELECT a FROM gone;
CREATE VIEW over_stale AS SELECT * FROM stale;
DROP TABLE gone;
)sql");
    RecordingSink sink;
    auto summary = extract(sink);
    ASSERT_TRUE(summary) << summary.error().describe();
    ASSERT_EQ(sink.tables.size(), 2u);
    const Table* stale = sink.find("stale");
    ASSERT_NE(stale, nullptr);
    EXPECT_EQ(stale->kind, "view");
    EXPECT_EQ(stale->definition, "CREATE VIEW stale AS SELECT a FROM gone");
    EXPECT_TRUE(stale->columns.empty());
    EXPECT_TRUE(stale->depends_on.empty()) << "what it read no longer exists";
    EXPECT_EQ(summary->views, 2);
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
    EXPECT_EQ(summary->constraints, kTables + kTables - 1);
    EXPECT_EQ(sink.tables.size(), static_cast<size_t>(kTables + 1));
    EXPECT_EQ(sink.find("v_all")->depends_on, (std::vector<ObjectRef>{{"main", "t0"}}));
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
    EXPECT_EQ(report->checks[1].detail, "5 tables, 4 views");
    EXPECT_EQ(report->checks[2].name, "describe_objects");
    EXPECT_TRUE(report->checks[2].ok);
    EXPECT_EQ(report->checks[2].detail, "9 of 9 tables and views readable");
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
    EXPECT_EQ((*schemas)[0].tables, 9);
}

TEST_F(SqliteConnectorTest, FactoryDispatchesOnTheConnectorName) {
    create(kShopSchema);
    auto connector =
        make_connector(SourceParams{.name = "shop", .connector = "sqlite", .path = path_});
    ASSERT_TRUE(connector) << connector.error().describe();
    RecordingSink sink;
    ASSERT_TRUE((*connector)->extract(sink));
    EXPECT_EQ(sink.tables.size(), 9u);

    auto unknown = make_connector(SourceParams{.name = "shop", .connector = "oracle"});
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(unknown.error().message.find("\"oracle\""), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::connectors
