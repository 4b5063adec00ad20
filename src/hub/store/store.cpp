#include "hub/store/store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sa::hub::store {
namespace {

// Version 1 of the schema. Timestamps are Unix milliseconds.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS apps (
    name           TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL UNIQUE,
    secret_hash    TEXT NOT NULL,          -- scrypt; the secret itself is never stored
    created_at_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    n                   INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id                  TEXT NOT NULL UNIQUE,
    app                 TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    source              TEXT NOT NULL,
    operation           TEXT NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('queued', 'leased', 'succeeded', 'failed', 'refused')),
    reason_code         TEXT,
    message             TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    agent_id            TEXT,
    lease_id            TEXT,
    lease_expires_at_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    leased_at_ms        INTEGER,
    started_at_ms       INTEGER,
    finished_at_ms      INTEGER,
    completed_at_ms     INTEGER,
    summary_tables      INTEGER,
    summary_views       INTEGER,
    summary_columns     INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_app_status ON jobs(app, status, n);
CREATE TABLE IF NOT EXISTS chunks (
    job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    sha256  TEXT NOT NULL,                 -- lowercase hex of the body
    size    INTEGER NOT NULL,
    data    BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS catalog_tables (
    id             INTEGER PRIMARY KEY,
    app            TEXT NOT NULL,
    source         TEXT NOT NULL,
    database_name  TEXT NOT NULL,
    schema_name    TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    definition     TEXT,
    job_id         TEXT NOT NULL,
    ingested_at_ms INTEGER NOT NULL,
    UNIQUE (app, source, database_name, schema_name, name)
);
CREATE TABLE IF NOT EXISTS catalog_columns (
    table_id             INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    ordinal              INTEGER NOT NULL,
    data_type            TEXT NOT NULL,
    nullable             INTEGER NOT NULL,
    default_value        TEXT,
    primary_key_position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS catalog_columns_by_table ON catalog_columns(table_id, ordinal);
CREATE TABLE IF NOT EXISTS catalog_indexes (
    table_id   INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    is_unique  INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    partial    INTEGER NOT NULL,
    columns    TEXT NOT NULL                -- JSON array of column names
);
CREATE INDEX IF NOT EXISTS catalog_indexes_by_table ON catalog_indexes(table_id);
CREATE TABLE IF NOT EXISTS catalog_foreign_keys (
    table_id           INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,
    referenced_table   TEXT NOT NULL,
    columns            TEXT NOT NULL,       -- JSON array
    referenced_columns TEXT NOT NULL,       -- JSON array
    on_update          TEXT NOT NULL,
    on_delete          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS catalog_foreign_keys_by_table ON catalog_foreign_keys(table_id);
)sql";

// Version 2: client secret rotation with an overlap window, revocation, and
// who did what to an app (issue #5). secret_hash stays the newest secret;
// previous_secret_hash is the one it replaced, valid until
// previous_secret_expires_at_ms. A revoked app keeps its row (its jobs and
// catalog refer to it) and never authenticates again.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE apps ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE apps ADD COLUMN previous_secret_expires_at_ms INTEGER;
ALTER TABLE apps ADD COLUMN rotated_at_ms INTEGER;
ALTER TABLE apps ADD COLUMN rotated_by TEXT;
ALTER TABLE apps ADD COLUMN revoked_at_ms INTEGER;
ALTER TABLE apps ADD COLUMN revoked_by TEXT;
CREATE TABLE IF NOT EXISTS app_events (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,
    app     TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    event   TEXT NOT NULL CHECK (event IN ('created', 'rotated', 'revoked')),
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,                 -- the operator's OS user, or "unknown"
    detail  TEXT                           -- never a secret
);
CREATE INDEX IF NOT EXISTS app_events_by_app ON app_events(app, n);
)sql";

// Version 3 (issue #6): operations with filters, heartbeats with progress,
// cancellation and interactive results. SQLite cannot change a CHECK
// constraint in place, so jobs is rebuilt (the documented 12-step procedure:
// foreign keys are off while it runs, see migrate()); every existing row and
// its queue order (n) are kept.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE jobs_v3 (
    n                   INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id                  TEXT NOT NULL UNIQUE,
    app                 TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    source              TEXT NOT NULL,
    operation           TEXT NOT NULL,
    status              TEXT NOT NULL
        CHECK (status IN ('queued', 'leased', 'succeeded', 'failed', 'refused', 'cancelled')),
    reason_code         TEXT,
    message             TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    agent_id            TEXT,
    lease_id            TEXT,
    lease_expires_at_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    leased_at_ms        INTEGER,
    started_at_ms       INTEGER,
    finished_at_ms      INTEGER,
    completed_at_ms     INTEGER,
    summary_tables      INTEGER,
    summary_views       INTEGER,
    summary_columns     INTEGER,
    filters             TEXT,                 -- JSON, the claim "filters"; NULL: none
    cancel_requested_at_ms INTEGER,
    cancel_requested_by TEXT,                 -- the operator's OS user
    heartbeat_at_ms     INTEGER,              -- last heartbeat of the current lease
    progress_objects    INTEGER,
    progress_bytes      INTEGER,
    progress_chunks     INTEGER,
    progress_phase      TEXT,
    result              TEXT                  -- JSON result of an interactive operation
);
INSERT INTO jobs_v3(n, id, app, source, operation, status, reason_code, message, attempts,
                    agent_id, lease_id, lease_expires_at_ms, created_at_ms, leased_at_ms,
                    started_at_ms, finished_at_ms, completed_at_ms, summary_tables,
                    summary_views, summary_columns)
    SELECT n, id, app, source, operation, status, reason_code, message, attempts, agent_id,
           lease_id, lease_expires_at_ms, created_at_ms, leased_at_ms, started_at_ms,
           finished_at_ms, completed_at_ms, summary_tables, summary_views, summary_columns
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v3 RENAME TO jobs;
CREATE INDEX IF NOT EXISTS jobs_by_app_status ON jobs(app, status, n);
)sql";

