#include "hub/store/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <thread>
#include <tuple>

#include "hub/ingest/catalog.h"
#include "hub/store/change_notifier.h"
#include "hub/testing/test_support.h"

namespace sa::hub::store {
namespace {

using namespace std::chrono_literals;

std::string pragma(Store& store, const char* name) {
    return store.with([&](sqlite::Database& db) {
        auto st = db.prepare(std::string("PRAGMA ") + name);
        EXPECT_TRUE(st.has_value());
        auto step = st->step();
        EXPECT_TRUE(step.has_value() && *step == sqlite::Statement::Step::row);
        return st->text(0);
    });
}

// The jobs and chunks tables as schema versions 1 and 2 created them.
constexpr const char* kJobsV1 = R"sql(
CREATE TABLE jobs (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE, source TEXT NOT NULL,
    operation TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'leased', 'succeeded', 'failed', 'refused')),
    reason_code TEXT, message TEXT, attempts INTEGER NOT NULL DEFAULT 0, agent_id TEXT,
    lease_id TEXT, lease_expires_at_ms INTEGER, created_at_ms INTEGER NOT NULL,
    leased_at_ms INTEGER, started_at_ms INTEGER, finished_at_ms INTEGER, completed_at_ms INTEGER,
    summary_tables INTEGER, summary_views INTEGER, summary_columns INTEGER);
CREATE INDEX jobs_by_app_status ON jobs(app, status, n);
CREATE TABLE chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL, PRIMARY KEY (job_id, seq));
)sql";

// The app history as schema versions 2 to 4 created it (version 5 rebuilds it).
constexpr const char* kAppEventsV2 = R"sql(
CREATE TABLE app_events (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    event TEXT NOT NULL CHECK (event IN ('created', 'rotated', 'revoked')),
    at_ms INTEGER NOT NULL, actor TEXT NOT NULL, detail TEXT);
CREATE INDEX app_events_by_app ON app_events(app, n);
)sql";

// The catalog tables as schema versions 1 to 3 created them.
constexpr const char* kCatalogV3 = R"sql(
CREATE TABLE catalog_tables (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, source TEXT NOT NULL,
    database_name TEXT NOT NULL, schema_name TEXT NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, definition TEXT, job_id TEXT NOT NULL, ingested_at_ms INTEGER NOT NULL,
    UNIQUE (app, source, database_name, schema_name, name));
CREATE TABLE catalog_columns (
    table_id INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    name TEXT NOT NULL, ordinal INTEGER NOT NULL, data_type TEXT NOT NULL,
    nullable INTEGER NOT NULL, default_value TEXT, primary_key_position INTEGER NOT NULL);
CREATE INDEX catalog_columns_by_table ON catalog_columns(table_id, ordinal);
CREATE TABLE catalog_indexes (
    table_id INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    name TEXT NOT NULL, is_unique INTEGER NOT NULL, origin TEXT NOT NULL,
    partial INTEGER NOT NULL, columns TEXT NOT NULL);
CREATE INDEX catalog_indexes_by_table ON catalog_indexes(table_id);
CREATE TABLE catalog_foreign_keys (
    table_id INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, referenced_table TEXT NOT NULL, columns TEXT NOT NULL,
    referenced_columns TEXT NOT NULL, on_update TEXT NOT NULL, on_delete TEXT NOT NULL);
CREATE INDEX catalog_foreign_keys_by_table ON catalog_foreign_keys(table_id);
)sql";

