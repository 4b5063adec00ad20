#include "agent/connectors/postgres_connector.h"

#include <libpq-fe.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/connectors/wiped_cstring.h"

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

// The session settings the server applies at connect time: every statement
// and lock wait is bounded, and every transaction is read-only unless it
// says otherwise (ours never does).
std::string session_options(const SourceParams& source) {
    return "-c statement_timeout=" + std::to_string(source.statement_timeout_ms) +
           " -c lock_timeout=" + std::to_string(source.lock_timeout_ms) +
           " -c default_transaction_read_only=on";
}

// Rows fetched per round trip from each cursor: bounds the client's memory
// (at most one batch per cursor is held) whatever the size of the catalog.
// Relation rows carry view definitions (unbounded text): fewer of them.
constexpr int kRelationFetchRows = 500;
constexpr int kFetchRows = 4000;

constexpr int kMinimumServerVersion = 120000;

// Schemas the server owns. pg_toast% also covers pg_toast_temp_N.
constexpr std::string_view kUserSchemaCondition =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

// r: table, p: partitioned table, f: foreign table; v: view, m: materialized view.
constexpr std::string_view kRelationKinds = "('r', 'p', 'f', 'v', 'm')";

// The relations of the model (c: pg_class, n: its pg_namespace): user
// schemas, no temporary relation, nothing an extension owns.
const std::string kRelationCondition =
    "c.relkind IN " + std::string(kRelationKinds) + " AND c.relpersistence <> 't' AND " +
    std::string(kUserSchemaCondition) +
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e"
    " WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.objid = c.oid"
    " AND e.deptype = 'e')";

// A child cursor's join on the relations of the model, by relation oid.
std::string relations_of(std::string_view relid) {
    std::string join = " JOIN pg_catalog.pg_class c ON c.oid = " + std::string(relid) +
                       " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND ";
    return join + kRelationCondition;
}

// Counts the relations extract() would deliver.
const std::string kListSchemasSql =
    "SELECT n.nspname, pg_catalog.current_database(), "
    "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c "
    " WHERE c.relnamespace = n.oid AND " +
    kRelationCondition + ") FROM pg_catalog.pg_namespace n WHERE " +
    std::string(kUserSchemaCondition) + " ORDER BY n.nspname";

const std::string kVisibleSchemasSql =
    "SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace n WHERE " +
    std::string(kUserSchemaCondition) + " AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')";

// Every cursor is ordered by relation oid (column 0), so the client merges
// them like a merge join: each relation is assembled from the rows that
// share its oid, written, and dropped. No name is ever spliced into SQL.
//
// reltuples is -1 for a relation never analysed (PostgreSQL 14 and newer;
// 12 and 13 report 0). The size is relpages x block size as of the last
// VACUUM/ANALYZE: no function that takes a lock (pg_total_relation_size).
const std::string kRelationsCursor =
    "DECLARE sa_relations NO SCROLL CURSOR FOR "
    "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition, "
    " pg_catalog.pg_get_userbyid(c.relowner), d.description, "
    " CASE WHEN c.relkind <> 'v' AND c.reltuples >= 0 "
    "  THEN pg_catalog.round(c.reltuples)::pg_catalog.int8 END, "
    " CASE WHEN c.relkind IN ('r', 'm') THEN c.relpages::pg_catalog.int8 * "
    "  pg_catalog.current_setting('block_size')::pg_catalog.int8 END, "
    " CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid, true) END, "
    " pn.nspname, pc.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid), "
    " CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END "
    "FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_description d ON d.objoid = c.oid "
    " AND d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objsubid = 0 "
    "LEFT JOIN pg_catalog.pg_inherits pi ON c.relispartition AND pi.inhrelid = c.oid "
    "LEFT JOIN pg_catalog.pg_class pc ON pc.oid = pi.inhparent "
    "LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace "
    "WHERE " +
    kRelationCondition + " ORDER BY c.oid";