// Version 4 (issue #7): the catalog of metadata model version 2. Relations
// gain owner, comment, statistics, partitioning and inheritance; columns the
// normalised type, comment, identity and generation; foreign keys become
// constraints of every type (catalog_constraints replaces
// catalog_foreign_keys); indexes describe their keys (columns or
// expressions), method and predicate; routines and view lineage are new.
// record holds the canonical JSON of the delivered record (what `catalog
// show` prints) and fingerprint its metadata::fingerprint; both are NULL for
// rows converted from version 3, which the next full run replaces.
//
// Conversion of version-3 rows, as metadata::record_from_json converts a
// model version 1 line: tables and columns keep every value (new columns
// take their "unknown" value: normalized_type 'other'); an index's column list
// becomes keys ("<expr>", v1's placeholder for an expression part, becomes an
// expression key) and partial becomes an empty predicate (condition text
// unknown); the primary key columns become a primary_key constraint and a
// unique_constraint index a unique constraint; a foreign key keeps its
// columns and actions, and its referenced_table
// "schema.table" (another schema, PostgreSQL) or "table" (the same schema)
// becomes referenced schema and name. A dot only separates a schema when
// that schema exists in the same source and database: SQLite names may hold
// dots.
constexpr const char* kSchemaV4 = R"sql(
ALTER TABLE catalog_tables ADD COLUMN owner TEXT;
ALTER TABLE catalog_tables ADD COLUMN comment TEXT;
ALTER TABLE catalog_tables ADD COLUMN estimated_rows INTEGER;
ALTER TABLE catalog_tables ADD COLUMN estimated_bytes INTEGER;
ALTER TABLE catalog_tables ADD COLUMN partition_of_schema TEXT;
ALTER TABLE catalog_tables ADD COLUMN partition_of_name TEXT;
ALTER TABLE catalog_tables ADD COLUMN partition_bound TEXT;
ALTER TABLE catalog_tables ADD COLUMN partition_key TEXT;
ALTER TABLE catalog_tables ADD COLUMN inherits TEXT NOT NULL DEFAULT '[]';  -- JSON [{schema,name}]
ALTER TABLE catalog_tables ADD COLUMN fingerprint TEXT;
ALTER TABLE catalog_tables ADD COLUMN record TEXT;
CREATE INDEX IF NOT EXISTS catalog_tables_by_kind ON catalog_tables(app, source, kind);

ALTER TABLE catalog_columns ADD COLUMN normalized_type TEXT NOT NULL DEFAULT 'other';
ALTER TABLE catalog_columns ADD COLUMN comment TEXT;
ALTER TABLE catalog_columns ADD COLUMN identity TEXT NOT NULL DEFAULT '';
ALTER TABLE catalog_columns ADD COLUMN generated TEXT NOT NULL DEFAULT '';
ALTER TABLE catalog_columns ADD COLUMN generation_expression TEXT;