TEST(Store, CreatesPrivateWalDatabaseWithSchema) {
    testing::TempDir tmp;
    auto store = Store::open(tmp.file("hub.db"));
    ASSERT_TRUE(store.has_value()) << store.error().describe();
    struct stat st {};
    ASSERT_EQ(::stat(tmp.file("hub.db").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(pragma(**store, "journal_mode"), "wal");
    EXPECT_EQ(pragma(**store, "user_version"), std::to_string(kSchemaVersion));
    EXPECT_EQ(pragma(**store, "foreign_keys"), "1");
    // Opening again (a second process) keeps the data and the schema.
    auto ok = (*store)->with([](sqlite::Database& db) {
        return execute(db,
                       "INSERT INTO apps(name, client_id, secret_hash, created_at_ms) "
                       "VALUES ('a', 'cid_a', 'h', 1)");
    });
    ASSERT_TRUE(ok.has_value());
    auto again = Store::open(tmp.file("hub.db"), Store::Create::never);
    ASSERT_TRUE(again.has_value());
    auto count = (*again)->with([](sqlite::Database& db) {
        auto q = db.prepare("SELECT count(*) FROM apps");
        (void)q->step();
        return q->integer(0);
    });
    EXPECT_EQ(count, 1);
}

TEST(Store, MissingDatabaseIsNotCreatedWhenAskedNotTo) {
    testing::TempDir tmp;
    auto store = Store::open(tmp.file("absent.db"), Store::Create::never);
    ASSERT_FALSE(store.has_value());
    EXPECT_EQ(store.error().code, ErrorCode::not_found);
}

TEST(Store, MigratesVersionOneDatabaseKeepingApps) {
    testing::TempDir tmp;
    {
        // The apps table as schema version 1 created it, with one app.
        auto db =
            sqlite::Database::open(tmp.file("hub.db"), sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db.has_value());
        ASSERT_TRUE(db->exec("CREATE TABLE apps (name TEXT PRIMARY KEY, client_id TEXT NOT NULL "
                             "UNIQUE, secret_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL);"
                             "INSERT INTO apps VALUES ('old', 'cid_old', 'scrypt$h', 7);"
                             "PRAGMA user_version = 1")
                        .has_value());
        ASSERT_TRUE(db->exec(kJobsV1).has_value());
        ASSERT_TRUE(db->exec(kCatalogV3).has_value());
    }
    auto store = Store::open(tmp.file("hub.db"), Store::Create::never);
    ASSERT_TRUE(store.has_value()) << store.error().describe();
    EXPECT_EQ(pragma(**store, "user_version"), std::to_string(kSchemaVersion));
    auto row = (*store)->with([](sqlite::Database& db) {
        auto q = db.prepare(
            "SELECT client_id, secret_hash, previous_secret_hash, revoked_at_ms FROM apps "
            "WHERE name = 'old'");
        EXPECT_TRUE(q.has_value());
        EXPECT_EQ(*q->step(), sqlite::Statement::Step::row);
        return std::make_tuple(q->text(0), q->text(1), q->is_null(2), q->is_null(3));
    });
    EXPECT_EQ(row, std::make_tuple(std::string("cid_old"), std::string("scrypt$h"), true, true));
    auto history = (*store)->with([](sqlite::Database& db) {
        return execute(db,
                       "INSERT INTO app_events(app, event, at_ms, actor) "
                       "VALUES ('old', 'rotated', 1, 'op')");
    });
    EXPECT_TRUE(history.has_value()) << history.error().describe();
}

TEST(Store, MigratesVersionTwoDatabaseKeepingJobsAndChunks) {
    testing::TempDir tmp;
    {
        // A version-2 database with a finished job, a leased job holding an
        // uploaded chunk, and a queued job, as the previous release left it.
        auto db =
            sqlite::Database::open(tmp.file("hub.db"), sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db.has_value());
        ASSERT_TRUE(db->exec("PRAGMA foreign_keys = ON;"
                             "CREATE TABLE apps (name TEXT PRIMARY KEY, client_id TEXT NOT NULL "
                             "UNIQUE, secret_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL);"
                             "INSERT INTO apps VALUES ('old', 'cid_old', 'scrypt$h', 7);")
                        .has_value());
        ASSERT_TRUE(db->exec(kJobsV1).has_value());
        ASSERT_TRUE(db->exec(kCatalogV3).has_value());
        ASSERT_TRUE(db->exec(kAppEventsV2).has_value());
        ASSERT_TRUE(
            db->exec("INSERT INTO jobs(n, id, app, source, operation, status, reason_code, "
                     "attempts, created_at_ms, summary_tables, summary_views, summary_columns) "
                     "VALUES (5, 'j-done', 'old', 'inv', 'extract_metadata', 'succeeded', NULL, "
                     "1, 100, 3, 1, 9);"
                     "INSERT INTO jobs(n, id, app, source, operation, status, attempts, lease_id, "
                     "lease_expires_at_ms, created_at_ms) VALUES (6, 'j-leased', 'old', 'inv', "
                     "'extract_metadata', 'leased', 1, 'L1', 999, 200);"
                     "INSERT INTO jobs(n, id, app, source, operation, status, created_at_ms) "
                     "VALUES (7, 'j-queued', 'old', 'crm', 'extract_metadata', 'queued', 300);"
                     "INSERT INTO chunks VALUES ('j-leased', 0, 'ab', 2, x'0a0a', 250);"
                     "PRAGMA user_version = 2")
                .has_value());
    }
    auto store = Store::open(tmp.file("hub.db"), Store::Create::never);
    ASSERT_TRUE(store.has_value()) << store.error().describe();
    EXPECT_EQ(pragma(**store, "user_version"), std::to_string(kSchemaVersion));
    EXPECT_EQ(pragma(**store, "foreign_keys"), "1");
    auto rows = (*store)->with([](sqlite::Database& db) {
        std::vector<std::string> out;
        auto q = db.prepare(
            "SELECT n || ' ' || id || ' ' || status || ' ' || coalesce(lease_id, '-') || ' ' || "
            "coalesce(summary_columns, '-') || ' ' || coalesce(filters, '-') FROM jobs ORDER BY n");
        EXPECT_TRUE(q.has_value());
        while (*q->step() == sqlite::Statement::Step::row) out.push_back(q->text(0));
        return out;
    });
    EXPECT_EQ(rows,
              (std::vector<std::string>{"5 j-done succeeded - 9 -", "6 j-leased leased L1 - -",
                                        "7 j-queued queued - - -"}));
    auto chunk_count = (*store)->with([](sqlite::Database& db) {
        auto q = db.prepare("SELECT count(*) FROM chunks WHERE job_id = 'j-leased'");
        (void)q->step();
        return q->integer(0);
    });
    EXPECT_EQ(chunk_count, 1);  // not cascaded away by the rebuild
    // The new state and columns work, queue order continues, and the
    // chunks -> jobs reference still cascades.
    auto changed = (*store)->with([](sqlite::Database& db) -> Status {
        if (auto s = execute(db,
                             "UPDATE jobs SET status = 'cancelled', cancel_requested_at_ms = 1, "
                             "progress_phase = 'extracting', result = '{}' WHERE id = 'j-queued'");
            !s)
            return s;
        if (auto s = execute(db,
                             "INSERT INTO jobs(id, app, source, operation, status, created_at_ms) "
                             "VALUES ('j-new', 'old', 'inv', 'preflight', 'queued', 400)");
            !s)
            return s;
        return execute(db, "DELETE FROM jobs WHERE id = 'j-leased'");
    });
    ASSERT_TRUE(changed.has_value()) << changed.error().describe();
    auto after = (*store)->with([](sqlite::Database& db) {
        auto q = db.prepare(
            "SELECT (SELECT n FROM jobs WHERE id = 'j-new'), (SELECT count(*) FROM chunks)");
        (void)q->step();
        return std::make_pair(q->integer(0), q->integer(1));
    });
    EXPECT_EQ(after, std::make_pair(int64_t{8}, int64_t{0}));
    auto bad_status = (*store)->with([](sqlite::Database& db) {
        return execute(db, "UPDATE jobs SET status = 'exploded' WHERE id = 'j-done'");
    });
    EXPECT_FALSE(bad_status.has_value());  // the CHECK constraint survived the rebuild
}

// Rows as the previous release stored them: a SQLite source (inv) and a
// PostgreSQL one (pg).
constexpr const char* kCatalogV3Rows = R"sql(
INSERT INTO jobs(id, app, source, operation, status, created_at_ms, summary_tables,
                 summary_views, summary_columns)
    VALUES ('j-done', 'old', 'inv', 'extract_metadata', 'succeeded', 1, 1, 1, 3);
INSERT INTO catalog_tables VALUES
    (1, 'old', 'inv', 'main', 'main', 'orders', 'table', NULL, 'j-done', 100),
    (2, 'old', 'inv', 'main', 'main', 'v_orders', 'view',
     'CREATE VIEW v_orders AS SELECT id FROM orders', 'j-done', 100),
    (3, 'old', 'pg', 'shop', 'public', 'customers', 'table', NULL, 'j-pg', 200),
    (4, 'old', 'pg', 'shop', 'sales', 'orders', 'table', NULL, 'j-pg', 200);
INSERT INTO catalog_columns VALUES
    (1, 'id', 1, 'INTEGER', 0, NULL, 1), (1, 'note', 2, 'TEXT', 1, '''x''', 0),
    (2, 'id', 1, '', 1, NULL, 0),
    (4, 'customer_id', 2, 'integer', 1, NULL, 0), (4, 'id', 1, 'integer', 0, NULL, 1);
INSERT INTO catalog_indexes VALUES
    (1, 'idx_note', 0, 'create_index', 1, '["note","<expr>"]'),
    (1, 'sqlite_autoindex_orders_1', 1, 'unique_constraint', 0, '["note"]');
INSERT INTO catalog_foreign_keys VALUES
    (1, 0, 'customers', '["id"]', '["id"]', 'NO ACTION', 'CASCADE'),
    (1, 1, 'weird.name', '["note"]', '[""]', 'NO ACTION', 'NO ACTION'),
    (4, 0, 'public.customers', '["customer_id"]', '["id"]', 'NO ACTION', 'SET NULL'),
    (4, 1, 'orders', '["id"]', '["id"]', 'CASCADE', 'RESTRICT');
PRAGMA user_version = 3;
)sql";

TEST(Store, MigratesVersionThreeCatalogToModelVersionTwo) {
    testing::TempDir tmp;
    {
        auto db =
            sqlite::Database::open(tmp.file("hub.db"), sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db.has_value());
        ASSERT_TRUE(db->exec("CREATE TABLE apps (name TEXT PRIMARY KEY, client_id TEXT NOT NULL "
                             "UNIQUE, secret_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL);"
                             "INSERT INTO apps VALUES ('old', 'cid_old', 'scrypt$h', 7);")
                        .has_value());
        ASSERT_TRUE(db->exec(kJobsV1).has_value());
        ASSERT_TRUE(db->exec(kCatalogV3).has_value());
        ASSERT_TRUE(db->exec(kAppEventsV2).has_value());
        auto rows = db->exec(kCatalogV3Rows);
        ASSERT_TRUE(rows.has_value()) << rows.error().describe();
    }
    auto store = Store::open(tmp.file("hub.db"), Store::Create::never);
    ASSERT_TRUE(store.has_value()) << store.error().describe();
    EXPECT_EQ(pragma(**store, "user_version"), std::to_string(kSchemaVersion));
    auto count = [&](const std::string& sql) {
        return (*store)->with([&](sqlite::Database& db) {
            auto q = db.prepare(sql);
            EXPECT_TRUE(q.has_value()) << sql;
            (void)q->step();
            return q->integer(0);
        });
    };
    EXPECT_EQ(count("SELECT count(*) FROM sqlite_master WHERE name = 'catalog_foreign_keys'"), 0);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables"), 4);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_columns"), 5);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_indexes"), 2);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_constraints WHERE type = 'foreign_key'"), 4);
    EXPECT_EQ(count("SELECT count(*) FROM jobs WHERE summary_routines IS NULL"), 1);
    // Incremental runs: the succeeded extraction is the catalog version of
    // its source (pg has no job row: no version, its next run is full).
    EXPECT_EQ(count("SELECT count(*) FROM catalog_sources"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_sources WHERE app = 'old' AND source = 'inv' "
                    "AND job_id = 'j-done' AND mode = 'full'"),
              1);
    EXPECT_EQ(count("SELECT count(*) FROM jobs WHERE mode = 'full' AND applied_mode = 'full' AND "
                    "baseline_job_id IS NULL"),
              1);

    // The SQLite table, rebuilt from its converted rows.
    ingest::Catalog catalog(**store);
    metadata::Table want;
    want.database = "main";
    want.schema = "main";
    want.name = "orders";
    want.kind = "table";
    want.columns = {{.name = "id",
                     .ordinal = 1,
                     .data_type = "INTEGER",
                     .normalized_type = "other",
                     .nullable = false,
                     .primary_key_position = 1},
                    {.name = "note",
                     .ordinal = 2,
                     .data_type = "TEXT",
                     .normalized_type = "other",
                     .default_value = "'x'"}};
    want.constraints = {
        {.type = "primary_key", .columns = {"id"}},
        {.name = "sqlite_autoindex_orders_1", .type = "unique", .columns = {"note"}},
        {.type = "foreign_key",
         .columns = {"id"},
         .references = metadata::ObjectRef{"main", "customers"},
         .referenced_columns = {"id"},
         .on_update = "NO ACTION",
         .on_delete = "CASCADE"},
        // No schema "weird" in the source: the dot is part of the name.
        {.type = "foreign_key",
         .columns = {"note"},
         .references = metadata::ObjectRef{"main", "weird.name"},
         .referenced_columns = {""},
         .on_update = "NO ACTION",
         .on_delete = "NO ACTION"},
    };
    want.indexes = {{.name = "idx_note",
                     .origin = "create_index",
                     .predicate = "",
                     .keys = {{.column = "note"}, {.expression = "<expr>"}}},
                    {.name = "sqlite_autoindex_orders_1",
                     .unique = true,
                     .origin = "unique_constraint",
                     .keys = {{.column = "note"}}}};
    auto orders = catalog.relation(std::nullopt, "inv", "main.orders");
    ASSERT_TRUE(orders.has_value()) << orders.error().message;
    EXPECT_EQ(*orders, want);
    // The same as a version-1 line of that table is read today.
    auto v1_line = nlohmann::json::parse(R"({"model_version":1,"database":"main","schema":"main",
        "name":"orders","kind":"table","definition":null,
        "columns":[{"name":"id","ordinal":1,"data_type":"INTEGER","nullable":false,"default":null,
                    "primary_key_position":1},
                   {"name":"note","ordinal":2,"data_type":"TEXT","nullable":true,"default":"'x'",
                    "primary_key_position":0}],
        "indexes":[{"name":"idx_note","unique":false,"origin":"create_index","partial":true,
                    "columns":["note","<expr>"]},
                   {"name":"sqlite_autoindex_orders_1","unique":true,
                    "origin":"unique_constraint","partial":false,"columns":["note"]}],
        "foreign_keys":[{"referenced_table":"customers","columns":["id"],
                         "referenced_columns":["id"],"on_update":"NO ACTION",
                         "on_delete":"CASCADE"},
                        {"referenced_table":"weird.name","columns":["note"],
                         "referenced_columns":[""],"on_update":"NO ACTION",
                         "on_delete":"NO ACTION"}]})");
    auto from_v1 = metadata::table_from_json(v1_line);
    ASSERT_TRUE(from_v1.has_value()) << from_v1.error().message;
    // The model reads "weird.name" as schema "weird": the hub knows better
    // (no such schema in the source); everything else agrees.
    ASSERT_EQ(from_v1->constraints.size(), 4u);
    from_v1->constraints[3].references = metadata::ObjectRef{"main", "weird.name"};
    EXPECT_EQ(*orders, *from_v1);
    // show rebuilds the record of a converted row.
    auto record = catalog.record(std::nullopt, "inv", "orders");
    ASSERT_TRUE(record.has_value()) << record.error().message;
    EXPECT_EQ(*record, metadata::to_json(want));
    auto view = catalog.tables(ingest::CatalogFilter{.source = "inv", .table = "v_orders"});
    ASSERT_EQ(view->size(), 1u);
    EXPECT_EQ((*view)[0].definition, "CREATE VIEW v_orders AS SELECT id FROM orders");
    EXPECT_EQ((*view)[0].job_id, "j-done");
    EXPECT_EQ((*view)[0].ingested_at_ms, 100);
    EXPECT_FALSE((*view)[0].fingerprint.has_value());

    // PostgreSQL: "public.customers" is another schema, "orders" the same one.
    auto pg = catalog.relation("old", "pg", "sales.orders");
    ASSERT_TRUE(pg.has_value()) << pg.error().message;
    ASSERT_EQ(pg->constraints.size(), 3u);
    EXPECT_EQ(pg->constraints[0].type, "primary_key");
    EXPECT_EQ(pg->constraints[1].references, (metadata::ObjectRef{"public", "customers"}));
    EXPECT_EQ(pg->constraints[1].on_delete, "SET NULL");
    EXPECT_EQ(pg->constraints[2].references, (metadata::ObjectRef{"sales", "orders"}));
    ASSERT_EQ(pg->columns.size(), 2u);
    EXPECT_EQ(pg->columns[0].name, "id");  // ordinal order

    // A version-2 delivery replaces the converted rows of its source only.
    auto replaced = (*store)->with([](sqlite::Database& db) {
        metadata::Table t;
        t.database = "main";
        t.schema = "main";
        t.name = "fresh";
        t.kind = "table";
        return ingest::replace_catalog(db, "old", "inv", ingest::prepare_records({t}), "j-new", 5);
    });
    ASSERT_TRUE(replaced.has_value()) << replaced.error().describe();
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE source = 'inv'"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_tables WHERE source = 'pg'"), 2);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_constraints"), 3);
    EXPECT_EQ(count("SELECT count(*) FROM catalog_indexes"), 0);
}