// Domains resolve to their base type (recursively) for the normalised
// type; the type as declared is format_type's text.
const std::string kColumnsCursor =
    "DECLARE sa_columns NO SCROLL CURSOR FOR "
    "WITH RECURSIVE dom(oid, base) AS ("
    " SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.typtype = 'd' "
    " UNION ALL SELECT dom.oid, t.typbasetype FROM dom "
    " JOIN pg_catalog.pg_type t ON t.oid = dom.base AND t.typtype = 'd'), "
    "resolved AS (SELECT dom.oid, dom.base FROM dom "
    " JOIN pg_catalog.pg_type t ON t.oid = dom.base AND t.typtype <> 'd'), "
    "pk AS (SELECT p.conrelid, k.attnum, k.i FROM pg_catalog.pg_constraint p, "
    " LATERAL pg_catalog.unnest(p.conkey) WITH ORDINALITY AS k(attnum, i) "
    " WHERE p.contype = 'p') "
    "SELECT a.attrelid, a.attnum, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
    " a.attnotnull, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, "
    " a.attgenerated, ds.description, pk.i, bt.typname, bt.typtype, bt.typcategory, "
    " bt.typnamespace = 'pg_catalog'::pg_catalog.regnamespace "
    "FROM pg_catalog.pg_attribute a" +
    relations_of("a.attrelid") +
    " LEFT JOIN resolved r ON r.oid = a.atttypid "
    "JOIN pg_catalog.pg_type bt ON bt.oid = COALESCE(r.base, a.atttypid) "
    "LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum "
    "LEFT JOIN pg_catalog.pg_description ds ON ds.objoid = a.attrelid "
    " AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = a.attnum "
    "LEFT JOIN pk ON pk.conrelid = a.attrelid AND pk.attnum = a.attnum "
    "WHERE a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attrelid, a.attnum";

// Primary key, unique, foreign key and check constraints; column lists as
// JSON arrays of names (in key order), so no array text is parsed by hand.
const std::string kConstraintsCursor =
    "DECLARE sa_constraints NO SCROLL CURSOR FOR "
    "SELECT o.conrelid, o.conname, o.contype, "
    " (SELECT pg_catalog.json_agg(a.attname ORDER BY k.i) "
    "  FROM pg_catalog.unnest(o.conkey) WITH ORDINALITY AS k(attnum, i) "
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = o.conrelid AND a.attnum = k.attnum), "
    " rn.nspname, rc.relname, "
    " (SELECT pg_catalog.json_agg(a.attname ORDER BY k.i) "
    "  FROM pg_catalog.unnest(o.confkey) WITH ORDINALITY AS k(attnum, i) "
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = o.confrelid AND a.attnum = k.attnum), "
    " o.confupdtype, o.confdeltype, "
    " CASE WHEN o.contype = 'c' THEN pg_catalog.pg_get_expr(o.conbin, o.conrelid, true) END "
    "FROM pg_catalog.pg_constraint o" +
    relations_of("o.conrelid") +
    " LEFT JOIN pg_catalog.pg_class rc ON rc.oid = o.confrelid "
    "LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace "
    "WHERE o.contype IN ('p', 'u', 'f', 'c') "
    "ORDER BY o.conrelid, pg_catalog.strpos('pufc', o.contype::pg_catalog.text), o.conname";

// Key columns only (INCLUDE columns are not keys): a column's name, or an
// expression's text (attnum 0), as a JSON array of [is_expression, text].
const std::string kIndexesCursor =
    "DECLARE sa_indexes NO SCROLL CURSOR FOR "
    "SELECT x.indrelid, i.relname, x.indisunique, "
    " CASE WHEN x.indisprimary THEN 'primary_key' "
    "      WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_constraint u WHERE u.conindid = x.indexrelid "
    "       AND u.conrelid = x.indrelid AND u.contype = 'u') THEN 'unique_constraint' "
    "      ELSE 'create_index' END, "
    " am.amname, pg_catalog.pg_get_expr(x.indpred, x.indrelid, true), "
    " (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(k.attnum = 0, "
    "   CASE WHEN k.attnum = 0 "
    "    THEN pg_catalog.pg_get_indexdef(x.indexrelid, k.i::pg_catalog.int4, true) "
    "    ELSE a.attname::pg_catalog.text END) ORDER BY k.i) "
    "  FROM pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, i) "
    "  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
    "  WHERE k.i <= x.indnkeyatts) "
    "FROM pg_catalog.pg_index x" +
    relations_of("x.indrelid") +
    " JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
    "JOIN pg_catalog.pg_am am ON am.oid = i.relam "
    "ORDER BY x.indrelid, i.relname";