CREATE TABLE catalog_constraints (
    table_id           INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,    -- order within the table
    name               TEXT NOT NULL,       -- '' where the engine keeps none
    type               TEXT NOT NULL
        CHECK (type IN ('primary_key', 'unique', 'foreign_key', 'check')),
    columns            TEXT NOT NULL,       -- JSON array
    referenced_schema  TEXT,                -- foreign_key only
    referenced_name    TEXT,
    referenced_columns TEXT NOT NULL,       -- JSON array; '' entries: the referenced primary key
    on_update          TEXT NOT NULL,
    on_delete          TEXT NOT NULL,
    definition         TEXT                 -- check: the condition
);
CREATE INDEX IF NOT EXISTS catalog_constraints_by_table ON catalog_constraints(table_id, position);
CREATE INDEX IF NOT EXISTS catalog_constraints_by_reference
    ON catalog_constraints(referenced_schema, referenced_name);
-- Converted positions only keep the model's order (primary key, unique
-- constraints in index order, foreign keys in their order): 0, 1 + index
-- rowid, 2^40 + foreign key position.
INSERT INTO catalog_constraints(table_id, position, name, type, columns, referenced_columns,
                                on_update, on_delete)
    SELECT p.table_id, 0, '', 'primary_key',
           (SELECT json_group_array(k.name) FROM
               (SELECT name FROM catalog_columns c WHERE c.table_id = p.table_id AND
                       c.primary_key_position > 0 ORDER BY c.primary_key_position) AS k),
           '[]', '', ''
    FROM (SELECT DISTINCT table_id FROM catalog_columns WHERE primary_key_position > 0) AS p;
INSERT INTO catalog_constraints(table_id, position, name, type, columns, referenced_columns,
                                on_update, on_delete)
    SELECT i.table_id, 1 + i.rowid, i.name, 'unique', i.columns, '[]', '', ''
    FROM catalog_indexes i WHERE i.origin = 'unique_constraint';
INSERT INTO catalog_constraints(table_id, position, name, type, columns, referenced_schema,
                                referenced_name, referenced_columns, on_update, on_delete)
    SELECT f.table_id, (1 << 40) + f.position, '', 'foreign_key', f.columns,
           CASE WHEN s.schema_name IS NULL THEN t.schema_name ELSE s.schema_name END,
           CASE WHEN s.schema_name IS NULL THEN f.referenced_table
                ELSE substr(f.referenced_table, instr(f.referenced_table, '.') + 1) END,
           f.referenced_columns, f.on_update, f.on_delete
    FROM catalog_foreign_keys f
    JOIN catalog_tables t ON t.id = f.table_id
    LEFT JOIN (SELECT DISTINCT app, source, database_name, schema_name FROM catalog_tables) s
        ON instr(f.referenced_table, '.') > 0 AND s.app = t.app AND s.source = t.source AND
           s.database_name = t.database_name AND
           s.schema_name = substr(f.referenced_table, 1, instr(f.referenced_table, '.') - 1);
DROP TABLE catalog_foreign_keys;

CREATE TABLE catalog_indexes_v4 (
    table_id   INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,            -- order within the table
    name       TEXT NOT NULL,
    is_unique  INTEGER NOT NULL,
    origin     TEXT NOT NULL,
    method     TEXT NOT NULL,
    keys       TEXT NOT NULL,               -- JSON [{"column": c} | {"expression": e}]
    predicate  TEXT                         -- NULL: not partial; '': partial, text unknown
);
INSERT INTO catalog_indexes_v4(table_id, position, name, is_unique, origin, method, keys,
                               predicate)
    SELECT i.table_id, i.rowid, i.name, i.is_unique, i.origin, '',
           (SELECT json_group_array(CASE WHEN e.value = '<expr>'
                                         THEN json_object('expression', e.value)
                                         ELSE json_object('column', e.value) END)
            FROM (SELECT value FROM json_each(i.columns) ORDER BY key) AS e),
           CASE WHEN i.partial THEN '' END
    FROM catalog_indexes i;
DROP TABLE catalog_indexes;
ALTER TABLE catalog_indexes_v4 RENAME TO catalog_indexes;
CREATE INDEX IF NOT EXISTS catalog_indexes_by_table ON catalog_indexes(table_id, position);