TEST(Store, MigratesVersionFourDatabaseToKeyAuthenticationKeepingAppsAndHistory) {
    testing::TempDir tmp;
    {
        // A version-4 database: today's schema with version 5 taken out
        // again (its column, tables and event names), holding an app with a
        // rotation overlap, its history and a job, as release 4 left it.
        auto store = Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(store.has_value()) << store.error().describe();
        auto undone = (*store)->with([](sqlite::Database& db) {
            return db.exec(
                "PRAGMA foreign_keys = OFF; BEGIN;"
                "DROP TABLE app_keys; DROP TABLE client_assertion_jtis;"
                "ALTER TABLE apps DROP COLUMN auth_method; DROP TABLE app_events;" +
                std::string(kAppEventsV2) +
                "INSERT INTO apps(name, client_id, secret_hash, created_at_ms, "
                "previous_secret_hash, previous_secret_expires_at_ms, rotated_at_ms, rotated_by) "
                "VALUES ('old', 'cid_old', 'scrypt$new', 7, 'scrypt$prev', 99, 8, 'alice');"
                "INSERT INTO app_events(n, app, event, at_ms, actor, detail) VALUES "
                "(3, 'old', 'created', 7, 'alice', NULL), (4, 'old', 'rotated', 8, 'alice', "
                "'overlap 60 s');"
                "INSERT INTO jobs(id, app, source, operation, status, created_at_ms) "
                "VALUES ('j1', 'old', 'inv', 'extract_metadata', 'queued', 9);"
                "COMMIT; PRAGMA user_version = 4");
        });
        ASSERT_TRUE(undone.has_value()) << undone.error().describe();
    }
    auto store = Store::open(tmp.file("hub.db"), Store::Create::never);
    ASSERT_TRUE(store.has_value()) << store.error().describe();
    EXPECT_EQ(pragma(**store, "user_version"), "5");
    EXPECT_EQ(kSchemaVersion, 5);
    auto text = [&](const std::string& sql) {
        return (*store)->with([&](sqlite::Database& db) {
            auto q = db.prepare(sql);
            EXPECT_TRUE(q.has_value()) << sql;
            EXPECT_EQ(*q->step(), sqlite::Statement::Step::row) << sql;
            return q->text(0);
        });
    };
    // The app keeps both secrets and its overlap, and is a secret app.
    EXPECT_EQ(text("SELECT secret_hash || ' ' || previous_secret_hash || ' ' || "
                   "previous_secret_expires_at_ms || ' ' || rotated_by || ' ' || auth_method "
                   "FROM apps WHERE name = 'old'"),
              "scrypt$new scrypt$prev 99 alice client_secret");
    // The history keeps its rows and order, and takes the new events.
    EXPECT_EQ(text("SELECT group_concat(n || ':' || event, ',') FROM "
                   "(SELECT n, event FROM app_events ORDER BY n)"),
              "3:created,4:rotated");
    EXPECT_EQ(text("SELECT count(*) FROM jobs WHERE app = 'old'"), "1");
    auto more = (*store)->with([](sqlite::Database& db) -> Status {
        if (auto s = execute(db,
                             "INSERT INTO app_events(app, event, at_ms, actor) "
                             "VALUES ('old', 'key-rotated', 10, 'bob')");
            !s) {
            return s;
        }
        if (auto s = execute(db,
                             "INSERT INTO app_keys(app, thumbprint, algorithm, public_key, "
                             "added_at_ms) VALUES ('old', 't', 'ES256', 'pem', 10)");
            !s) {
            return s;
        }
        return execute(db,
                       "INSERT INTO client_assertion_jtis(client_id, jti, expires_at_ms) "
                       "VALUES ('cid_old', 'j', 10)");
    });
    EXPECT_TRUE(more.has_value()) << more.error().describe();
    EXPECT_EQ(text("SELECT max(n) FROM app_events"), "5");
    // Unknown events and algorithms are still refused.
    auto bad = (*store)->with([](sqlite::Database& db) {
        return execute(db,
                       "INSERT INTO app_keys(app, thumbprint, algorithm, public_key, "
                       "added_at_ms) VALUES ('old', 'u', 'HS256', 'pem', 10)");
    });
    EXPECT_FALSE(bad.has_value());
    // The app history cascades with its app as before.
    auto cascade = (*store)->with([](sqlite::Database& db) -> Status {
        if (auto s = execute(db, "DELETE FROM jobs"); !s) return s;
        return execute(db, "DELETE FROM apps WHERE name = 'old'");
    });
    ASSERT_TRUE(cascade.has_value()) << cascade.error().describe();
    EXPECT_EQ(text("SELECT count(*) FROM app_events"), "0");
    EXPECT_EQ(text("SELECT count(*) FROM app_keys"), "0");
}