// Inheritance parents of non-partitions ('i', in inhseqno order) and the
// relations a view's rewrite rule reads ('d', by schema and name).
const std::string kLinksCursor =
    "DECLARE sa_links NO SCROLL CURSOR FOR "
    "SELECT l.relid, l.link, l.seq, l.nspname, l.relname FROM ("
    " SELECT h.inhrelid AS relid, 'i' AS link, h.inhseqno AS seq, pn.nspname, pc.relname "
    " FROM pg_catalog.pg_inherits h" +
    relations_of("h.inhrelid") +
    " AND NOT c.relispartition "
    " JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent "
    " JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace "
    " UNION ALL "
    " SELECT DISTINCT rw.ev_class, 'd', 0, pn.nspname, pc.relname "
    " FROM pg_catalog.pg_rewrite rw" +
    relations_of("rw.ev_class") +
    " AND c.relkind IN ('v', 'm') "
    " JOIN pg_catalog.pg_depend dp ON dp.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
    "  AND dp.objid = rw.oid AND dp.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
    "  AND dp.refobjid <> rw.ev_class "
    " JOIN pg_catalog.pg_class pc ON pc.oid = dp.refobjid AND pc.relkind IN " +
    std::string(kRelationKinds) +
    " JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace) l "
    "ORDER BY l.relid, l.link DESC, l.seq, l.nspname, l.relname";

// f: function, p: procedure, a: aggregate, w: window function.
const std::string kRoutinesCursor =
    "DECLARE sa_routines NO SCROLL CURSOR FOR "
    "SELECT p.oid, n.nspname, p.proname, p.prokind, "
    " pg_catalog.pg_get_function_identity_arguments(p.oid), "
    " CASE WHEN p.prokind <> 'p' THEN pg_catalog.pg_get_function_result(p.oid) END, "
    " l.lanname, pg_catalog.pg_get_userbyid(p.proowner), d.description "
    "FROM pg_catalog.pg_proc p "
    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
    "LEFT JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
    "LEFT JOIN pg_catalog.pg_description d ON d.objoid = p.oid "
    " AND d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objsubid = 0 "
    "WHERE p.prokind IN ('f', 'p', 'a', 'w') AND " +
    std::string(kUserSchemaCondition) +
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e"
    " WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND e.objid = p.oid"
    " AND e.deptype = 'e') "
    "ORDER BY n.nspname, p.proname, p.oid";

std::string action_name(std::string_view code) {
    if (code == "r") return "RESTRICT";
    if (code == "c") return "CASCADE";
    if (code == "n") return "SET NULL";
    if (code == "d") return "SET DEFAULT";
    return "NO ACTION";  // "a"
}

std::string relation_kind(std::string_view relkind, bool partition) {
    if (relkind == "p") return std::string(metadata::kind::kPartitionedTable);
    if (relkind == "f") return std::string(metadata::kind::kForeignTable);
    if (relkind == "v") return std::string(metadata::kind::kView);
    if (relkind == "m") return std::string(metadata::kind::kMaterializedView);
    return std::string(partition ? metadata::kind::kPartition : metadata::kind::kTable);
}

std::string routine_kind(std::string_view prokind) {
    if (prokind == "p") return "procedure";
    if (prokind == "a") return "aggregate";
    if (prokind == "w") return "window";
    return "function";
}