CREATE TABLE catalog_lineage (
    table_id           INTEGER NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    position           INTEGER NOT NULL,
    referenced_schema  TEXT NOT NULL,
    referenced_name    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS catalog_lineage_by_table ON catalog_lineage(table_id, position);
CREATE INDEX IF NOT EXISTS catalog_lineage_by_reference
    ON catalog_lineage(referenced_schema, referenced_name);

CREATE TABLE catalog_routines (
    id             INTEGER PRIMARY KEY,
    app            TEXT NOT NULL,
    source         TEXT NOT NULL,
    database_name  TEXT NOT NULL,
    schema_name    TEXT NOT NULL,
    name           TEXT NOT NULL,
    signature      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    return_type    TEXT,
    language       TEXT NOT NULL,
    owner          TEXT,
    comment        TEXT,
    fingerprint    TEXT,
    record         TEXT,
    job_id         TEXT NOT NULL,
    ingested_at_ms INTEGER NOT NULL,
    UNIQUE (app, source, database_name, schema_name, name, signature)
);

ALTER TABLE jobs ADD COLUMN summary_routines INTEGER;

-- Incremental runs. jobs.mode: what the operator asked for ('full' |
-- 'incremental'; NULL for the other operations); baseline_job_id: the catalog
-- version of (app, source) taken at the latest lease of an incremental job
-- (NULL: none, the job was signed as full); applied_mode: what the successful
-- completion was ('full' | 'incremental').
ALTER TABLE jobs ADD COLUMN mode TEXT CHECK (mode IN ('full', 'incremental'));
ALTER TABLE jobs ADD COLUMN baseline_job_id TEXT;
ALTER TABLE jobs ADD COLUMN applied_mode TEXT CHECK (applied_mode IN ('full', 'incremental'));
UPDATE jobs SET mode = 'full' WHERE operation = 'extract_metadata';
UPDATE jobs SET applied_mode = 'full'
    WHERE operation = 'extract_metadata' AND status = 'succeeded';
-- The catalog version of (app, source): the job whose completion last changed
-- it. Seeded with the latest succeeded extraction of version 3.
CREATE TABLE catalog_sources (
    app             TEXT NOT NULL,
    source          TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('full', 'incremental')),
    committed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (app, source)
);
INSERT INTO catalog_sources(app, source, job_id, mode, committed_at_ms)
    SELECT app, source, id, 'full', committed FROM
        (SELECT app, source, id, coalesce(completed_at_ms, 0) AS committed,
                row_number() OVER (PARTITION BY app, source
                                   ORDER BY coalesce(completed_at_ms, 0) DESC, n DESC) AS r
         FROM jobs WHERE operation = 'extract_metadata' AND status = 'succeeded')
    WHERE r = 1;
)sql";

// Version 5 (issue #5): apps that authenticate with private_key_jwt (RFC
// 7523). apps.auth_method says how an app authenticates; a key app's
// secret_hash is '' (no secret exists). app_keys holds its public keys: the
// current one (expires_at_ms NULL) and, during a rotation overlap, the one it
// replaced. client_assertion_jtis remembers the jti of every accepted
// assertion until the assertion expires, so none is accepted twice.
// app_events is rebuilt (a CHECK constraint cannot change in place) to allow
// the key events; every row and its order (n) are kept.
constexpr const char* kSchemaV5 = R"sql(
ALTER TABLE apps ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'client_secret'
    CHECK (auth_method IN ('client_secret', 'private_key_jwt'));
CREATE TABLE app_keys (
    app            TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    thumbprint     TEXT NOT NULL,          -- RFC 7638 JWK thumbprint (SHA-256): the kid
    algorithm      TEXT NOT NULL CHECK (algorithm IN ('EdDSA', 'ES256', 'RS256')),
    public_key     TEXT NOT NULL,          -- PEM SubjectPublicKeyInfo
    added_at_ms    INTEGER NOT NULL,
    expires_at_ms  INTEGER,                -- NULL: the current key; else end of its overlap
    PRIMARY KEY (app, thumbprint)
);
CREATE TABLE client_assertion_jtis (
    client_id      TEXT NOT NULL,
    jti            TEXT NOT NULL,
    expires_at_ms  INTEGER NOT NULL,       -- forgotten after this: the assertion is dead
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_jtis_by_expiry ON client_assertion_jtis(expires_at_ms);
CREATE TABLE app_events_v5 (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,
    app     TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    event   TEXT NOT NULL CHECK (event IN ('created', 'rotated', 'revoked', 'key-registered',
                                           'key-rotated')),
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,                 -- the operator's OS user, or "unknown"
    detail  TEXT                           -- never a secret
);
INSERT INTO app_events_v5(n, app, event, at_ms, actor, detail)
    SELECT n, app, event, at_ms, actor, detail FROM app_events;
DROP TABLE app_events;
ALTER TABLE app_events_v5 RENAME TO app_events;
CREATE INDEX IF NOT EXISTS app_events_by_app ON app_events(app, n);
)sql";