TEST(Store, RefusesNewerSchema) {
    testing::TempDir tmp;
    {
        auto store = Store::open(tmp.file("hub.db"));
        ASSERT_TRUE(store.has_value());
        (void)(*store)->with(
            [](sqlite::Database& db) { return db.exec("PRAGMA user_version = 99"); });
    }
    auto again = Store::open(tmp.file("hub.db"));
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST(ChangeNotifier, SeesACommitFromAnotherConnectionQuickly) {
    testing::TempDir tmp;
    auto writer = Store::open(tmp.file("hub.db"));
    ASSERT_TRUE(writer.has_value());
    auto notifier = ChangeNotifier::start(tmp.file("hub.db"), 5ms);
    ASSERT_TRUE(notifier.has_value());
    uint64_t seen = (*notifier)->generation();
    auto t0 = std::chrono::steady_clock::now();
    auto ok = (*writer)->with([](sqlite::Database& db) {
        return execute(db,
                       "INSERT INTO apps(name, client_id, secret_hash, created_at_ms) "
                       "VALUES ('a', 'cid_a', 'h', 1)");
    });
    ASSERT_TRUE(ok.has_value());
    EXPECT_TRUE((*notifier)->wait_for_change(seen, std::chrono::steady_clock::now() + 5s));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);  // woke before the 5 s deadline
}