// The normalised type of a column from its base type (domains resolved):
// typname, typtype, typcategory, and whether the type is a built-in one.
std::string_view normalized_type(std::string_view name, std::string_view typtype,
                                 std::string_view category, bool builtin) {
    namespace t = metadata::type;
    if (category == "A") return t::kArray;
    if (typtype == "e") return t::kEnum;
    // Extension types with a well-known meaning, wherever installed.
    if (name == "citext") return t::kString;
    if (name == "geometry" || name == "geography") return t::kGeometry;
    if (!builtin) return t::kOther;
    if (name == "bool") return t::kBoolean;
    if (name == "int2" || name == "int4" || name == "int8") return t::kInteger;
    if (name == "numeric" || name == "money") return t::kDecimal;
    if (name == "float4" || name == "float8") return t::kFloat;
    if (name == "text" || name == "varchar" || name == "bpchar" || name == "char" ||
        name == "name") {
        return t::kString;
    }
    if (name == "bytea") return t::kBinary;
    if (name == "date") return t::kDate;
    if (name == "time" || name == "timetz") return t::kTime;
    if (name == "timestamp") return t::kTimestamp;
    if (name == "timestamptz") return t::kTimestampTz;
    if (name == "interval") return t::kInterval;
    if (name == "json" || name == "jsonb") return t::kJson;
    if (name == "uuid") return t::kUuid;
    if (name == "xml") return t::kXml;
    if (category == "G") return t::kGeometry;  // point, line, lseg, box, path, polygon, circle
    if (name == "inet" || name == "cidr" || name == "macaddr" || name == "macaddr8") {
        return t::kNetwork;
    }
    return t::kOther;
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

class PostgresConnector;

// A server-side cursor read in batches: the client holds one batch at a
// time, plus at most the next one the connector fetched ahead (see
// PostgresConnector::prefetch). Rows are addressed through the current position; every batch is
// checked to have the columns the reader addresses (a server is not
// trusted to answer in shape).
class Cursor final {
  public:
    Cursor(PostgresConnector& connector, std::string name, int columns, int batch_rows = kFetchRows)
        : connector_(connector),
          name_(std::move(name)),
          columns_(columns),
          batch_rows_(batch_rows) {}
    // A FETCH still in flight for this cursor is received (and dropped) so
    // the connection never delivers into a cursor that is gone.
    ~Cursor();
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    // Positions on the first row (fetching the first batch).
    Status open(const std::string& declare_sql);
    bool done() const { return done_; }
    // The current row's relation oid (column 0).
    uint32_t oid() const { return static_cast<uint32_t>(std::strtoul(text(0), nullptr, 10)); }
    const char* text(int column) const { return PQgetvalue(batch_.get(), row_, column); }
    std::string string(int column) const { return text(column); }
    bool is_null(int column) const { return PQgetisnull(batch_.get(), row_, column) != 0; }
    bool flag(int column) const { return text(column)[0] == 't'; }
    std::optional<std::string> optional(int column) const {
        if (is_null(column)) return std::nullopt;
        return string(column);
    }
    std::optional<int64_t> optional_int(int column) const {
        if (is_null(column)) return std::nullopt;
        return std::strtoll(text(column), nullptr, 10);
    }
    Status next();
    // Skips the rows of relations before oid (relations the sink did not
    // want, or that the relation cursor filtered out).
    Status skip_to(uint32_t oid) {
        while (!done_ && this->oid() < oid) {
            if (auto st = next(); !st) return st;
        }
        return {};
    }
    bool at(uint32_t oid) const { return !done_ && this->oid() == oid; }
    Status close();

    std::string fetch_sql() const {
        return "FETCH " + std::to_string(batch_rows_) + " FROM " + name_;
    }
    // The answer to the FETCH the connector sent ahead for this cursor.
    void receive_prefetch(Result<ResultPtr> batch) { prefetched_ = std::move(batch); }

  private:
    Status fetch();

    PostgresConnector& connector_;
    std::string name_;
    int columns_;
    int batch_rows_;
    ResultPtr batch_;
    std::optional<Result<ResultPtr>> prefetched_;
    int row_ = 0;
    int rows_ = 0;
    bool last_batch_ = false;
    bool done_ = true;
};

class PostgresConnector final : public Connector {
  public:
    PostgresConnector(ConnPtr conn, const SourceParams& source)
        : conn_(std::move(conn)),
          statement_timeout_ms_(source.statement_timeout_ms),
          lock_timeout_ms_(source.lock_timeout_ms) {}

    Status begin();
    Result<ExtractSummary> extract(MetadataSink& sink) override;
    Result<ConnectionInfo> test_connection() override;
    Result<PreflightReport> preflight() override;
    Result<std::vector<SchemaInfo>> list_schemas() override;

    // Runs sql with text parameters; expects rows (or a command's success).
    // A FETCH sent ahead is received first (into its cursor).
    Result<ResultPtr> query(const std::string& sql, const std::vector<std::string>& params = {});

    // Sends cursor's next FETCH without waiting when nothing else is in
    // flight, so the server reads the next batch while this process turns
    // the current one into records (libpq runs one query at a time per
    // connection: at most one FETCH is ahead). A send that fails is not an
    // error here: the cursor then fetches when it needs the rows, and that
    // reports the problem.
    void prefetch(Cursor& cursor);
    // Receives the FETCH in flight, if any, into its cursor.
    void receive_in_flight();
    const Cursor* in_flight() const { return in_flight_; }

  private:
    Status extract_relations(MetadataSink& sink, ExtractSummary& summary);
    Status extract_routines(MetadataSink& sink, ExtractSummary& summary);
    std::string server_version() const {
        const char* v = PQparameterStatus(conn_.get(), "server_version");
        return v != nullptr ? v : "";
    }

    Result<ResultPtr> checked(ResultPtr result);

    ConnPtr conn_;
    std::string database_;
    int64_t statement_timeout_ms_;
    int64_t lock_timeout_ms_;
    Cursor* in_flight_ = nullptr;
};

Cursor::~Cursor() {
    if (connector_.in_flight() == this) connector_.receive_in_flight();
}

Status Cursor::open(const std::string& declare_sql) {
    if (auto r = connector_.query(declare_sql); !r) return std::unexpected(r.error());
    done_ = false;
    last_batch_ = false;
    return fetch();
}

Status Cursor::fetch() {
    batch_.reset();  // the previous batch is released before the next arrives
    if (connector_.in_flight() == this) connector_.receive_in_flight();
    Result<ResultPtr> r = prefetched_ ? std::move(*prefetched_) : connector_.query(fetch_sql());
    prefetched_.reset();
    if (!r) {
        done_ = true;
        return std::unexpected(r.error());
    }
    batch_ = std::move(*r);
    if (PQnfields(batch_.get()) < columns_) {
        done_ = true;
        return fail(ErrorCode::internal, "PostgreSQL answered " + name_ + " with " +
                                             std::to_string(PQnfields(batch_.get())) +
                                             " columns, expected " + std::to_string(columns_));
    }
    rows_ = PQntuples(batch_.get());
    row_ = 0;
    last_batch_ = rows_ < batch_rows_;
    done_ = rows_ == 0;
    if (!last_batch_) connector_.prefetch(*this);
    return {};
}

Status Cursor::next() {
    if (done_) return {};
    if (++row_ < rows_) return {};
    if (last_batch_) {
        done_ = true;
        batch_.reset();
        return {};
    }
    return fetch();
}

Status Cursor::close() {
    batch_.reset();
    done_ = true;
    if (auto r = connector_.query("CLOSE " + name_); !r) return std::unexpected(r.error());
    prefetched_.reset();  // received by query() if it was in flight
    return {};
}

void PostgresConnector::prefetch(Cursor& cursor) {
    if (in_flight_ != nullptr) return;
    if (PQsendQueryParams(conn_.get(), cursor.fetch_sql().c_str(), 0, nullptr, nullptr, nullptr,
                          nullptr, 0) == 1) {
        in_flight_ = &cursor;
    }
}

void PostgresConnector::receive_in_flight() {
    if (in_flight_ == nullptr) return;
    Cursor* cursor = std::exchange(in_flight_, nullptr);
    ResultPtr result(PQgetResult(conn_.get()));
    // One statement, one result: read to the end so the connection is idle.
    while (PGresult* extra = PQgetResult(conn_.get())) PQclear(extra);
    cursor->receive_prefetch(checked(std::move(result)));
}

Result<ResultPtr> PostgresConnector::query(const std::string& sql,
                                           const std::vector<std::string>& params) {
    receive_in_flight();
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    return checked(
        ResultPtr(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.empty() ? nullptr : values.data(), nullptr, nullptr, 0)));
}