Status create_file_private(const std::string& path) {
    // SQLite creates files with the process umask; the database holds secret
    // hashes and customer metadata, so it is created 0600 up front (SQLite
    // gives its -wal and -shm files the same mode).
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail(ErrorCode::io, "cannot create " + path + ": " + std::strerror(errno));
    }
    ::close(fd);
    return {};
}

Status migrate(sqlite::Database& db) {
    auto tx = sqlite::Transaction::begin(db);
    if (!tx) return std::unexpected(tx.error());
    int64_t version = 0;
    {
        // Finalized before migrating: DROP TABLE fails while a statement is open.
        auto st = db.prepare("PRAGMA user_version");
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step == sqlite::Statement::Step::row) version = st->integer(0);
    }
    if (version > kSchemaVersion) {
        return fail(ErrorCode::conflict, "the database has schema version " +
                                             std::to_string(version) +
                                             ", newer than this agent-hub understands (" +
                                             std::to_string(kSchemaVersion) + ")");
    }
    if (version < 1) {
        if (auto s = db.exec(kSchemaV1); !s) return s;
        if (auto s = db.exec("PRAGMA user_version = 1"); !s) return s;
    }
    if (version < 2) {
        if (auto s = db.exec(kSchemaV2); !s) return s;
        if (auto s = db.exec("PRAGMA user_version = 2"); !s) return s;
    }
    if (version < 3) {
        if (auto s = db.exec(kSchemaV3); !s) return s;
        // The rebuilt table must satisfy every reference (chunks -> jobs).
        {
            auto check = db.prepare("PRAGMA foreign_key_check");
            if (!check) return std::unexpected(check.error());
            auto row = check->step();
            if (!row) return std::unexpected(row.error());
            if (*row == sqlite::Statement::Step::row) {
                return fail(ErrorCode::integrity,
                            "schema migration to version 3 left a dangling reference in table " +
                                check->text(0));
            }
        }
        if (auto s = db.exec("PRAGMA user_version = 3"); !s) return s;
    }
    if (version < 4) {
        if (auto s = db.exec(kSchemaV4); !s) return s;
        if (auto s = db.exec("PRAGMA user_version = 4"); !s) return s;
    }
    if (version < 5) {
        if (auto s = db.exec(kSchemaV5); !s) return s;
        if (auto s = db.exec("PRAGMA user_version = 5"); !s) return s;
    }
    return tx->commit();
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path, Create create) {
    std::error_code ec;
    bool exists = std::filesystem::exists(path, ec);
    if (!exists) {
        if (create == Create::never) {
            return fail(ErrorCode::not_found, "no hub database at " + path);
        }
        if (auto s = create_file_private(path); !s) return std::unexpected(s.error());
    }
    auto db = sqlite::Database::open(path, sqlite::Database::Mode::read_write_create);
    if (!db) return std::unexpected(db.error());
    // journal_mode=WAL lets the server's readers and a CLI writer work at the
    // same time; the busy timeout absorbs short write-lock waits between
    // processes. synchronous=NORMAL is durable across process crashes in WAL.
    if (auto s = db->exec("PRAGMA busy_timeout = 10000"); !s) return std::unexpected(s.error());
    if (auto s = db->exec("PRAGMA journal_mode = WAL"); !s) return std::unexpected(s.error());
    // A catalog commit touches hundreds of thousands of rows and their
    // indexes in one transaction: with the default 2 MiB page cache it
    // spills and re-reads pages mid-transaction. 64 MiB is an upper bound
    // (pages are allocated as used), shared by the whole hub.
    if (auto s = db->exec("PRAGMA cache_size = -65536"); !s) return std::unexpected(s.error());
    // Foreign keys stay off while migrating: rebuilding a table (version 3)
    // drops the old one, which would otherwise cascade into its children.
    // PRAGMA foreign_keys cannot change inside a transaction, hence here.
    if (auto s = db->exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF"); !s) {
        return std::unexpected(s.error());
    }
    if (auto s = migrate(*db); !s) return std::unexpected(s.error());
    if (auto s = db->exec("PRAGMA foreign_keys = ON"); !s) return std::unexpected(s.error());
    return std::unique_ptr<Store>(new Store(path, std::move(*db)));
}

}  // namespace sa::hub::store
