#include "agent/connectors/postgres_connector.h"

#include <libpq-fe.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sa::agent::connectors {

namespace {

struct ConnDeleter {
    void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultDeleter {
    void operator()(PGresult* result) const { PQclear(result); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// A NUL-terminated copy of a secret for libpq's parameter array, wiped
// (whole capacity) when it goes out of scope. Reserved once, so no
// reallocation leaves a stray copy behind.
class WipedCString final {
  public:
    explicit WipedCString(std::string_view bytes) {
        value_.reserve(bytes.size() + 1);
        value_.assign(bytes.data(), bytes.size());
    }
    ~WipedCString() { secrets::wipe(value_); }
    WipedCString(const WipedCString&) = delete;
    WipedCString& operator=(const WipedCString&) = delete;
    const char* c_str() const { return value_.c_str(); }
    bool contains_nul() const { return value_.find('\0') != std::string::npos; }

  private:
    std::string value_;
};

// The session settings the server applies at connect time: every statement
// and lock wait is bounded, and every transaction is read-only unless it
// says otherwise (ours never does).
constexpr const char* kSessionOptions =
    "-c statement_timeout=30000 -c lock_timeout=5000 -c default_transaction_read_only=on";

// Rows fetched per round trip from the relation cursor: bounds memory
// whatever the size of the catalog.
constexpr int kFetchRows = 500;

constexpr int kMinimumServerVersion = 120000;

// Schemas the server owns. pg_toast% also covers pg_toast_temp_N.
constexpr std::string_view kUserSchemaCondition =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

// r: table, p: partitioned table, f: foreign table; v: view, m: materialized view.
constexpr std::string_view kRelationKinds = "('r', 'p', 'f', 'v', 'm')";

const std::string kListSchemasSql =
    "SELECT n.nspname, pg_catalog.current_database(), "
    "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c "
    " WHERE c.relnamespace = n.oid AND c.relkind IN " +
    std::string(kRelationKinds) + ") FROM pg_catalog.pg_namespace n WHERE " +
    std::string(kUserSchemaCondition) + " ORDER BY n.nspname";

const std::string kVisibleSchemasSql =
    "SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace n WHERE " +
    std::string(kUserSchemaCondition) + " AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')";

const std::string kDeclareRelationsSql =
    "DECLARE sa_relations NO SCROLL CURSOR FOR "
    "SELECT c.oid, n.nspname, c.relname, c.relkind IN ('v', 'm'), "
    " CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN " +
    std::string(kRelationKinds) + " AND " + std::string(kUserSchemaCondition) +
    " ORDER BY n.nspname, c.relname";

// Every object is addressed by its oid as a bound parameter: no name is
// ever spliced into SQL text.
constexpr const char* kColumnsSql =
    "SELECT a.attname, a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod), "
    " a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), "
    " (SELECT k.i FROM pg_catalog.pg_constraint p, "
    "   LATERAL pg_catalog.unnest(p.conkey) WITH ORDINALITY AS k(attnum, i) "
    "  WHERE p.conrelid = a.attrelid AND p.contype = 'p' AND k.attnum = a.attnum) "
    "FROM pg_catalog.pg_attribute a "
    "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum";

// One row per key column of each index; expression parts (attnum 0) are "<expr>".
constexpr const char* kIndexesSql =
    "SELECT i.relname, x.indisunique, "
    " CASE WHEN x.indisprimary THEN 'primary_key' "
    "      WHEN c.oid IS NOT NULL THEN 'unique_constraint' ELSE 'create_index' END, "
    " x.indpred IS NOT NULL, k.attnum = 0, a.attname "
    "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
    "LEFT JOIN pg_catalog.pg_constraint c "
    " ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid AND c.contype = 'u' "
    "CROSS JOIN LATERAL pg_catalog.unnest(x.indkey::pg_catalog.int2[]) "
    " WITH ORDINALITY AS k(attnum, i) "
    "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
    "WHERE x.indrelid = $1::pg_catalog.oid AND k.i <= x.indnkeyatts "
    "ORDER BY i.relname, k.i";

// One row per column pair of each foreign key.
constexpr const char* kForeignKeysSql =
    "SELECT c.conname, rn.nspname, rc.relname, a.attname, ra.attname, "
    " c.confupdtype, c.confdeltype "
    "FROM pg_catalog.pg_constraint c "
    "JOIN pg_catalog.pg_class rc ON rc.oid = c.confrelid "
    "JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace "
    "CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey)) "
    " WITH ORDINALITY AS k(attnum, refnum, i) "
    "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
    "JOIN pg_catalog.pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refnum "
    "WHERE c.conrelid = $1::pg_catalog.oid AND c.contype = 'f' "
    "ORDER BY c.conname, k.i";

std::string action_name(std::string_view code) {
    if (code == "r") return "RESTRICT";
    if (code == "c") return "CASCADE";
    if (code == "n") return "SET NULL";
    if (code == "d") return "SET DEFAULT";
    return "NO ACTION";  // "a"
}

std::string trimmed(const char* message) {
    std::string s = message != nullptr ? message : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// libpq reports a failed connection as text only (no SQLSTATE). A message
// the server sent carries its severity ("FATAL:"); anything else happened
// before the server answered.
Error classify_connect_error(const std::string& message) {
    const std::string text = "cannot connect to PostgreSQL: " + message;
    if (contains(message, "FATAL:") || contains(message, "ERROR:")) {
        if (contains(message, "authentication failed") || contains(message, "pg_hba.conf") ||
            (contains(message, "role ") && contains(message, "does not exist")) ||
            contains(message, "not permitted to log in") ||
            contains(message, "permission denied")) {
            return {ErrorCode::permission_denied, text};
        }
        if (contains(message, "too many connections") || contains(message, "starting up") ||
            contains(message, "shutting down") || contains(message, "recovery mode")) {
            return {ErrorCode::unavailable, text};
        }
        return {ErrorCode::invalid_argument, text};
    }
    if (contains(message, "Permission denied")) {
        // the connect answered EACCES: the worker's sandbox allows TCP
        // connections to the source's configured port only.
        return {ErrorCode::unavailable,
                text + " (the sandbox allows connections only to the source's port)"};
    }
    if (contains(message, "password") && contains(message, "supplied")) {
        return {ErrorCode::permission_denied, text};  // "no password supplied"
    }
    if (contains(message, "certificate") || contains(message, "SSL")) {
        return {ErrorCode::permission_denied, text};  // TLS verification failed
    }
    return {ErrorCode::unavailable, text};
}

class PostgresConnector final : public Connector {
  public:
    explicit PostgresConnector(ConnPtr conn) : conn_(std::move(conn)) {}

    Status begin();
    Result<ExtractSummary> extract(MetadataSink& sink) override;
    Result<ConnectionInfo> test_connection() override;
    Result<PreflightReport> preflight() override;
    Result<std::vector<SchemaInfo>> list_schemas() override;

  private:
    // Runs sql with text parameters; expects rows (or a command's success).
    Result<ResultPtr> query(const std::string& sql, const std::vector<std::string>& params = {});
    Status describe(const std::string& oid, metadata::Table& table);
    std::string server_version() const {
        const char* v = PQparameterStatus(conn_.get(), "server_version");
        return v != nullptr ? v : "";
    }

    ConnPtr conn_;
    std::string database_;
};

Result<ResultPtr> PostgresConnector::query(const std::string& sql,
                                           const std::vector<std::string>& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    ResultPtr result(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                  nullptr, values.empty() ? nullptr : values.data(), nullptr,
                                  nullptr, 0));
    if (!result) {
        return fail(ErrorCode::unavailable,
                    "PostgreSQL query failed: " + trimmed(PQerrorMessage(conn_.get())));
    }
    const auto status = PQresultStatus(result.get());
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return result;
    const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
    const std::string sqlstate = state != nullptr ? state : "";
    const std::string message =
        "PostgreSQL query failed: " + trimmed(PQresultErrorMessage(result.get())) +
        (sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
    ErrorCode code = ErrorCode::invalid_argument;
    if (sqlstate == "42501" || sqlstate.starts_with("28")) {
        code = ErrorCode::permission_denied;
    } else if (sqlstate.empty() || sqlstate.starts_with("08") || sqlstate.starts_with("57") ||
               sqlstate == "55P03" || PQstatus(conn_.get()) != CONNECTION_OK) {
        // Connection lost, statement or lock timeout, server shutting down.
        code = ErrorCode::unavailable;
    }
    return fail(code, message);
}

Status PostgresConnector::begin() {
    // One snapshot for every catalog read; the empty search_path makes
    // format_type/pg_get_expr/pg_get_viewdef qualify every user object, so
    // the output does not depend on the role's settings.
    if (auto r = query("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) {
        return std::unexpected(r.error());
    }
    if (auto r = query("SELECT pg_catalog.set_config('search_path', '', true)"); !r) {
        return std::unexpected(r.error());
    }
    auto db = query("SELECT pg_catalog.current_database()");
    if (!db) return std::unexpected(db.error());
    database_ = PQgetvalue(db->get(), 0, 0);
    return {};
}

Result<ConnectionInfo> PostgresConnector::test_connection() {
    auto r = query("SELECT pg_catalog.version()");
    if (!r) return std::unexpected(r.error());
    return ConnectionInfo{server_version()};
}

Result<PreflightReport> PostgresConnector::preflight() {
    PreflightReport report;
    report.server_version = server_version();
    report.checks.push_back({"connect", true, "connected to database \"" + database_ + "\""});

    const int version = PQserverVersion(conn_.get());
    const bool supported = version >= kMinimumServerVersion;
    report.checks.push_back(
        {"server_version", supported,
         supported ? "PostgreSQL " + report.server_version
                   : "PostgreSQL " + report.server_version + " is older than 12, not supported"});

    auto catalog = query("SELECT pg_catalog.count(*) FROM pg_catalog.pg_class");
    report.checks.push_back(
        {"read_catalog", catalog.has_value(),
         catalog ? std::string(PQgetvalue(catalog->get(), 0, 0)) + " catalog entries readable"
                 : catalog.error().message});
    if (!catalog) return report;  // the transaction is aborted: nothing else can run

    auto schemas = query(kVisibleSchemasSql);
    if (schemas) {
        const std::string count = PQgetvalue(schemas->get(), 0, 0);
        report.checks.push_back(
            {"schemas_visible", count != "0", count + " non-system schemas with USAGE privilege"});
    } else {
        report.checks.push_back({"schemas_visible", false, schemas.error().message});
        return report;
    }

    auto read_only = query("SHOW transaction_read_only");
    if (read_only) {
        const std::string value = PQgetvalue(read_only->get(), 0, 0);
        report.checks.push_back({"read_only", value == "on", "transaction_read_only = " + value});
    } else {
        report.checks.push_back({"read_only", false, read_only.error().message});
    }
    return report;
}

Result<std::vector<SchemaInfo>> PostgresConnector::list_schemas() {
    auto r = query(kListSchemasSql);
    if (!r) return std::unexpected(r.error());
    std::vector<SchemaInfo> schemas;
    for (int row = 0; row < PQntuples(r->get()); ++row) {
        schemas.push_back({PQgetvalue(r->get(), row, 1), PQgetvalue(r->get(), row, 0),
                           std::stoll(PQgetvalue(r->get(), row, 2))});
    }
    return schemas;
}

Status PostgresConnector::describe(const std::string& oid, metadata::Table& table) {
    auto columns = query(kColumnsSql, {oid});
    if (!columns) return std::unexpected(columns.error());
    PGresult* c = columns->get();
    for (int row = 0; row < PQntuples(c); ++row) {
        metadata::Column column;
        column.name = PQgetvalue(c, row, 0);
        column.ordinal = std::stoll(PQgetvalue(c, row, 1));
        column.data_type = PQgetvalue(c, row, 2);
        column.nullable = std::string_view(PQgetvalue(c, row, 3)) != "t";
        if (!PQgetisnull(c, row, 4)) column.default_value = PQgetvalue(c, row, 4);
        if (!PQgetisnull(c, row, 5))
            column.primary_key_position = std::stoll(PQgetvalue(c, row, 5));
        table.columns.push_back(std::move(column));
    }

    auto indexes = query(kIndexesSql, {oid});
    if (!indexes) return std::unexpected(indexes.error());
    PGresult* x = indexes->get();
    for (int row = 0; row < PQntuples(x); ++row) {
        const std::string name = PQgetvalue(x, row, 0);
        if (table.indexes.empty() || table.indexes.back().name != name) {
            metadata::Index index;
            index.name = name;
            index.unique = std::string_view(PQgetvalue(x, row, 1)) == "t";
            index.origin = PQgetvalue(x, row, 2);
            index.partial = std::string_view(PQgetvalue(x, row, 3)) == "t";
            table.indexes.push_back(std::move(index));
        }
        const bool expression = std::string_view(PQgetvalue(x, row, 4)) == "t";
        table.indexes.back().columns.push_back(expression ? "<expr>" : PQgetvalue(x, row, 5));
    }

    auto keys = query(kForeignKeysSql, {oid});
    if (!keys) return std::unexpected(keys.error());
    PGresult* f = keys->get();
    std::string current;
    for (int row = 0; row < PQntuples(f); ++row) {
        const std::string name = PQgetvalue(f, row, 0);
        if (table.foreign_keys.empty() || current != name) {
            current = name;
            metadata::ForeignKey key;
            // The v1 model has no referenced schema: a table in another
            // schema is named "schema.table".
            const std::string schema = PQgetvalue(f, row, 1);
            key.referenced_table = schema == table.schema ? std::string(PQgetvalue(f, row, 2))
                                                          : schema + "." + PQgetvalue(f, row, 2);
            key.on_update = action_name(PQgetvalue(f, row, 5));
            key.on_delete = action_name(PQgetvalue(f, row, 6));
            table.foreign_keys.push_back(std::move(key));
        }
        table.foreign_keys.back().columns.push_back(PQgetvalue(f, row, 3));
        table.foreign_keys.back().referenced_columns.push_back(PQgetvalue(f, row, 4));
    }
    return {};
}

Result<ExtractSummary> PostgresConnector::extract(MetadataSink& sink) {
    if (auto r = query(kDeclareRelationsSql); !r) return std::unexpected(r.error());
    ExtractSummary summary;
    for (;;) {
        auto batch = query("FETCH " + std::to_string(kFetchRows) + " FROM sa_relations");
        if (!batch) return std::unexpected(batch.error());
        PGresult* b = batch->get();
        const int rows = PQntuples(b);
        for (int row = 0; row < rows; ++row) {
            metadata::Table table;
            table.database = database_;
            table.schema = PQgetvalue(b, row, 1);
            table.name = PQgetvalue(b, row, 2);
            const bool view = std::string_view(PQgetvalue(b, row, 3)) == "t";
            table.kind = view ? "view" : "table";
            if (!PQgetisnull(b, row, 4)) table.definition = PQgetvalue(b, row, 4);
            if (auto st = describe(PQgetvalue(b, row, 0), table); !st) {
                return std::unexpected(st.error());
            }
            if (auto st = sink.write(table); !st) return std::unexpected(st.error());
            (view ? summary.views : summary.tables) += 1;
            summary.columns += static_cast<int64_t>(table.columns.size());
            summary.indexes += static_cast<int64_t>(table.indexes.size());
            summary.foreign_keys += static_cast<int64_t>(table.foreign_keys.size());
        }
        if (rows < kFetchRows) break;
    }
    if (auto r = query("CLOSE sa_relations"); !r) return std::unexpected(r.error());
    return summary;
}

Status check_source(const SourceParams& source, const SourceCredentials& credentials) {
    auto missing = [](const char* field, const char* why) {
        return fail(ErrorCode::invalid_argument,
                    std::string("postgres source: ") + field + " " + why);
    };
    if (source.address.empty()) {
        return missing("address", "is required (the worker connects to an IP, never a name)");
    }
    if (source.port == 0) return missing("port", "is required");
    if (source.database.empty()) return missing("database", "is required");
    if (source.sslmode != "disable" && source.sslmode != "require" &&
        source.sslmode != "verify-ca" && source.sslmode != "verify-full") {
        return missing("sslmode", "must be disable, require, verify-ca or verify-full");
    }
    if (source.sslmode == "verify-full" && source.host.empty()) {
        return missing("host", "is required with sslmode verify-full (the certificate's name)");
    }
    if (!credentials.user || credentials.user->empty()) return missing("user", "is required");
    return {};
}

}  // namespace

Result<ConnectorPtr> make_postgres_connector(const SourceParams& source,
                                             const SourceCredentials& credentials) {
    if (auto st = check_source(source, credentials); !st) return std::unexpected(st.error());
    const WipedCString user(credentials.user->reveal());
    const WipedCString password(credentials.password ? credentials.password->reveal()
                                                     : std::string_view());
    if (user.contains_nul() || password.contains_nul()) {
        return fail(ErrorCode::invalid_argument, "postgres source: a credential contains NUL");
    }
    const std::string port = std::to_string(source.port);
    const bool verify = source.sslmode == "verify-ca" || source.sslmode == "verify-full";
    const std::string root_cert = !source.ca_file.empty() ? source.ca_file : kSystemCaBundle;

    std::vector<const char*> keys;
    std::vector<const char*> values;
    auto set = [&](const char* key, const char* value) {
        keys.push_back(key);
        values.push_back(value);
    };
    set("hostaddr", source.address.c_str());
    if (!source.host.empty()) set("host", source.host.c_str());
    set("port", port.c_str());
    set("dbname", source.database.c_str());
    set("user", user.c_str());
    if (credentials.password) set("password", password.c_str());
    set("sslmode", source.sslmode.c_str());
    if (verify || !source.ca_file.empty()) set("sslrootcert", root_cert.c_str());
    set("application_name", source.application_name.c_str());
    set("connect_timeout", "10");
    set("options", kSessionOptions);
    set("client_encoding", "UTF8");
    // Nothing from a home directory or a Kerberos cache: the password is
    // given (or there is none to find), no service file, no GSSAPI.
    set("passfile", "/dev/null");
    set("gssencmode", "disable");
    keys.push_back(nullptr);
    values.push_back(nullptr);

    ConnPtr conn(PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/0));
    if (!conn) return fail(ErrorCode::unavailable, "cannot connect to PostgreSQL: out of memory");
    if (PQstatus(conn.get()) != CONNECTION_OK) {
        return std::unexpected(classify_connect_error(trimmed(PQerrorMessage(conn.get()))));
    }
    auto connector = std::make_unique<PostgresConnector>(std::move(conn));
    if (auto st = connector->begin(); !st) return std::unexpected(st.error());
    return ConnectorPtr(std::move(connector));
}

}  // namespace sa::agent::connectors