Result<ResultPtr> PostgresConnector::checked(ResultPtr result) {
    if (!result) {
        return fail(ErrorCode::unavailable,
                    "PostgreSQL query failed: " + trimmed(PQerrorMessage(conn_.get())));
    }
    const auto status = PQresultStatus(result.get());
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) return result;
    const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
    const std::string sqlstate = state != nullptr ? state : "";
    std::string message =
        "PostgreSQL query failed: " + trimmed(PQresultErrorMessage(result.get())) +
        (sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
    if (sqlstate == "57014") {
        // 57014 is also a cancel request; with our settings it is the timeout.
        message = "PostgreSQL statement timeout hit (statement_timeout " +
                  std::to_string(statement_timeout_ms_) +
                  " ms; a catalog read waited or ran "
                  "too long): " +
                  message;
    } else if (sqlstate == "55P03") {
        message = "PostgreSQL lock timeout hit (lock_timeout " + std::to_string(lock_timeout_ms_) +
                  " ms; another session holds a conflicting lock): " + message;
    }
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
    // the output does not depend on the role's settings. Every cursor is
    // read to its end: plan for all rows, not the first few.
    if (auto r = query("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) {
        return std::unexpected(r.error());
    }
    // work_mem: the cursors sort the whole catalog by relation once (the
    // columns of 10,000 tables spill ~30 MB to disk at the default 4 MB);
    // 64 MB per sort for the life of this read-only transaction keeps that
    // in memory without asking the server for much.
    if (auto r = query("SELECT pg_catalog.set_config('search_path', '', true), "
                       "pg_catalog.set_config('cursor_tuple_fraction', '1', true), "
                       "pg_catalog.set_config('work_mem', '64MB', true)");
        !r) {
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

// Parses a JSON array of names produced by json_agg (NULL: empty).
std::vector<std::string> names_of(const Cursor& cursor, int column) {
    std::vector<std::string> names;
    if (cursor.is_null(column)) return names;
    const auto json = nlohmann::json::parse(cursor.text(column), nullptr, false);
    if (!json.is_array()) return names;
    for (const auto& name : json) {
        if (name.is_string()) names.push_back(name.get<std::string>());
    }
    return names;
}

void read_column(const Cursor& c, metadata::Table& table) {
    metadata::Column column;
    column.ordinal = std::strtoll(c.text(1), nullptr, 10);
    column.name = c.string(2);
    column.data_type = c.string(3);
    column.nullable = !c.flag(4);
    const std::string_view identity = c.text(6);
    if (identity == "a") column.identity = "always";
    if (identity == "d") column.identity = "by_default";
    if (std::string_view(c.text(7)) == "s") {
        column.generated = "stored";
        column.generation_expression = c.optional(5);
    } else {
        column.default_value = c.optional(5);
    }
    column.comment = c.optional(8);
    column.primary_key_position = c.optional_int(9).value_or(0);
    column.normalized_type = normalized_type(c.text(10), c.text(11), c.text(12), c.flag(13));
    table.columns.push_back(std::move(column));
}

void read_constraint(const Cursor& c, metadata::Table& table) {
    metadata::Constraint constraint;
    constraint.name = c.string(1);
    const std::string_view type = c.text(2);
    constraint.columns = names_of(c, 3);
    if (type == "p") {
        constraint.type = "primary_key";
    } else if (type == "u") {
        constraint.type = "unique";
    } else if (type == "f") {
        constraint.type = "foreign_key";
        constraint.references = metadata::ObjectRef{c.string(4), c.string(5)};
        constraint.referenced_columns = names_of(c, 6);
        constraint.on_update = action_name(c.text(7));
        constraint.on_delete = action_name(c.text(8));
    } else {
        constraint.type = "check";
        constraint.definition = c.optional(9);
    }
    table.constraints.push_back(std::move(constraint));
}

void read_index(const Cursor& c, metadata::Table& table) {
    metadata::Index index;
    index.name = c.string(1);
    index.unique = c.flag(2);
    index.origin = c.string(3);
    index.method = c.string(4);
    index.predicate = c.optional(5);
    if (!c.is_null(6)) {
        const auto json = nlohmann::json::parse(c.text(6), nullptr, false);
        if (json.is_array()) {
            for (const auto& key : json) {
                if (!key.is_array() || key.size() != 2 || !key[1].is_string()) continue;
                metadata::IndexKey part;
                (key[0] == true ? part.expression : part.column) = key[1].get<std::string>();
                index.keys.push_back(std::move(part));
            }
        }
    }
    table.indexes.push_back(std::move(index));
}

void read_link(const Cursor& c, metadata::Table& table) {
    metadata::ObjectRef ref{c.string(3), c.string(4)};
    (std::string_view(c.text(1)) == "i" ? table.inherits : table.depends_on)
        .push_back(std::move(ref));
}

Status PostgresConnector::extract_relations(MetadataSink& sink, ExtractSummary& summary) {
    Cursor relations(*this, "sa_relations", 14, kRelationFetchRows);
    Cursor columns(*this, "sa_columns", 14);
    Cursor constraints(*this, "sa_constraints", 10);
    Cursor indexes(*this, "sa_indexes", 7);
    Cursor links(*this, "sa_links", 5);
    // A previous extract() that a sink error stopped left its cursors open.
    if (auto r = query("CLOSE ALL"); !r) return std::unexpected(r.error());
    // All declared before any is read: the same snapshot, and each child
    // cursor advances in step with the relations.
    for (auto [cursor, sql] : {std::pair{&relations, &kRelationsCursor},
                               {&columns, &kColumnsCursor},
                               {&constraints, &kConstraintsCursor},
                               {&indexes, &kIndexesCursor},
                               {&links, &kLinksCursor}}) {
        if (auto st = cursor->open(*sql); !st) return st;
    }
    struct Child {
        Cursor* cursor;
        void (*read)(const Cursor&, metadata::Table&);
    };
    const Child children[] = {{&columns, read_column},
                              {&constraints, read_constraint},
                              {&indexes, read_index},
                              {&links, read_link}};
    while (!relations.done()) {
        const uint32_t oid = relations.oid();
        metadata::Table table;
        table.database = database_;
        table.schema = relations.string(1);
        table.name = relations.string(2);
        if (sink.wants(table.schema, table.name)) {
            table.kind = relation_kind(relations.text(3), relations.flag(4));
            table.owner = relations.optional(5);
            table.comment = relations.optional(6);
            table.estimated_rows = relations.optional_int(7);
            table.estimated_bytes = relations.optional_int(8);
            table.definition = relations.optional(9);
            if (!relations.is_null(10)) {
                table.partition_of =
                    metadata::ObjectRef{relations.string(10), relations.string(11)};
                table.partition_bound = relations.optional(12);
            }
            table.partition_key = relations.optional(13);
            for (const auto& child : children) {
                if (auto st = child.cursor->skip_to(oid); !st) return st;
                while (child.cursor->at(oid)) {
                    child.read(*child.cursor, table);
                    if (auto st = child.cursor->next(); !st) return st;
                }
            }
            if (auto st = sink.write(table); !st) return st;
            add_to_summary(summary, table);
        }
        if (auto st = relations.next(); !st) return st;
    }
    for (Cursor* cursor : {&relations, &columns, &constraints, &indexes, &links}) {
        if (auto st = cursor->close(); !st) return st;
    }
    return {};
}

Status PostgresConnector::extract_routines(MetadataSink& sink, ExtractSummary& summary) {
    Cursor routines(*this, "sa_routines", 9, kRelationFetchRows);
    if (auto st = routines.open(kRoutinesCursor); !st) return st;
    std::string schema;
    bool wanted = false;
    for (; !routines.done();) {
        if (schema != routines.text(1) || schema.empty()) {
            schema = routines.string(1);
            wanted = sink.wants_schema(schema);
        }
        if (wanted) {
            metadata::Routine routine;
            routine.database = database_;
            routine.schema = schema;
            routine.name = routines.string(2);
            routine.kind = routine_kind(routines.text(3));
            routine.signature = routines.string(4);
            routine.return_type = routines.optional(5);
            routine.language = routines.string(6);
            routine.owner = routines.optional(7);
            routine.comment = routines.optional(8);
            if (auto st = sink.write(routine); !st) return st;
            ++summary.routines;
        }
        if (auto st = routines.next(); !st) return st;
    }
    return routines.close();
}

Result<ExtractSummary> PostgresConnector::extract(MetadataSink& sink) {
    if (PQserverVersion(conn_.get()) < kMinimumServerVersion) {
        // The catalog queries use columns that PostgreSQL 12 introduced.
        return fail(ErrorCode::invalid_argument,
                    "PostgreSQL " + server_version() + " is older than 12, not supported");
    }
    ExtractSummary summary;
    if (auto st = extract_relations(sink, summary); !st) return std::unexpected(st.error());
    if (auto st = extract_routines(sink, summary); !st) return std::unexpected(st.error());
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
    if (source.statement_timeout_ms <= 0)
        return missing("statement_timeout_ms", "must be positive");
    if (source.lock_timeout_ms <= 0) return missing("lock_timeout_ms", "must be positive");
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
    const std::string options = session_options(source);
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
    set("options", options.c_str());
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
    auto connector = std::make_unique<PostgresConnector>(std::move(conn), source);
    if (auto st = connector->begin(); !st) return std::unexpected(st.error());
    return ConnectorPtr(std::move(connector));
}

}  // namespace sa::agent::connectors
