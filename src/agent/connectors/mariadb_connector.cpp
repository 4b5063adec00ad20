#include "agent/connectors/mariadb_connector.h"

#include <arpa/inet.h>
#include <errmsg.h>
#include <fcntl.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/connectors/wiped_cstring.h"
#include "agent/secrets/secret_value.h"
#include "common/crypto/encoding.h"
#include "common/crypto/openssl_ptr.h"
#include "common/util/unique_fd.h"

namespace sa::agent::connectors {

namespace {

struct MysqlDeleter {
    void operator()(MYSQL* mysql) const { mysql_close(mysql); }
};
struct StmtDeleter {
    void operator()(MYSQL_STMT* stmt) const { mysql_stmt_close(stmt); }
};
struct ResDeleter {
    void operator()(MYSQL_RES* res) const { mysql_free_result(res); }
};
using MysqlPtr = std::unique_ptr<MYSQL, MysqlDeleter>;
using StmtPtr = std::unique_ptr<MYSQL_STMT, StmtDeleter>;
using ResPtr = std::unique_ptr<MYSQL_RES, ResDeleter>;

using Cell = std::optional<std::string>;
using Row = std::vector<Cell>;
using RowFn = std::function<Status(const Row&)>;

// The system's trust roots, used for verify-ca/verify-full without a
// ca_file (Connector/C has no "system store" setting of its own).
constexpr const char* kSystemCaBundle = "/etc/ssl/certs/ca-certificates.crt";

constexpr unsigned kConnectTimeoutSeconds = 10;
constexpr unsigned kMinimumMariaDbVersion = 100300;  // 10.3
constexpr unsigned kMinimumMySqlVersion = 80000;     // 8.0

// Databases the server owns: never extracted.
constexpr std::string_view kSystemDatabases =
    "('mysql', 'information_schema', 'performance_schema', 'sys')";

int64_t whole_seconds(int64_t ms) {
    return std::max<int64_t>(1, (ms + 999) / 1000);
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// "?, ?, ?" for n parameters.
std::string placeholders(size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += i == 0 ? "?" : ", ?";
    return out;
}

std::optional<int64_t> to_int(const Cell& cell) {
    if (!cell || cell->empty()) return std::nullopt;
    try {
        return std::stoll(*cell);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

const std::string& text(const Cell& cell) {
    static const std::string kEmpty;
    return cell ? *cell : kEmpty;
}

// Replaces every occurrence of a credential in a message: server messages
// name the user ("Access denied for user 'x'@'h'").
void scrub(std::string& message, std::string_view secret) {
    if (secret.size() < 2) return;  // a one-letter "user" would mangle every message
    for (size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at + 3)) {
        message.replace(at, secret.size(), "***");
    }
}

// The error code for a client or server error number, and an explanation
// for the limits the agent itself sets on the session.
Error classify(unsigned number, std::string message, int64_t statement_s, int64_t lock_s) {
    message += " (error " + std::to_string(number) + ")";
    switch (number) {
        case ER_ACCESS_DENIED_ERROR:       // 1045
        case ER_DBACCESS_DENIED_ERROR:     // 1044
        case ER_TABLEACCESS_DENIED_ERROR:  // 1142
        case ER_SPECIFIC_ACCESS_DENIED_ERROR:
        case ER_ACCOUNT_HAS_BEEN_LOCKED:
            return {ErrorCode::permission_denied, message};
        case ER_BAD_DB_ERROR:  // 1049
            return {ErrorCode::invalid_argument, message};
        case ER_STATEMENT_TIMEOUT:  // 1969
            return {ErrorCode::unavailable,
                    message +
                        " (the statement ran longer than the source's statement timeout, "
                        "max_statement_time = " +
                        std::to_string(statement_s) + " s)"};
        case 3024:  // MySQL: ER_QUERY_TIMEOUT (max_execution_time)
            return {ErrorCode::unavailable,
                    message + " (the statement ran longer than the source's statement timeout)"};
        case ER_LOCK_WAIT_TIMEOUT:  // 1205
            return {ErrorCode::unavailable,
                    message + " (a lock was held longer than the source's lock timeout, " +
                        std::to_string(lock_s) + " s)"};
        case CR_CONNECTION_ERROR:   // 2002
        case CR_CONN_HOST_ERROR:    // 2003
        case CR_SERVER_GONE_ERROR:  // 2006
        case CR_SERVER_LOST:        // 2013
        case CR_SERVER_LOST_EXTENDED:
        case ER_CON_COUNT_ERROR:
        case ER_TOO_MANY_USER_CONNECTIONS:
        case ER_SERVER_SHUTDOWN:
        case ER_QUERY_INTERRUPTED:
        case ER_HOST_IS_BLOCKED:
            if (contains(message, "Permission denied")) {
                // EACCES on connect: the worker's sandbox allows TCP to the
                // source's configured port only.
                message += " (the sandbox allows connections only to the source's port)";
            }
            return {ErrorCode::unavailable, message};
        case CR_SSL_CONNECTION_ERROR:  // 2026
            return {ErrorCode::permission_denied, message + " (TLS handshake or certificate)"};
        default:
            break;
    }
    if (contains(message, "TLS") || contains(message, "SSL") || contains(message, "certificate")) {
        return {ErrorCode::permission_denied, message};
    }
    if (number >= 2000 && number < 3000) return {ErrorCode::unavailable, message};
    return {ErrorCode::invalid_argument, message};
}

bool is_ip_literal(const std::string& s) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

struct RelationInfo {
    std::string name;
    std::string kind;
    std::optional<int64_t> rows;
    std::optional<int64_t> bytes;
    std::optional<std::string> comment;
};

class MariaDbConnector final : public Connector {
  public:
    MariaDbConnector(MysqlPtr mysql, const SourceParams& source, std::string_view user)
        : mysql_(std::move(mysql)),
          database_filter_(source.database),
          statement_s_(whole_seconds(source.statement_timeout_ms)),
          lock_s_(whole_seconds(source.lock_timeout_ms)) {
        user_.reserve(user.size() + 1);
        user_.assign(user);
    }
    ~MariaDbConnector() override { secrets::wipe(user_); }

    Status begin();
    Result<ExtractSummary> extract(MetadataSink& sink) override;
    Result<ConnectionInfo> test_connection() override;
    Result<PreflightReport> preflight() override;
    Result<std::vector<SchemaInfo>> list_schemas() override;

  private:
    Error error_of(unsigned number, const char* message) const {
        std::string text = message != nullptr ? message : "";
        scrub(text, user_);
        return classify(number, "MariaDB query failed: " + text, statement_s_, lock_s_);
    }
    Error connection_error() const {
        return error_of(mysql_errno(mysql_.get()), mysql_error(mysql_.get()));
    }
    // A statement without parameters or rows (session settings).
    Status execute(const std::string& sql);
    // Prepares sql, binds params as strings, and streams the rows (every
    // value as text, NULL as nullopt) into fn. Unbuffered: fn must not run
    // another query.
    Status for_each_row(const std::string& sql, const std::vector<std::string>& params,
                        const RowFn& fn);
    Result<std::vector<std::string>> databases();
    Result<std::vector<RelationInfo>> relations(const std::string& database);
    Status describe_batch(const std::string& database, std::vector<metadata::Table>& batch);
    Status resolve_lineage(const std::string& database, const std::set<std::string>& local,
                           metadata::Table& view);
    Status extract_routines(const std::string& database, MetadataSink& sink,
                            ExtractSummary& summary);
    std::string server_version() const {
        const char* v = mysql_get_server_info(mysql_.get());
        return v != nullptr ? v : "";
    }

    MysqlPtr mysql_;
    std::string database_filter_;
    int64_t statement_s_;
    int64_t lock_s_;
    std::string user_;  // for scrubbing messages only; wiped
    bool mariadb_ = true;
    // Lineage: relations of other databases already looked up.
    std::map<std::pair<std::string, std::string>, bool> exists_cache_;
};

Status MariaDbConnector::execute(const std::string& sql) {
    if (mysql_real_query(mysql_.get(), sql.data(), sql.size()) != 0) {
        return std::unexpected(connection_error());
    }
    // Drain any result so the connection is ready for the next statement.
    ResPtr res(mysql_store_result(mysql_.get()));
    if (!res && mysql_errno(mysql_.get()) != 0) return std::unexpected(connection_error());
    return {};
}

Status MariaDbConnector::for_each_row(const std::string& sql,
                                      const std::vector<std::string>& params, const RowFn& fn) {
    StmtPtr stmt(mysql_stmt_init(mysql_.get()));
    if (!stmt) return std::unexpected(connection_error());
    auto stmt_error = [&] {
        return std::unexpected(
            error_of(mysql_stmt_errno(stmt.get()), mysql_stmt_error(stmt.get())));
    };
    if (mysql_stmt_prepare(stmt.get(), sql.data(), sql.size()) != 0) return stmt_error();
    if (mysql_stmt_param_count(stmt.get()) != params.size()) {
        return fail(ErrorCode::internal, "MariaDB statement parameter count mismatch");
    }
    std::vector<MYSQL_BIND> in(params.size());
    std::vector<unsigned long> in_lengths(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
        in_lengths[i] = params[i].size();
        in[i].buffer_type = MYSQL_TYPE_STRING;
        in[i].buffer = const_cast<char*>(params[i].data());
        in[i].buffer_length = params[i].size();
        in[i].length = &in_lengths[i];
    }
    if (!params.empty() && mysql_stmt_bind_param(stmt.get(), in.data()) != 0) return stmt_error();
    if (mysql_stmt_execute(stmt.get()) != 0) return stmt_error();

    const unsigned fields = mysql_stmt_field_count(stmt.get());
    if (fields == 0) return {};
    std::vector<MYSQL_BIND> out(fields);
    std::vector<std::vector<char>> buffers(fields, std::vector<char>(256));
    std::vector<unsigned long> lengths(fields);
    std::vector<my_bool> nulls(fields);
    std::vector<my_bool> errors(fields);
    auto bind = [&]() {
        for (unsigned i = 0; i < fields; ++i) {
            out[i].buffer_type = MYSQL_TYPE_STRING;
            out[i].buffer = buffers[i].data();
            out[i].buffer_length = buffers[i].size();
            out[i].length = &lengths[i];
            out[i].is_null = &nulls[i];
            out[i].error = &errors[i];
        }
        return mysql_stmt_bind_result(stmt.get(), out.data()) == 0;
    };
    if (!bind()) return stmt_error();
    Row row(fields);
    for (;;) {
        const int rc = mysql_stmt_fetch(stmt.get());
        if (rc == MYSQL_NO_DATA) break;
        if (rc == 1) return stmt_error();
        bool rebind = false;
        for (unsigned i = 0; i < fields; ++i) {
            if (nulls[i]) {
                row[i].reset();
                continue;
            }
            if (lengths[i] > buffers[i].size()) {  // truncated: fetch the whole value
                buffers[i].resize(lengths[i]);
                out[i].buffer = buffers[i].data();
                out[i].buffer_length = buffers[i].size();
                if (mysql_stmt_fetch_column(stmt.get(), &out[i], i, 0) != 0) return stmt_error();
                rebind = true;
            }
            row[i].emplace(buffers[i].data(), lengths[i]);
        }
        if (auto st = fn(row); !st) return st;
        if (rebind && !bind()) return stmt_error();
    }
    return {};
}

Status MariaDbConnector::begin() {
    const char* type = nullptr;
    mariadb_get_infov(mysql_.get(), MARIADB_CONNECTION_SERVER_TYPE, &type);
    mariadb_ = type == nullptr || std::string_view(type) != "MySQL";
    const std::string lock = std::to_string(lock_s_);
    // Bounds first, then read-only: a session that cannot be bounded is not used.
    const std::string limits =
        mariadb_ ? "SET SESSION max_statement_time = " + std::to_string(statement_s_)
                 : "SET SESSION max_execution_time = " + std::to_string(statement_s_ * 1000);
    for (const std::string& sql : {limits, "SET SESSION lock_wait_timeout = " + lock,
                                   "SET SESSION innodb_lock_wait_timeout = " + lock,
                                   std::string("SET SESSION TRANSACTION READ ONLY"),
                                   std::string("START TRANSACTION READ ONLY")}) {
        if (auto st = execute(sql); !st) return st;
    }
    return {};
}

Result<ConnectionInfo> MariaDbConnector::test_connection() {
    if (auto st = execute("SELECT 1"); !st) return std::unexpected(st.error());
    return ConnectionInfo{server_version()};
}

Result<std::vector<std::string>> MariaDbConnector::databases() {
    std::vector<std::string> names;
    std::string sql =
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN " +
        std::string(kSystemDatabases);
    std::vector<std::string> params;
    if (!database_filter_.empty()) {
        sql += " AND SCHEMA_NAME = ?";
        params.push_back(database_filter_);
    }
    sql += " ORDER BY SCHEMA_NAME";
    auto st = for_each_row(sql, params, [&](const Row& row) -> Status {
        names.push_back(text(row[0]));
        return {};
    });
    if (!st) return std::unexpected(st.error());
    return names;
}

Result<PreflightReport> MariaDbConnector::preflight() {
    PreflightReport report;
    report.server_version = server_version();
    report.checks.push_back({"connect", true,
                             database_filter_.empty()
                                 ? "connected"
                                 : "connected to database \"" + database_filter_ + "\""});

    const unsigned long version = mysql_get_server_version(mysql_.get());
    const bool supported =
        mariadb_ ? version >= kMinimumMariaDbVersion : version >= kMinimumMySqlVersion;
    const std::string engine = mariadb_ ? "MariaDB " : "MySQL ";
    report.checks.push_back({"server_version", supported,
                             supported ? engine + report.server_version
                                       : engine + report.server_version +
                                             " is not supported (MariaDB 10.3+ or " +
                                             "MySQL 8.0+ required)"});

    int64_t entries = 0;
    auto catalog = for_each_row("SELECT COUNT(*) FROM information_schema.SCHEMATA", {},
                                [&](const Row& row) -> Status {
                                    entries = to_int(row[0]).value_or(0);
                                    return {};
                                });
    report.checks.push_back({"read_catalog", catalog.has_value(),
                             catalog ? std::to_string(entries) + " databases visible in the catalog"
                                     : catalog.error().message});
    if (!catalog) return report;

    auto names = databases();
    if (names) {
        report.checks.push_back({"schemas_visible", !names->empty(),
                                 std::to_string(names->size()) + " non-system databases visible"});
    } else {
        report.checks.push_back({"schemas_visible", false, names.error().message});
    }

    // The session's own view of its limits: what a DBA would check.
    std::string detail;
    std::string value;
    auto ro = for_each_row(
        mariadb_ ? "SELECT @@session.tx_read_only, @@session.max_statement_time, "
                   "@@session.lock_wait_timeout, @@session.innodb_lock_wait_timeout"
                 : "SELECT @@session.transaction_read_only, @@session.max_execution_time / 1000, "
                   "@@session.lock_wait_timeout, @@session.innodb_lock_wait_timeout",
        {}, [&](const Row& row) -> Status {
            value = text(row[0]);
            detail = "transaction_read_only = " + value + ", max_statement_time = " + text(row[1]) +
                     " s, lock_wait_timeout = " + text(row[2]) +
                     " s, innodb_lock_wait_timeout = " + text(row[3]) + " s";
            return {};
        });
    if (ro) {
        report.checks.push_back({"read_only", value == "1", detail});
    } else {
        report.checks.push_back({"read_only", false, ro.error().message});
    }
    return report;
}

Result<std::vector<SchemaInfo>> MariaDbConnector::list_schemas() {
    std::vector<SchemaInfo> schemas;
    std::string sql =
        "SELECT s.SCHEMA_NAME, (SELECT COUNT(*) FROM information_schema.TABLES t "
        " WHERE t.TABLE_SCHEMA = s.SCHEMA_NAME AND t.TABLE_TYPE IN "
        " ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED')) "
        "FROM information_schema.SCHEMATA s WHERE s.SCHEMA_NAME NOT IN " +
        std::string(kSystemDatabases);
    std::vector<std::string> params;
    if (!database_filter_.empty()) {
        sql += " AND s.SCHEMA_NAME = ?";
        params.push_back(database_filter_);
    }
    sql += " ORDER BY s.SCHEMA_NAME";
    auto st = for_each_row(sql, params, [&](const Row& row) -> Status {
        schemas.push_back({text(row[0]), text(row[0]), to_int(row[1]).value_or(0)});
        return {};
    });
    if (!st) return std::unexpected(st.error());
    return schemas;
}

Result<std::vector<RelationInfo>> MariaDbConnector::relations(const std::string& database) {
    std::vector<RelationInfo> out;
    auto st = for_each_row(
        "SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, TABLE_COMMENT "
        "FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        {database}, [&](const Row& row) -> Status {
            const std::string& type = text(row[1]);
            RelationInfo info;
            if (type == "BASE TABLE" || type == "SYSTEM VERSIONED") {
                info.kind = metadata::kind::kTable;
            } else if (type == "VIEW") {
                info.kind = metadata::kind::kView;
            } else {
                return {};  // SEQUENCE, TEMPORARY, SYSTEM VIEW: not relations we extract
            }
            info.name = text(row[0]);
            if (info.kind == metadata::kind::kTable) {
                info.rows = to_int(row[2]);
                auto data = to_int(row[3]);
                auto index = to_int(row[4]);
                if (data || index) info.bytes = data.value_or(0) + index.value_or(0);
                if (row[5] && !row[5]->empty()) info.comment = row[5];
            }
            out.push_back(std::move(info));
            return {};
        });
    if (!st) return std::unexpected(st.error());
    return out;
}

// COLUMN_DEFAULT as MariaDB 10.2.7+ reports it is already SQL text: string
// literals quoted, expressions as written, and "NULL" for DEFAULT NULL
// (also what a nullable column without a DEFAULT clause shows). SQL NULL
// means "no default". Both mean the same to a reader: no default value.
std::optional<std::string> default_expression(const Cell& cell, bool mariadb,
                                              std::string_view extra, std::string_view type) {
    if (!cell || *cell == "NULL") return std::nullopt;
    if (mariadb) return cell;
    // MySQL 8 reports literals unquoted; expressions carry DEFAULT_GENERATED.
    if (contains(extra, "DEFAULT_GENERATED")) return cell;
    const std::string normalized = mariadb_normalized_type(type);
    if (normalized == metadata::type::kInteger || normalized == metadata::type::kDecimal ||
        normalized == metadata::type::kFloat) {
        return cell;
    }
    std::string quoted = "'";
    for (char c : *cell) {
        if (c == '\'') quoted += '\'';
        quoted += c;
    }
    return quoted + "'";
}

std::string backquoted(std::string_view name) {
    std::string out = "`";
    for (char c : name) {
        if (c == '`') out += '`';
        out += c;
    }
    return out + "`";
}

Status MariaDbConnector::describe_batch(const std::string& database,
                                        std::vector<metadata::Table>& batch) {
    std::unordered_map<std::string, size_t> at;
    std::vector<std::string> params{database};
    bool any_view = false;
    for (size_t i = 0; i < batch.size(); ++i) {
        at.emplace(batch[i].name, i);
        params.push_back(batch[i].name);
        any_view = any_view || batch[i].kind == metadata::kind::kView;
    }
    const std::string in = "(" + placeholders(batch.size()) + ")";
    auto table_of = [&](const Cell& name) -> metadata::Table* {
        auto it = name ? at.find(*name) : at.end();
        return it == at.end() ? nullptr : &batch[it->second];
    };

    // Columns, in ordinal order.
    std::vector<std::vector<std::string>> data_types(batch.size());
    auto st = for_each_row(
        "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, "
        " DATA_TYPE, COLUMN_TYPE, EXTRA, COLUMN_COMMENT, GENERATION_EXPRESSION "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN " +
            in + " ORDER BY TABLE_NAME, ORDINAL_POSITION",
        params, [&](const Row& row) -> Status {
            metadata::Table* table = table_of(row[0]);
            if (table == nullptr) return {};
            metadata::Column column;
            column.name = text(row[1]);
            column.ordinal = to_int(row[2]).value_or(0);
            const std::string extra = upper(text(row[7]));
            column.default_value = default_expression(row[3], mariadb_, extra, text(row[5]));
            column.nullable = text(row[4]) == "YES";
            column.data_type = text(row[6]);
            column.normalized_type = mariadb_normalized_type(text(row[5]));
            if (row[8] && !row[8]->empty()) column.comment = row[8];
            if (contains(extra, "AUTO_INCREMENT")) column.identity = "by_default";
            if (contains(extra, "VIRTUAL GENERATED")) {
                column.generated = "virtual";
            } else if (contains(extra, "STORED GENERATED") ||
                       contains(extra, "PERSISTENT GENERATED")) {
                column.generated = "stored";
            }
            if (!column.generated.empty()) {
                column.default_value.reset();
                if (row[9] && !row[9]->empty()) column.generation_expression = row[9];
            }
            data_types[at[table->name]].push_back(lower(text(row[5])));
            table->columns.push_back(std::move(column));
            return {};
        });
    if (!st) return st;

    // Constraints: names and types, then their columns, actions and checks.
    st = for_each_row(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE FROM "
        "information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN " +
            in + " ORDER BY TABLE_NAME, CONSTRAINT_NAME",
        params, [&](const Row& row) -> Status {
            metadata::Table* table = table_of(row[0]);
            if (table == nullptr) return {};
            const std::string& type = text(row[2]);
            metadata::Constraint constraint;
            constraint.name = text(row[1]);
            if (type == "PRIMARY KEY") {
                constraint.type = "primary_key";
            } else if (type == "UNIQUE") {
                constraint.type = "unique";
            } else if (type == "FOREIGN KEY") {
                constraint.type = "foreign_key";
            } else if (type == "CHECK") {
                constraint.type = "check";
            } else {
                return {};
            }
            table->constraints.push_back(std::move(constraint));
            return {};
        });
    if (!st) return st;
    auto constraint_of = [&](metadata::Table& table, std::string_view name,
                             std::string_view type) -> metadata::Constraint* {
        for (auto& c : table.constraints) {
            if (c.name == name && (type.empty() || c.type == type)) return &c;
        }
        return nullptr;
    };

    st = for_each_row(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION, "
        " REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
        "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN " +
            in + " ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
        params, [&](const Row& row) -> Status {
            metadata::Table* table = table_of(row[0]);
            if (table == nullptr) return {};
            // A foreign key may share its name with a unique key (separate
            // namespaces): the referenced table tells them apart.
            metadata::Constraint* c = nullptr;
            for (auto& candidate : table->constraints) {
                if (candidate.name == text(row[1]) && candidate.type != "check" &&
                    (candidate.type == "foreign_key") == row[5].has_value()) {
                    c = &candidate;
                }
            }
            if (c == nullptr) return {};
            c->columns.push_back(text(row[2]));
            if (c->type == "foreign_key") {
                if (!c->references) c->references = metadata::ObjectRef{text(row[4]), text(row[5])};
                c->referenced_columns.push_back(text(row[6]));
            } else if (c->type == "primary_key") {
                for (auto& column : table->columns) {
                    if (column.name == text(row[2])) {
                        column.primary_key_position = static_cast<int64_t>(c->columns.size());
                    }
                }
            }
            return {};
        });
    if (!st) return st;

    st = for_each_row(
        "SELECT TABLE_NAME, CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE FROM "
        "information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND "
        "TABLE_NAME IN " +
            in,
        params, [&](const Row& row) -> Status {
            metadata::Table* table = table_of(row[0]);
            if (table == nullptr) return {};
            if (metadata::Constraint* c = constraint_of(*table, text(row[1]), "foreign_key")) {
                c->on_update = text(row[2]);
                c->on_delete = text(row[3]);
            }
            return {};
        });
    if (!st) return st;

    const std::string checks_sql =
        mariadb_ ? "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM "
                   "information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND "
                   "TABLE_NAME IN " +
                       in + " ORDER BY TABLE_NAME, CONSTRAINT_NAME"
                 : "SELECT tc.TABLE_NAME, tc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM "
                   "information_schema.TABLE_CONSTRAINTS tc JOIN "
                   "information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = "
                   "tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME "
                   "WHERE tc.CONSTRAINT_TYPE = 'CHECK' AND tc.TABLE_SCHEMA = ? AND "
                   "tc.TABLE_NAME IN " +
                       in + " ORDER BY tc.TABLE_NAME, tc.CONSTRAINT_NAME";
    st = for_each_row(checks_sql, params, [&](const Row& row) -> Status {
        metadata::Table* table = table_of(row[0]);
        if (table == nullptr) return {};
        metadata::Constraint* c = constraint_of(*table, text(row[1]), "check");
        if (c == nullptr) {
            table->constraints.push_back({.name = text(row[1]), .type = "check"});
            c = &table->constraints.back();
        }
        c->definition = text(row[2]);
        return {};
    });
    if (!st) return st;

    // MariaDB's JSON is LONGTEXT with CHECK (json_valid(`column`)).
    for (size_t i = 0; i < batch.size(); ++i) {
        for (size_t k = 0; k < batch[i].columns.size(); ++k) {
            auto& column = batch[i].columns[k];
            if (data_types[i][k] != "longtext") continue;
            const std::string check = "json_valid(" + backquoted(column.name) + ")";
            for (const auto& c : batch[i].constraints) {
                if (c.type == "check" && c.definition == check) {
                    column.normalized_type = metadata::type::kJson;
                }
            }
        }
    }

    st = for_each_row(
        "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, INDEX_TYPE "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN " +
            in + " ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        params, [&](const Row& row) -> Status {
            metadata::Table* table = table_of(row[0]);
            if (table == nullptr) return {};
            const std::string& name = text(row[1]);
            if (table->indexes.empty() || table->indexes.back().name != name) {
                metadata::Index index;
                index.name = name;
                index.unique = text(row[2]) == "0";
                index.method = lower(text(row[5]));
                if (name == "PRIMARY") {
                    index.origin = "primary_key";
                } else if (index.unique && constraint_of(*table, name, "unique") != nullptr) {
                    index.origin = "unique_constraint";
                } else {
                    index.origin = "create_index";
                }
                table->indexes.push_back(std::move(index));
            }
            // Prefix lengths (SUB_PART) have no place in the model: the key
            // names the column.
            table->indexes.back().keys.push_back({.column = text(row[4])});
            return {};
        });
    if (!st) return st;

    if (any_view) {
        st = for_each_row(
            "SELECT TABLE_NAME, VIEW_DEFINITION, DEFINER FROM information_schema.VIEWS "
            "WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN " +
                in,
            params, [&](const Row& row) -> Status {
                metadata::Table* table = table_of(row[0]);
                if (table == nullptr) return {};
                // VIEW_DEFINITION is empty without SHOW VIEW: absent, not "".
                if (row[1] && !row[1]->empty()) table->definition = row[1];
                if (row[2] && !row[2]->empty()) table->owner = row[2];
                return {};
            });
        if (!st) return st;
    }
    return {};
}

Status MariaDbConnector::resolve_lineage(const std::string& database,
                                         const std::set<std::string>& local,
                                         metadata::Table& view) {
    if (!view.definition) return {};
    for (auto& ref : mariadb_view_references(*view.definition)) {
        bool exists = false;
        if (ref.schema == database) {
            exists = local.contains(ref.name);
        } else {
            auto key = std::make_pair(ref.schema, ref.name);
            auto it = exists_cache_.find(key);
            if (it == exists_cache_.end()) {
                bool found = false;
                auto st = for_each_row(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND "
                    "TABLE_NAME = ? AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED')",
                    {ref.schema, ref.name}, [&](const Row& row) -> Status {
                        found = to_int(row[0]).value_or(0) > 0;
                        return {};
                    });
                if (!st) return st;
                it = exists_cache_.emplace(key, found).first;
            }
            exists = it->second;
        }
        if (exists && !(ref.schema == database && ref.name == view.name)) {
            view.depends_on.push_back(std::move(ref));
        }
    }
    return {};
}

Status MariaDbConnector::extract_routines(const std::string& database, MetadataSink& sink,
                                          ExtractSummary& summary) {
    if (!sink.wants_schema(database)) return {};
    // Functions and procedures live in separate namespaces: keyed by both.
    std::map<std::pair<std::string, std::string>, metadata::Routine> routines;
    auto st = for_each_row(
        "SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_COMMENT, DEFINER "
        "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? "
        "AND ROUTINE_TYPE IN ('FUNCTION', 'PROCEDURE')",
        {database}, [&](const Row& row) -> Status {
            metadata::Routine routine;
            routine.database = database;
            routine.schema = database;
            routine.name = text(row[0]);
            routine.kind = text(row[1]) == "FUNCTION" ? "function" : "procedure";
            if (routine.kind == "function" && row[2]) routine.return_type = row[2];
            routine.language = "sql";
            if (row[3] && !row[3]->empty()) routine.comment = row[3];
            if (row[4] && !row[4]->empty()) routine.owner = row[4];
            routines.emplace(std::make_pair(routine.name, text(row[1])), std::move(routine));
            return {};
        });
    if (!st) return st;
    if (routines.empty()) return {};
    st = for_each_row(
        "SELECT SPECIFIC_NAME, ROUTINE_TYPE, PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER "
        "FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = ? AND ORDINAL_POSITION > 0 "
        "ORDER BY SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION",
        {database}, [&](const Row& row) -> Status {
            auto it = routines.find({text(row[0]), text(row[1])});
            if (it == routines.end()) return {};
            std::string& signature = it->second.signature;
            if (!signature.empty()) signature += ", ";
            // Modes only where the engine has them (procedures).
            if (it->second.kind == "procedure" && row[2]) signature += *row[2] + " ";
            signature += backquoted(text(row[3])) + " " + text(row[4]);
            return {};
        });
    if (!st) return st;
    for (auto& [key, routine] : routines) {
        if (auto w = sink.write(routine); !w) return w;
        ++summary.routines;
    }
    return {};
}

Result<ExtractSummary> MariaDbConnector::extract(MetadataSink& sink) {
    auto names = databases();
    if (!names) return std::unexpected(names.error());
    if (!database_filter_.empty() && names->empty()) {
        return fail(ErrorCode::invalid_argument,
                    "MariaDB database \"" + database_filter_ + "\" is not visible to the account");
    }
    ExtractSummary summary;
    for (const std::string& database : *names) {
        auto list = relations(database);
        if (!list) return std::unexpected(list.error());
        std::set<std::string> local;
        for (const auto& r : *list) local.insert(r.name);

        std::vector<metadata::Table> batch;
        auto flush = [&]() -> Status {
            if (batch.empty()) return {};
            if (auto st = describe_batch(database, batch); !st) return st;
            for (auto& table : batch) {
                if (metadata::is_view_kind(table.kind)) {
                    if (auto st = resolve_lineage(database, local, table); !st) return st;
                }
                if (auto st = sink.write(table); !st) return st;
                add_to_summary(summary, table);
            }
            batch.clear();
            return {};
        };
        for (auto& info : *list) {
            if (!sink.wants(database, info.name)) continue;
            metadata::Table table;
            table.database = database;
            table.schema = database;
            table.name = std::move(info.name);
            table.kind = std::move(info.kind);
            table.estimated_rows = info.rows;
            table.estimated_bytes = info.bytes;
            table.comment = std::move(info.comment);
            batch.push_back(std::move(table));
            if (batch.size() == static_cast<size_t>(kMariaDbBatchSize)) {
                if (auto st = flush(); !st) return std::unexpected(st.error());
            }
        }
        if (auto st = flush(); !st) return std::unexpected(st.error());
        if (auto st = extract_routines(database, sink, summary); !st) {
            return std::unexpected(st.error());
        }
    }
    return summary;
}

// ---- verify-full: our own certificate check before Connector/C connects ----
//
// Connector/C 3.3 checks the certificate's name only against the host it
// connected to (source.address, an IP). For verify-full against a name, the
// worker first opens a short connection of its own to the same address and
// port, asks the server for TLS exactly as a client would (greeting, then an
// SSLRequest packet), and lets OpenSSL verify the chain and the name
// (source.host). Then Connector/C connects with the chain checked against the
// same trust roots and the certificate pinned to the SHA-1 fingerprint of
// the one just verified, so the connection that carries the credentials
// must present that very certificate.

struct SslCtxFree {
    void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
    void operator()(SSL* p) const { SSL_free(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// MySQL protocol capability bits (mariadb_com.h) and limits of the greeting.
constexpr uint32_t kCapLongPassword = 1;
constexpr uint32_t kCapProtocol41 = 512;
constexpr uint32_t kCapSsl = 2048;
constexpr uint32_t kCapSecureConnection = 32768;
constexpr uint8_t kCharsetUtf8mb4 = 45;
constexpr size_t kMaxGreeting = 16 * 1024;

// OpenSSL writes to the socket with write(): a server that has closed the
// connection would raise SIGPIPE, which must not end the worker. Blocks it
// in this thread while the handshake runs and discards one raised meanwhile
// (the write itself fails with EPIPE).
class SigpipeBlock final {
  public:
    SigpipeBlock() {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        was_pending_ = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
        blocked_ = ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
    }
    ~SigpipeBlock() {
        if (!blocked_) return;
        sigset_t pending;
        sigemptyset(&pending);
        if (!was_pending_ && ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            const timespec zero{};
            ::sigtimedwait(&pipe_, nullptr, &zero);
        }
        ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeBlock(const SigpipeBlock&) = delete;
    SigpipeBlock& operator=(const SigpipeBlock&) = delete;

  private:
    sigset_t pipe_{};
    sigset_t old_{};
    bool was_pending_ = false;
    bool blocked_ = false;
};

Error precheck_unavailable(const std::string& what, int err) {
    const std::string reason =
        err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT
            ? "timed out after " + std::to_string(kConnectTimeoutSeconds) + " s"
            : std::string(std::strerror(err));
    std::string message = "cannot connect to MariaDB: " + what + " (" + reason + ")";
    if (err == EACCES || err == EPERM) {
        message += " (the sandbox allows connections only to the source's port)";
    }
    return {ErrorCode::unavailable, message};
}

// A server-supplied text, made safe for a log line.
std::string printable(std::string_view text, size_t limit = 200) {
    std::string out;
    for (char c : text.substr(0, limit)) {
        out += (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) ? c : '?';
    }
    return out;
}

// TCP to address:port within timeout_s; the socket is left blocking with
// send/receive timeouts, which also bound the TLS handshake.
Result<util::UniqueFd> dial(const SourceParams& source, unsigned timeout_s) {
    sockaddr_storage storage{};
    socklen_t length = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
    if (::inet_pton(AF_INET, source.address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(source.port);
        length = sizeof *v4;
    } else if (::inet_pton(AF_INET6, source.address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(source.port);
        length = sizeof *v6;
    } else {
        return fail(ErrorCode::invalid_argument, "mariadb source: address must be an IP address");
    }
    util::UniqueFd socket_fd(
        ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!socket_fd.valid()) return std::unexpected(precheck_unavailable("socket failed", errno));
    const int fd = socket_fd.get();
    // Lint allow-listed: the worker connects only to the address the
    // supervisor checked against the egress policy (as libpq's hostaddr and
    // Connector/C's own connection to the same IP do); nothing is resolved.
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
        if (errno != EINPROGRESS) {
            const int err = errno;
            return std::unexpected(precheck_unavailable(
                "cannot reach " + source.address + ":" + std::to_string(source.port), err));
        }
        pollfd p{fd, POLLOUT, 0};
        int ready = 0;
        do {
            ready = ::poll(&p, 1, static_cast<int>(timeout_s * 1000));
        } while (ready < 0 && errno == EINTR);
        int err = ready == 0 ? ETIMEDOUT : ready < 0 ? errno : 0;
        socklen_t err_len = sizeof err;
        if (ready > 0 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) err = errno;
        if (err != 0) {
            return std::unexpected(precheck_unavailable(
                "cannot reach " + source.address + ":" + std::to_string(source.port), err));
        }
    }
    const int flags = ::fcntl(fd, F_GETFL);
    timeval tv{static_cast<time_t>(timeout_s), 0};
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        const int err = errno;
        return std::unexpected(precheck_unavailable("cannot configure the socket", err));
    }
    return socket_fd;
}

Status read_exact(int fd, unsigned char* out, size_t n) {
    while (n > 0) {
        const ssize_t got = ::recv(fd, out, n, 0);
        if (got == 0) {
            return fail(ErrorCode::unavailable,
                        "cannot connect to MariaDB: the server closed the connection during the "
                        "greeting");
        }
        if (got < 0) {
            if (errno == EINTR) continue;
            return std::unexpected(precheck_unavailable("reading the server greeting", errno));
        }
        out += got;
        n -= static_cast<size_t>(got);
    }
    return {};
}

Status write_all(int fd, const unsigned char* data, size_t n) {
    while (n > 0) {
        const ssize_t sent = ::send(fd, data, n, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return std::unexpected(precheck_unavailable("sending the TLS request", errno));
        }
        data += sent;
        n -= static_cast<size_t>(sent);
    }
    return {};
}

// Reads the server's initial handshake packet and checks that it offers TLS.
Status read_greeting(int fd) {
    unsigned char header[4];
    if (auto st = read_exact(fd, header, sizeof header); !st) return st;
    const size_t length = header[0] | (header[1] << 8) | (header[2] << 16);
    if (length == 0 || length > kMaxGreeting) {
        return fail(ErrorCode::unavailable,
                    "cannot connect to MariaDB: the server's greeting is malformed (length " +
                        std::to_string(length) + ")");
    }
    std::vector<unsigned char> packet(length);
    if (auto st = read_exact(fd, packet.data(), packet.size()); !st) return st;
    if (packet[0] == 0xff) {  // an error instead of a greeting (too many connections, blocked)
        const unsigned code = packet.size() >= 3 ? packet[1] | (packet[2] << 8) : 0;
        const std::string_view text(
            reinterpret_cast<const char*>(packet.data()) + std::min<size_t>(3, packet.size()),
            packet.size() - std::min<size_t>(3, packet.size()));
        return fail(ErrorCode::unavailable, "cannot connect to MariaDB: " + printable(text) +
                                                " (error " + std::to_string(code) + ")");
    }
    if (packet[0] != 10) {
        return fail(
            ErrorCode::unavailable,
            "cannot connect to MariaDB: unsupported protocol version " + std::to_string(packet[0]));
    }
    // version byte, server version (NUL-terminated), connection id (4),
    // auth data part 1 (8), filler (1), capability flags, lower 16 bits (2).
    const auto nul = std::find(packet.begin() + 1, packet.end(), 0);
    const size_t caps_at = static_cast<size_t>(nul - packet.begin()) + 1 + 4 + 8 + 1;
    if (nul == packet.end() || caps_at + 2 > packet.size()) {
        return fail(ErrorCode::unavailable, "cannot connect to MariaDB: truncated server greeting");
    }
    const uint32_t caps = packet[caps_at] | (packet[caps_at + 1] << 8);
    if ((caps & kCapSsl) == 0) {
        return fail(ErrorCode::permission_denied,
                    "cannot connect to MariaDB: the server does not offer TLS (sslmode "
                    "verify-full)");
    }
    return {};
}

Status send_ssl_request(int fd) {
    std::array<unsigned char, 4 + 32> packet{};
    packet[0] = 32;  // payload length, 3 bytes little-endian
    packet[3] = 1;   // sequence number: the answer to the greeting (0)
    const uint32_t caps = kCapLongPassword | kCapProtocol41 | kCapSsl | kCapSecureConnection;
    const uint32_t max_packet = 16 * 1024 * 1024;
    for (int i = 0; i < 4; ++i) {
        packet[4 + i] = static_cast<unsigned char>(caps >> (8 * i));
        packet[8 + i] = static_cast<unsigned char>(max_packet >> (8 * i));
    }
    packet[12] = kCharsetUtf8mb4;  // then 23 zero bytes
    return write_all(fd, packet.data(), packet.size());
}

}  // namespace

Result<std::string> mariadb_verify_server_certificate(const SourceParams& source) {
    if (source.host.empty() || source.host.find('\0') != std::string::npos) {
        return fail(ErrorCode::invalid_argument,
                    "mariadb source: host is required with sslmode verify-full (and contains no "
                    "NUL)");
    }
    auto dialed = dial(source, kConnectTimeoutSeconds);
    if (!dialed) return std::unexpected(dialed.error());
    const util::UniqueFd fd = std::move(*dialed);
    if (auto st = read_greeting(fd.get()); !st) return std::unexpected(st.error());
    if (auto st = send_ssl_request(fd.get()); !st) return std::unexpected(st.error());

    const std::string roots = !source.ca_file.empty() ? source.ca_file : kSystemCaBundle;
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
        return fail(ErrorCode::internal, "cannot set up TLS: " + crypto::openssl_error());
    }
    if (SSL_CTX_load_verify_locations(ctx.get(), roots.c_str(), nullptr) != 1) {
        return fail(ErrorCode::permission_denied,
                    "cannot connect to MariaDB: cannot load the trust roots from " +
                        std::string(source.ca_file.empty() ? "the system CA bundle" : "ca_file") +
                        " (" + crypto::openssl_error() + ")");
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    SslPtr ssl(SSL_new(ctx.get()));
    if (!ssl) return fail(ErrorCode::internal, "cannot set up TLS: " + crypto::openssl_error());
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    bool ok = SSL_set_fd(ssl.get(), fd.get()) == 1;
    if (is_ip_literal(source.host)) {
        // An IP as the name: the certificate must carry it as an IP SAN.
        ok = ok && X509_VERIFY_PARAM_set1_ip_asc(param, source.host.c_str()) == 1;
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = ok && X509_VERIFY_PARAM_set1_host(param, source.host.c_str(), 0) == 1 &&
             // SSL_set_tlsext_host_name, without the macro's C cast.
             SSL_ctrl(ssl.get(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                      const_cast<char*>(source.host.c_str())) == 1;
    }
    if (!ok) {
        return fail(ErrorCode::invalid_argument, "mariadb source: host \"" +
                                                     printable(source.host) +
                                                     "\" cannot be used as a certificate name");
    }
    const SigpipeBlock no_sigpipe;
    ERR_clear_error();
    errno = 0;
    const int rc = SSL_connect(ssl.get());
    const long verify = SSL_get_verify_result(ssl.get());
    if (rc != 1 || verify != X509_V_OK) {
        const int err = errno;
        const int reason = SSL_get_error(ssl.get(), rc);
        if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            return fail(ErrorCode::permission_denied,
                        "cannot connect to MariaDB: the server certificate does not match the "
                        "name \"" +
                            printable(source.host) + "\" (sslmode verify-full)");
        }
        if (verify != X509_V_OK) {
            return fail(ErrorCode::permission_denied,
                        "cannot connect to MariaDB: the server certificate is not trusted (" +
                            std::string(X509_verify_cert_error_string(verify)) + "; trust roots: " +
                            (source.ca_file.empty() ? "the system CA bundle" : "ca_file") + ")");
        }
        if (reason == SSL_ERROR_SYSCALL && err != 0) {
            return std::unexpected(precheck_unavailable("TLS handshake", err));
        }
        return fail(
            ErrorCode::permission_denied,
            "cannot connect to MariaDB: TLS handshake failed (" + crypto::openssl_error() + ")");
    }
    const crypto::X509Ptr cert(SSL_get1_peer_certificate(ssl.get()));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!cert || X509_digest(cert.get(), EVP_sha1(), md, &md_len) != 1 || md_len != 20) {
        return fail(ErrorCode::permission_denied,
                    "cannot connect to MariaDB: no server certificate to pin");
    }
    // Best effort: this connection ends here, before any authentication.
    SSL_shutdown(ssl.get());
    return crypto::hex_encode(std::string_view(reinterpret_cast<const char*>(md), md_len));
}

namespace {

Status check_source(const SourceParams& source, const SourceCredentials& credentials) {
    auto missing = [](const char* field, const std::string& why) {
        return fail(ErrorCode::invalid_argument,
                    std::string("mariadb source: ") + field + " " + why);
    };
    if (source.address.empty()) {
        return missing("address", "is required (the worker connects to an IP, never a name)");
    }
    if (!is_ip_literal(source.address)) {
        return missing("address", "must be an IP address (the worker resolves no names)");
    }
    if (source.port == 0) return missing("port", "is required");
    if (source.sslmode != "disable" && source.sslmode != "require" &&
        source.sslmode != "verify-ca" && source.sslmode != "verify-full") {
        return missing("sslmode", "must be disable, require, verify-ca or verify-full");
    }
    if (source.sslmode == "verify-full" && source.host.empty()) {
        return missing("host", "is required with sslmode verify-full (the certificate's name)");
    }
    if (source.host.find('\0') != std::string::npos) {
        // OpenSSL would check the name only up to the NUL.
        return missing("host", "contains NUL");
    }
    if (!credentials.user || credentials.user->empty()) return missing("user", "is required");
    return {};
}

}  // namespace

std::string mariadb_normalized_type(std::string_view data_type) {
    const std::string t = lower(data_type.substr(0, data_type.find('(')));
    using namespace metadata::type;
    static const std::map<std::string, std::string_view, std::less<>> kTypes = {
        {"tinyint", kInteger},
        {"smallint", kInteger},
        {"mediumint", kInteger},
        {"int", kInteger},
        {"integer", kInteger},
        {"bigint", kInteger},
        {"year", kInteger},
        {"bit", kBinary},
        {"bool", kBoolean},
        {"boolean", kBoolean},
        {"decimal", kDecimal},
        {"numeric", kDecimal},
        {"float", kFloat},
        {"double", kFloat},
        {"real", kFloat},
        {"double precision", kFloat},
        {"char", kString},
        {"varchar", kString},
        {"tinytext", kString},
        {"text", kString},
        {"mediumtext", kString},
        {"longtext", kString},
        {"binary", kBinary},
        {"varbinary", kBinary},
        {"tinyblob", kBinary},
        {"blob", kBinary},
        {"mediumblob", kBinary},
        {"longblob", kBinary},
        {"date", kDate},
        {"time", kTime},
        {"datetime", kTimestamp},
        {"timestamp", kTimestampTz},
        {"json", kJson},
        {"enum", kEnum},
        {"set", kEnum},
        {"uuid", kUuid},
        {"inet4", kNetwork},
        {"inet6", kNetwork},
        {"geometry", kGeometry},
        {"point", kGeometry},
        {"linestring", kGeometry},
        {"polygon", kGeometry},
        {"multipoint", kGeometry},
        {"multilinestring", kGeometry},
        {"multipolygon", kGeometry},
        {"geometrycollection", kGeometry},
    };
    auto it = kTypes.find(t);
    return std::string(it != kTypes.end() ? it->second : kOther);
}

std::vector<metadata::ObjectRef> mariadb_view_references(std::string_view sql) {
    std::vector<metadata::ObjectRef> out;
    std::vector<std::string> chain;
    auto finish = [&]() {
        if (chain.size() >= 2) {
            metadata::ObjectRef ref{chain[0], chain[1]};
            if (std::find(out.begin(), out.end(), ref) == out.end()) out.push_back(std::move(ref));
        }
        chain.clear();
    };
    size_t i = 0;
    bool after_dot = false;  // the previous token was "." following an identifier
    while (i < sql.size()) {
        const char c = sql[i];
        if (c == '`') {
            std::string ident;
            ++i;
            while (i < sql.size()) {
                if (sql[i] == '`') {
                    if (i + 1 < sql.size() && sql[i + 1] == '`') {
                        ident += '`';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                ident += sql[i++];
            }
            if (!after_dot) finish();
            chain.push_back(std::move(ident));
            after_dot = false;
            continue;
        }
        if (c == '.' && !chain.empty() && !after_dot) {
            after_dot = true;
            ++i;
            continue;
        }
        if (c == '\'' || c == '"') {  // string literal: skip, honouring '' and backslash escapes
            finish();
            ++i;
            while (i < sql.size()) {
                if (sql[i] == '\\') {
                    i += 2;
                    continue;
                }
                if (sql[i] == c) {
                    if (i + 1 < sql.size() && sql[i + 1] == c) {
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                ++i;
            }
            after_dot = false;
            continue;
        }
        finish();
        after_dot = false;
        ++i;
    }
    finish();
    return out;
}

namespace {

// Connects with Connector/C. pin: the SHA-1 fingerprint the server's
// certificate must have (verify-full, after the pre-check).
Result<ConnectorPtr> open_mariadb(const SourceParams& source, const SourceCredentials& credentials,
                                  const std::string& pin) {
    const WipedCString user(credentials.user->reveal());
    // No password is sent as "": a null password would make the library
    // read $MYSQL_PWD.
    const WipedCString password(credentials.password ? credentials.password->reveal()
                                                     : std::string_view());
    if (user.contains_nul() || password.contains_nul()) {
        return fail(ErrorCode::invalid_argument, "mariadb source: a credential contains NUL");
    }

    MysqlPtr mysql(mysql_init(nullptr));
    if (!mysql) return fail(ErrorCode::unavailable, "cannot connect to MariaDB: out of memory");
    MYSQL* m = mysql.get();
    const unsigned protocol = MYSQL_PROTOCOL_TCP;
    const unsigned connect_timeout = kConnectTimeoutSeconds;
    // Reads and writes outlast the server-side statement limit, so the
    // server's own error (1969) is what the caller sees.
    const unsigned io_timeout = static_cast<unsigned>(
        std::min<int64_t>(whole_seconds(source.statement_timeout_ms) + 30, 24 * 3600));
    const unsigned no = 0;
    // The library refuses an empty attribute value.
    const std::string program =
        source.application_name.empty() ? "secure-agent" : source.application_name;
    const my_bool enforce = 1;
    // verify-full: the name was checked by the pre-check and the pin binds
    // this connection to that certificate; Connector/C's own name check
    // (against the address) is added where the name is that address.
    const my_bool verify_name =
        source.sslmode == "verify-full" && source.host == source.address ? 1 : 0;
    bool ok = mysql_optionsv(m, MYSQL_OPT_PROTOCOL, &protocol) == 0 &&
              mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout) == 0 &&
              mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &io_timeout) == 0 &&
              mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout) == 0 &&
              mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4") == 0 &&
              mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &no) == 0 &&
              mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", program.c_str()) == 0;
    const std::string ca = !source.ca_file.empty() ? source.ca_file : kSystemCaBundle;
    if (source.sslmode != "disable") {
        ok = ok && mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &enforce) == 0 &&
             mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify_name) == 0;
        // A CA makes Connector/C check the chain during the handshake,
        // before any credential is sent.
        if (source.sslmode == "verify-ca" || source.sslmode == "verify-full") {
            ok = ok && mysql_optionsv(m, MYSQL_OPT_SSL_CA, ca.c_str()) == 0;
        }
        // Checked in the TLS handshake, before the credentials are sent.
        if (source.sslmode == "verify-full") {
            ok = ok && !pin.empty() && mysql_optionsv(m, MARIADB_OPT_TLS_PEER_FP, pin.c_str()) == 0;
        }
    }
    if (!ok) return fail(ErrorCode::internal, "cannot set MariaDB connection options");

    const char* database = source.database.empty() ? nullptr : source.database.c_str();
    if (mysql_real_connect(m, source.address.c_str(), user.c_str(), password.c_str(), database,
                           source.port, /*unix_socket=*/nullptr, /*flags=*/0) == nullptr) {
        std::string message = mysql_error(m);
        scrub(message, user.view());
        scrub(message, password.view());
        const int64_t s = whole_seconds(source.statement_timeout_ms);
        const int64_t l = whole_seconds(source.lock_timeout_ms);
        return std::unexpected(
            classify(mysql_errno(m), "cannot connect to MariaDB: " + message, s, l));
    }
    if (source.sslmode != "disable" && mysql_get_ssl_cipher(m) == nullptr) {
        return fail(ErrorCode::permission_denied,
                    "cannot connect to MariaDB: the connection is not encrypted (sslmode " +
                        source.sslmode + ")");
    }
    auto connector = std::make_unique<MariaDbConnector>(std::move(mysql), source, user.view());
    if (auto st = connector->begin(); !st) return std::unexpected(st.error());
    return ConnectorPtr(std::move(connector));
}

}  // namespace

Result<ConnectorPtr> make_mariadb_connector(const SourceParams& source,
                                            const SourceCredentials& credentials) {
    if (auto st = check_source(source, credentials); !st) return std::unexpected(st.error());
    std::string pin;
    if (source.sslmode == "verify-full") {
        auto fingerprint = mariadb_verify_server_certificate(source);
        if (!fingerprint) return std::unexpected(fingerprint.error());
        pin = std::move(*fingerprint);
    }
    return open_mariadb(source, credentials, pin);
}

namespace detail {

Result<ConnectorPtr> connect_mariadb_pinned(const SourceParams& source,
                                            const SourceCredentials& credentials,
                                            const std::string& sha1_fingerprint) {
    if (auto st = check_source(source, credentials); !st) return std::unexpected(st.error());
    if (source.sslmode != "verify-full") {
        return fail(ErrorCode::invalid_argument, "a pinned connection needs sslmode verify-full");
    }
    return open_mariadb(source, credentials, sha1_fingerprint);
}

}  // namespace detail

}  // namespace sa::agent::connectors