TEST(ChangeNotifier, TimesOutWithoutChangesAndShutdownWakesWaiters) {
    testing::TempDir tmp;
    auto writer = Store::open(tmp.file("hub.db"));
    ASSERT_TRUE(writer.has_value());
    auto notifier = ChangeNotifier::start(tmp.file("hub.db"), 5ms);
    ASSERT_TRUE(notifier.has_value());
    ChangeNotifier& n = **notifier;
    uint64_t seen = n.generation();
    EXPECT_FALSE(n.wait_for_change(seen, std::chrono::steady_clock::now() + 50ms));

    std::atomic<bool> woke{false};
    std::thread waiter([&] {
        n.wait_for_change(n.generation(), std::chrono::steady_clock::now() + 30s);
        woke = true;
    });
    auto t0 = std::chrono::steady_clock::now();
    n.shutdown();
    waiter.join();
    EXPECT_TRUE(woke.load());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_TRUE(n.is_shut_down());
}

TEST(ChangeNotifier, InProcessNotifyWakesAtOnce) {
    testing::TempDir tmp;
    auto writer = Store::open(tmp.file("hub.db"));
    ASSERT_TRUE(writer.has_value());
    // A long poll interval shows that notify() does not wait for the watcher.
    auto notifier = ChangeNotifier::start(tmp.file("hub.db"), 10s);
    ASSERT_TRUE(notifier.has_value());
    uint64_t seen = (*notifier)->generation();
    (*notifier)->notify();
    EXPECT_TRUE((*notifier)->wait_for_change(seen, std::chrono::steady_clock::now() + 1s));
}

}  // namespace
}  // namespace sa::hub::store
