#include "agent/connectors/sqlite_connector.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/sqlite/database.h"

namespace sa::agent::connectors {

namespace {

using sqlite::Database;
using sqlite::Statement;

// Every object name reaches the source only as a bound parameter of a
// pragma's table-valued form; 'main' pins the lookup to the opened file (a
// temp object of the same name cannot shadow it, and temp objects, which
// live in the temp schema, are never listed).
constexpr std::string_view kSchemaSql =
    "SELECT type, name, sql FROM main.sqlite_schema "
    "WHERE type IN ('table','view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";
constexpr std::string_view kColumnsSql =
    "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden "
    "FROM pragma_table_xinfo(?1, 'main') ORDER BY cid";
constexpr std::string_view kIndexesSql =
    "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1, 'main') ORDER BY name";
constexpr std::string_view kIndexKeysSql =
    "SELECT name, cid, \"desc\" FROM pragma_index_xinfo(?1, 'main') WHERE key = 1 ORDER BY seqno";
constexpr std::string_view kIndexSqlSql =
    "SELECT sql FROM main.sqlite_schema WHERE type = 'index' AND name = ?1";
// SQLite numbers foreign keys last-declared first; descending id gives the
// declaration order, which is what a reader of the DDL expects.
constexpr std::string_view kForeignKeysSql =
    "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete "
    "FROM pragma_foreign_key_list(?1, 'main') ORDER BY id DESC, seq";
// A foreign key names its parent as written; table_list looks a name up as
// SQLite resolves it (ignoring ASCII case), through the schema's hash.
constexpr std::string_view kParentSql =
    "SELECT name FROM pragma_table_list(?1) WHERE schema = 'main' AND type <> 'view'";
constexpr std::string_view kHasStatsSql =
    "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'";
// One row per table, in the order of kSchemaSql (BINARY, as std::string
// compares), so the walk merges it in one pass: sqlite_stat1 has no index on
// tbl. A stat row starts with the number of rows of the table (or of the
// index, which has one entry per row; fewer for a partial one), and the
// largest figure is the table's.
constexpr std::string_view kStatsSql =
    "SELECT tbl, max(CASE WHEN stat GLOB '[0-9]*' THEN CAST(stat AS INTEGER) END) "
    "FROM main.sqlite_stat1 GROUP BY tbl ORDER BY tbl";

// pragma_table_xinfo "hidden": 1 marks the hidden columns of a virtual table
// (not part of its declared shape); 2 and 3 are generated columns, kept.
constexpr int64_t kHiddenVirtualTableColumn = 1;
constexpr int64_t kGeneratedVirtual = 2;
constexpr int64_t kGeneratedStored = 3;
// pragma_index_xinfo cid of an expression part of an index key.
constexpr int64_t kExpressionKey = -2;

constexpr std::string_view kUnknownExpression = "<expression>";

char ascii_upper(char c) {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string ascii_upper(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_upper(c);
    return out;
}

// SQLite compares identifiers and keywords ignoring ASCII case only.
bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (ascii_upper(a[i]) != ascii_upper(b[i])) return false;
    }
    return true;
}

bool starts_with_words(std::string_view sql, std::string_view prefix) {
    return sql.size() >= prefix.size() && iequals(sql.substr(0, prefix.size()), prefix);
}

bool is_virtual_table(std::string_view sql) {
    // sqlite_schema keeps "CREATE VIRTUAL TABLE" normalised; only case may vary.
    return starts_with_words(sql, "CREATE VIRTUAL TABLE");
}

std::string origin_name(std::string_view origin) {
    if (origin == "pk") return "primary_key";
    if (origin == "u") return "unique_constraint";
    return "create_index";  // "c"
}

// The type family of a declared type: SQLite's affinity rules
// (datatype3.html §3.1, applied in their order), refined by the common
// names whose meaning is unambiguous. A view column without a declared type
// is an expression SQLite knows nothing about: "other". A table column
// without one has BLOB affinity: "binary".
std::string normalized_type(std::string_view declared, bool view_column) {
    namespace t = metadata::type;
    const std::string upper = ascii_upper(declared);
    // "VARCHAR(20)", "DECIMAL(10, 2)": the name is what precedes the arguments.
    std::string_view base = upper;
    base = base.substr(0, base.find('('));
    while (!base.empty() && (base.back() == ' ' || base.back() == '\t')) base.remove_suffix(1);
    while (!base.empty() && (base.front() == ' ' || base.front() == '\t')) base.remove_prefix(1);

    if (base.empty()) return std::string(view_column ? t::kOther : t::kBinary);
    if (base == "BOOLEAN" || base == "BOOL") return std::string(t::kBoolean);
    if (base == "DATE") return std::string(t::kDate);
    if (base == "DATETIME" || base == "TIMESTAMP") return std::string(t::kTimestamp);
    if (base == "TIME") return std::string(t::kTime);
    if (base == "JSON") return std::string(t::kJson);

    auto has = [&](std::string_view word) { return upper.find(word) != std::string::npos; };
    if (has("INT")) return std::string(t::kInteger);
    if (has("CHAR") || has("CLOB") || has("TEXT")) return std::string(t::kString);
    if (has("BLOB")) return std::string(t::kBinary);
    if (has("REAL") || has("FLOA") || has("DOUB")) return std::string(t::kFloat);
    // NUMERIC affinity: NUMERIC, DECIMAL(p,s) and every other name.
    return std::string(t::kDecimal);
}

// ---------------------------------------------------------------------------
// CREATE INDEX text. SQLite keeps an index's statement in sqlite_schema with
// "CREATE [UNIQUE] INDEX" normalised and the rest as the user wrote it, but
// exposes neither the text of an expression key nor the WHERE clause of a
// partial index. The tokeniser below follows SQLite's lexical rules for
// everything that can hide a parenthesis, comma or keyword (quoted names and
// strings with doubled quotes, [names], comments); the text is used only when
// the statement has exactly the shape "... ON name ( keys ) [WHERE cond]" and
// every key lines up with what index_xinfo reports.

struct Token {
    enum class Kind { word, quoted, punct };
    Kind kind;
    size_t begin;
    size_t end;
};

bool is_word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

std::optional<std::vector<Token>> tokenize(std::string_view sql) {
    std::vector<Token> tokens;
    size_t i = 0;
    while (i < sql.size()) {
        const char c = sql[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            ++i;
        } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
            const size_t eol = sql.find('\n', i);
            i = eol == std::string_view::npos ? sql.size() : eol + 1;
        } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
            const size_t close = sql.find("*/", i + 2);
            i = close == std::string_view::npos ? sql.size() : close + 2;
        } else if (c == '\'' || c == '"' || c == '`' || c == '[') {
            const char close = c == '[' ? ']' : c;
            size_t j = i + 1;
            for (;;) {
                if (j >= sql.size()) return std::nullopt;  // unterminated
                if (sql[j] == close) {
                    // A doubled quote is an escaped one ("[...]" has no escape).
                    if (c != '[' && j + 1 < sql.size() && sql[j + 1] == close) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                ++j;
            }
            tokens.push_back({Token::Kind::quoted, i, j + 1});
            i = j + 1;
        } else if (is_word_char(static_cast<unsigned char>(c))) {
            size_t j = i;
            while (j < sql.size() && is_word_char(static_cast<unsigned char>(sql[j]))) ++j;
            tokens.push_back({Token::Kind::word, i, j});
            i = j;
        } else {
            tokens.push_back({Token::Kind::punct, i, i + 1});
            ++i;
        }
    }
    return tokens;
}

std::string_view token_text(std::string_view sql, const Token& t) {
    return sql.substr(t.begin, t.end - t.begin);
}

bool is_keyword(std::string_view sql, const Token& t, std::string_view keyword) {
    return t.kind == Token::Kind::word && iequals(token_text(sql, t), keyword);
}

bool is_punct(std::string_view sql, const Token& t, char c) {
    return t.kind == Token::Kind::punct && sql[t.begin] == c;
}

// The name a word or quoted token stands for.
std::string dequote(std::string_view sql, const Token& t) {
    std::string_view text = token_text(sql, t);
    if (t.kind != Token::Kind::quoted) return std::string(text);
    const char open = text.front();
    std::string_view inner = text.substr(1, text.size() - 2);
    if (open == '[') return std::string(inner);
    std::string out;
    for (size_t i = 0; i < inner.size(); ++i) {
        out += inner[i];
        if (inner[i] == open) ++i;  // skip the second of a doubled quote
    }
    return out;
}

struct ParsedIndex {
    std::vector<std::vector<Token>> keys;
    std::optional<std::string> predicate;  // the WHERE condition, when present
};

std::optional<ParsedIndex> parse_create_index(std::string_view sql) {
    auto tokens = tokenize(sql);
    if (!tokens) return std::nullopt;
    const auto& tk = *tokens;
    // ON is a reserved word: before it come only CREATE [UNIQUE] INDEX and the
    // index name, which is a quoted token if it spells ON.
    size_t i = 0;
    while (i < tk.size() && !is_keyword(sql, tk[i], "ON")) ++i;
    // ON, the table name (never schema-qualified here), "(".
    if (i + 2 >= tk.size() || tk[i + 1].kind == Token::Kind::punct ||
        !is_punct(sql, tk[i + 2], '(')) {
        return std::nullopt;
    }
    ParsedIndex parsed;
    parsed.keys.emplace_back();
    int depth = 1;
    size_t j = i + 3;
    for (; j < tk.size(); ++j) {
        if (is_punct(sql, tk[j], '(')) {
            ++depth;
        } else if (is_punct(sql, tk[j], ')')) {
            if (--depth == 0) break;
        } else if (depth == 1 && is_punct(sql, tk[j], ',')) {
            parsed.keys.emplace_back();
            continue;
        }
        parsed.keys.back().push_back(tk[j]);
    }
    if (j >= tk.size()) return std::nullopt;  // no closing parenthesis
    for (const auto& key : parsed.keys) {
        if (key.empty()) return std::nullopt;
    }
    ++j;
    if (j < tk.size()) {
        if (!is_keyword(sql, tk[j], "WHERE") || j + 1 >= tk.size()) return std::nullopt;
        // From the condition's first token to its last: comments around it
        // are not part of it, comments inside are kept as written.
        const size_t begin = tk[j + 1].begin;
        parsed.predicate = std::string(sql.substr(begin, tk.back().end - begin));
    }
    return parsed;
}

struct IndexKeyRow {
    std::optional<std::string> name;
    int64_t cid = 0;
    bool desc = false;
};

// Fills x.keys from the index_xinfo rows, with expression text from the
// parsed statement when every key lines up, else kUnknownExpression.
// asc_column: the table has a column named "asc" (ASC and DESC are keywords
// SQLite also accepts as column names).
void resolve_keys(std::string_view sql, const std::optional<ParsedIndex>& parsed,
                  const std::vector<IndexKeyRow>& rows, bool asc_column, metadata::Index& x) {
    std::vector<std::string> expressions(rows.size(), std::string(kUnknownExpression));
    bool aligned = parsed && parsed->keys.size() == rows.size();
    for (size_t k = 0; aligned && k < rows.size(); ++k) {
        std::vector<Token> key = parsed->keys[k];
        // The sort order is not part of the key. It is the last word, after
        // something ("desc" alone is a column of that name), and not a
        // collation's name ("COLLATE desc").
        auto ends_with_order = [&](std::string_view word) {
            return key.size() > 1 && is_keyword(sql, key.back(), word) &&
                   !is_keyword(sql, key[key.size() - 2], "COLLATE");
        };
        if (rows[k].desc) {
            // SQLite says descending: the key must end with DESC.
            if (!ends_with_order("DESC")) aligned = false;
            key.pop_back();
        } else if (ends_with_order("ASC")) {
            // "x ASC" or an expression ending with the column asc ("x || asc"):
            // only a tokeniser cannot tell them apart.
            if (asc_column) aligned = false;
            key.pop_back();
        }
        // An ascending key ending with "desc" ends with the column desc.
        if (!aligned) break;
        if (rows[k].cid == kExpressionKey) {
            expressions[k] =
                std::string(sql.substr(key.front().begin, key.back().end - key.front().begin));
            continue;
        }
        // A column key must be just the column's name (and its collation).
        if (key.size() == 3 && is_keyword(sql, key[1], "COLLATE")) key.resize(1);
        aligned = key.size() == 1 && key[0].kind != Token::Kind::punct && rows[k].name &&
                  iequals(dequote(sql, key[0]), *rows[k].name);
    }
    for (size_t k = 0; k < rows.size(); ++k) {
        if (rows[k].cid == kExpressionKey) {
            x.keys.push_back({.column = "",
                              .expression = aligned ? std::move(expressions[k])
                                                    : std::string(kUnknownExpression)});
        } else {
            x.keys.push_back({.column = rows[k].name.value_or(""), .expression = ""});
        }
    }
}

// ---------------------------------------------------------------------------
// View lineage. SQLite reports, through its authorizer, the table columns a
// statement reads (SQLITE_READ; with an empty column name for a table read
// without naming a column, as in count(*)) while the statement is prepared.
// Against the source itself that would see through nested views to their
// tables, and would report a view only when a column of it is named. So the
// view is prepared in a private in-memory catalog instead, in which the
// relations it names are plain tables with the same column names (stand-ins,
// created on demand from SQLite's own "no such table" answers): every
// relation the view's query names, in FROM clauses, subqueries and WITH
// bodies, is then a table read by the statement. A table joined only through
// USING is not reported by the authorizer; the statement's program (EXPLAIN,
// which lists it without running it) opens a cursor on it. Nothing is ever
// run against the source; the view's statement runs only in the private
// catalog, under an authorizer that allows nothing but creating that view.

std::string quote_identifier(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        out += c;
        if (c == '"') out += '"';
    }
    out += '"';
    return out;
}

struct CloseHandle {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct FinalizeStatement {
    void operator()(sqlite3_stmt* st) const { sqlite3_finalize(st); }
};
using Handle = std::unique_ptr<sqlite3, CloseHandle>;
using StatementHandle = std::unique_ptr<sqlite3_stmt, FinalizeStatement>;

// Allows only what "CREATE VIEW" itself needs: the new row in sqlite_master.
int allow_create_view(void*, int action, const char* a1, const char*, const char*, const char*) {
    if (action == SQLITE_CREATE_VIEW) return SQLITE_OK;
    const bool catalog = a1 != nullptr && std::string_view(a1) == "sqlite_master";
    if (catalog && (action == SQLITE_INSERT || action == SQLITE_UPDATE || action == SQLITE_READ)) {
        return SQLITE_OK;
    }
    return SQLITE_DENY;
}

int deny_all(void*, int, const char*, const char*, const char*, const char*) {
    return SQLITE_DENY;
}

// Records every table read; refuses anything a query does not do.
int record_reads(void* user, int action, const char* a1, const char*, const char* db, const char*) {
    switch (action) {
        case SQLITE_READ:
            if (a1 != nullptr && (db == nullptr || std::string_view(db) == "main")) {
                static_cast<std::set<std::string>*>(user)->insert(a1);
            }
            return SQLITE_OK;
        case SQLITE_SELECT:
        case SQLITE_FUNCTION:
        case SQLITE_RECURSIVE:
        case SQLITE_PRAGMA:  // the read-only table-valued pragma_* functions
            return SQLITE_OK;
        default:
            return SQLITE_DENY;
    }
}

constexpr std::string_view kRelationSql =
    "SELECT name FROM pragma_table_list(?1) "
    "WHERE schema = 'main' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";

class LineageCatalog final {
  public:
    // Errors: the private database could not be opened, or a statement on
    // the source could not be prepared.
    static Result<LineageCatalog> open(Database& source) {
        auto relation = source.prepare(kRelationSql);
        if (!relation) return std::unexpected(relation.error());
        auto columns = source.prepare(kColumnsSql);
        if (!columns) return std::unexpected(columns.error());
        sqlite3* raw = nullptr;
        const int rc = sqlite3_open_v2(
            ":memory:", &raw,
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_MEMORY,
            nullptr);
        Handle db(raw);
        if (rc != SQLITE_OK) {
            return fail(ErrorCode::internal, "cannot open the in-memory lineage catalog");
        }
        // The view statements come from the source file: keep them away from
        // other files and from the catalog's internals.
        sqlite3_limit(db.get(), SQLITE_LIMIT_ATTACHED, 0);
        sqlite3_db_config(db.get(), SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
        sqlite3_db_config(db.get(), SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
        return LineageCatalog(std::move(db), std::move(*relation), std::move(*columns));
    }

    // The relations the view's statement names, sorted by name; empty when
    // the statement cannot be prepared in the private catalog (a broken view,
    // a name SQLite reserves).
    std::vector<metadata::ObjectRef> dependencies(const std::string& view, const std::string& sql,
                                                  const std::vector<std::string>& columns) {
        // An earlier view named this one: its stand-in makes way for the view.
        const bool had_stub = stubs_.erase(view) > 0;
        if (had_stub) exec("DROP TABLE main." + quote_identifier(view));
        std::vector<metadata::ObjectRef> out;
        if (create_view(sql)) {
            std::set<std::string> read;
            const std::string select = "SELECT * FROM main." + quote_identifier(view);
            if (prepare_with_stubs(select, read) && opened_tables(select, read)) {
                for (const auto& name : read) {
                    if (name != view && stubs_.contains(name)) out.push_back({"main", name});
                }
            }
            exec("DROP VIEW main." + quote_identifier(view));
        }
        if (had_stub) add_stub(view, columns);
        return out;
    }

  private:
    LineageCatalog(Handle db, Statement relation, Statement columns)
        : db_(std::move(db)), relation_(std::move(relation)), columns_(std::move(columns)) {}

    bool exec(const std::string& sql) {
        return sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
    }

    // Prepares select (never steps it) with the authorizer recording reads,
    // adding a stand-in for each relation SQLite reports missing. Each round
    // adds one stand-in, so the loop ends.
    bool prepare_with_stubs(const std::string& select, std::set<std::string>& read) {
        sqlite3* db = db_.get();
        for (;;) {
            read.clear();
            sqlite3_set_authorizer(db, record_reads, &read);
            sqlite3_stmt* raw = nullptr;
            const int rc = sqlite3_prepare_v2(db, select.c_str(), -1, &raw, nullptr);
            StatementHandle prepared(raw);
            sqlite3_set_authorizer(db, nullptr, nullptr);
            if (rc == SQLITE_OK) return true;
            // Inside a view SQLite names a missing table qualified by the
            // view's schema: "no such table: main.<name as written>".
            constexpr std::string_view kMissing = "no such table: main.";
            const std::string_view message = sqlite3_errmsg(db);
            if (!message.starts_with(kMissing)) return false;
            if (!add_stub_from_source(std::string(message.substr(kMissing.size())))) return false;
        }
    }

    // A stand-in for the source's relation of that name (ignoring ASCII
    // case, as SQLite does). False when there is none or it exists already.
    bool add_stub_from_source(const std::string& written) {
        relation_.reset();
        relation_.bind(1, written);
        auto found = relation_.step();
        if (!found || *found != Statement::Step::row) return false;
        const std::string name = relation_.text(0);
        if (stubs_.contains(name)) return false;
        std::vector<std::string> names;
        columns_.reset();
        columns_.bind(1, name);
        for (;;) {
            auto col = columns_.step();
            // A relation SQLite cannot describe (a view over a dropped table,
            // a virtual table whose module is missing) keeps no columns.
            if (!col || *col == Statement::Step::done) break;
            names.push_back(columns_.text(1));
        }
        return add_stub(name, names);
    }

    // The relation as a table with the same column names, hidden ones
    // included (one placeholder column when SQLite could not name them).
    bool add_stub(const std::string& name, const std::vector<std::string>& columns) {
        std::string sql = "CREATE TABLE main." + quote_identifier(name) + "(";
        if (columns.empty()) sql += quote_identifier("sa lineage: columns unknown");
        for (size_t i = 0; i < columns.size(); ++i) {
            if (i > 0) sql += ", ";
            sql += quote_identifier(columns[i]);
        }
        sql += ")";
        if (!exec(sql)) return false;
        stubs_.insert(name);
        return true;
    }

    // Runs the view's own CREATE VIEW statement: exactly one statement, which
    // may do nothing but create a view in the private catalog.
    bool create_view(const std::string& sql) {
        sqlite3* db = db_.get();
        sqlite3_set_authorizer(db, allow_create_view, nullptr);
        sqlite3_stmt* raw = nullptr;
        const char* tail = nullptr;
        int rc = sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &raw, &tail);
        StatementHandle create(raw);
        bool ok = rc == SQLITE_OK && create != nullptr;
        if (ok && tail != nullptr && *tail != '\0') {
            // Only whitespace and comments may follow.
            sqlite3_set_authorizer(db, deny_all, nullptr);
            sqlite3_stmt* extra_raw = nullptr;
            rc = sqlite3_prepare_v2(db, tail, -1, &extra_raw, nullptr);
            StatementHandle extra(extra_raw);
            ok = rc == SQLITE_OK && extra == nullptr;
            sqlite3_set_authorizer(db, allow_create_view, nullptr);
        }
        if (ok) ok = sqlite3_step(create.get()) == SQLITE_DONE;
        sqlite3_set_authorizer(db, nullptr, nullptr);
        return ok;
    }

    // Adds the tables the statement's program opens a cursor on.
    bool opened_tables(const std::string& select, std::set<std::string>& read) {
        sqlite3* db = db_.get();
        const std::string explain = "EXPLAIN " + select;
        sqlite3_stmt* raw = nullptr;
        if (sqlite3_prepare_v2(db, explain.c_str(), -1, &raw, nullptr) != SQLITE_OK) return false;
        StatementHandle program(raw);
        std::set<int64_t> roots;
        int rc = SQLITE_ROW;
        while ((rc = sqlite3_step(program.get())) == SQLITE_ROW) {
            // Columns: addr, opcode, p1, p2, p3, ...
            const auto* opcode = sqlite3_column_text(program.get(), 1);
            if (opcode != nullptr &&
                std::string_view(reinterpret_cast<const char*>(opcode)) == "OpenRead" &&
                sqlite3_column_int64(program.get(), 4) == 0) {         // p3: database 0, main
                roots.insert(sqlite3_column_int64(program.get(), 3));  // p2: root page
            }
        }
        if (rc != SQLITE_DONE) return false;
        constexpr const char* kByRoot =
            "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND rootpage = ?1";
        if (sqlite3_prepare_v2(db, kByRoot, -1, &raw, nullptr) != SQLITE_OK) return false;
        StatementHandle by_root(raw);
        for (int64_t root : roots) {
            sqlite3_reset(by_root.get());
            sqlite3_bind_int64(by_root.get(), 1, root);
            if (sqlite3_step(by_root.get()) == SQLITE_ROW) {
                const auto* name = sqlite3_column_text(by_root.get(), 0);
                if (name != nullptr) read.insert(reinterpret_cast<const char*>(name));
            }
        }
        return true;
    }

    Handle db_;
    Statement relation_;  // on the source
    Statement columns_;   // on the source
    std::set<std::string> stubs_;
};

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
        Statement index_keys;
        Statement index_sql;
        Statement foreign_keys;
        Statement parent;
        std::optional<Statement> stats;  // only when ANALYZE has run; a cursor
        bool stats_row = false;          // stats is on a row
    };

    Result<Statements> prepare_all();
    // Fills columns, constraints and indexes of table. A failing pragma is
    // returned as is so that the caller can decide whether the object is skipped.
    Status describe(Statements& s, metadata::Table& table, bool virtual_table);
    Status read_columns(Statement& st, metadata::Table& table);
    Status read_indexes(Statements& s, metadata::Table& table);
    Status read_foreign_keys(Statements& s, metadata::Table& table);
    Status read_estimated_rows(Statements& s, metadata::Table& table);
    Error with_path(const Error& e) const {
        return Error{e.code, "SQLite source " + path_ + ": " + e.message};
    }

    std::string path_;
    Database db_;
};

Result<SqliteConnector::Statements> SqliteConnector::prepare_all() {
    auto prepare = [&](std::string_view sql) -> Result<Statement> {
        auto st = db_.prepare(sql);
        if (!st) return std::unexpected(with_path(st.error()));
        return st;
    };
    auto schema = prepare(kSchemaSql);
    if (!schema) return std::unexpected(schema.error());
    auto columns = prepare(kColumnsSql);
    if (!columns) return std::unexpected(columns.error());
    auto indexes = prepare(kIndexesSql);
    if (!indexes) return std::unexpected(indexes.error());
    auto index_keys = prepare(kIndexKeysSql);
    if (!index_keys) return std::unexpected(index_keys.error());
    auto index_sql = prepare(kIndexSqlSql);
    if (!index_sql) return std::unexpected(index_sql.error());
    auto foreign_keys = prepare(kForeignKeysSql);
    if (!foreign_keys) return std::unexpected(foreign_keys.error());
    auto parent = prepare(kParentSql);
    if (!parent) return std::unexpected(parent.error());

    std::optional<Statement> stats;
    auto has_stats = prepare(kHasStatsSql);
    if (!has_stats) return std::unexpected(has_stats.error());
    auto step = has_stats->step();
    if (!step) return std::unexpected(with_path(step.error()));
    if (*step == Statement::Step::row && has_stats->integer(0) > 0) {
        // Statistics are a bonus: a stat table SQLite cannot read (not the
        // shape ANALYZE makes) leaves the estimates out, not the extraction.
        if (auto st = db_.prepare(kStatsSql); st) stats = std::move(*st);
    }
    return Statements{std::move(*schema),     std::move(*columns),   std::move(*indexes),
                      std::move(*index_keys), std::move(*index_sql), std::move(*foreign_keys),
                      std::move(*parent),     std::move(stats),      false};
}

Status SqliteConnector::read_columns(Statement& st, metadata::Table& table) {
    const bool view = table.kind == metadata::kind::kView;
    st.reset();
    st.bind(1, table.name);
    for (;;) {
        auto step = st.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        const int64_t hidden = st.integer(6);
        if (hidden == kHiddenVirtualTableColumn) continue;
        metadata::Column c;
        c.ordinal = st.integer(0) + 1;
        c.name = st.text(1);
        c.data_type = st.text(2);
        c.normalized_type = normalized_type(c.data_type, view);
        // A view column's NOT NULL flag is always 0 in SQLite: it says nothing.
        c.nullable = view || st.integer(3) == 0;
        c.default_value = st.optional_text(4);
        c.primary_key_position = st.integer(5);
        if (hidden == kGeneratedVirtual) c.generated = "virtual";
        if (hidden == kGeneratedStored) c.generated = "stored";
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
        x.method = "btree";  // SQLite has no other kind of index
        const bool partial = s.indexes.integer(3) != 0;

        std::vector<IndexKeyRow> rows;
        s.index_keys.reset();
        s.index_keys.bind(1, x.name);
        for (;;) {
            auto key = s.index_keys.step();
            if (!key) return std::unexpected(key.error());
            if (*key == Statement::Step::done) break;
            rows.push_back({s.index_keys.optional_text(0), s.index_keys.integer(1),
                            s.index_keys.integer(2) != 0});
        }

        // Only statements written by a user (origin "c") can hold expressions
        // or a WHERE clause; the others have no text in sqlite_schema.
        std::optional<std::string> sql;
        const bool needs_text =
            partial || std::any_of(rows.begin(), rows.end(),
                                   [](const IndexKeyRow& r) { return r.cid == kExpressionKey; });
        if (needs_text) {
            s.index_sql.reset();
            s.index_sql.bind(1, x.name);
            auto row = s.index_sql.step();
            if (!row) return std::unexpected(row.error());
            if (*row == Statement::Step::row) sql = s.index_sql.optional_text(0);
        }
        std::optional<ParsedIndex> parsed;
        if (sql) parsed = parse_create_index(*sql);
        const bool asc_column =
            std::any_of(table.columns.begin(), table.columns.end(),
                        [](const metadata::Column& c) { return iequals(c.name, "asc"); });
        resolve_keys(sql.value_or(""), parsed, rows, asc_column, x);
        if (partial) {
            x.predicate = parsed && parsed->predicate ? *parsed->predicate : std::string();
        }
        table.indexes.push_back(std::move(x));
    }
}

Status SqliteConnector::read_foreign_keys(Statements& s, metadata::Table& table) {
    s.foreign_keys.reset();
    s.foreign_keys.bind(1, table.name);
    std::optional<int64_t> current_id;
    for (;;) {
        auto step = s.foreign_keys.step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) return {};
        const int64_t id = s.foreign_keys.integer(0);
        if (current_id != id) {
            current_id = id;
            std::string parent = s.foreign_keys.text(1);
            // The parent as it is named in the catalog; a key may name a table
            // that does not exist (SQLite allows it): then as written.
            s.parent.reset();
            s.parent.bind(1, parent);
            auto found = s.parent.step();
            if (!found) return std::unexpected(found.error());
            if (*found == Statement::Step::row) parent = s.parent.text(0);
            metadata::Constraint fk;
            fk.type = "foreign_key";
            fk.references = metadata::ObjectRef{"main", std::move(parent)};
            fk.on_update = s.foreign_keys.text(4);
            fk.on_delete = s.foreign_keys.text(5);
            table.constraints.push_back(std::move(fk));
        }
        auto& fk = table.constraints.back();
        fk.columns.push_back(s.foreign_keys.text(2));
        // NULL "to": the key references the parent's primary key.
        fk.referenced_columns.push_back(s.foreign_keys.text(3));
    }
}

Status SqliteConnector::read_estimated_rows(Statements& s, metadata::Table& table) {
    if (!s.stats) return {};
    // Tables come in name order; so do the statistics: skip those of tables
    // passed over (filtered out, or not tables).
    while (!s.stats_row || s.stats->text(0) < table.name) {
        auto step = s.stats->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Statement::Step::done) {
            s.stats.reset();  // no statistics for the rest
            return {};
        }
        s.stats_row = true;
    }
    if (s.stats->text(0) == table.name && !s.stats->is_null(1)) {
        table.estimated_rows = s.stats->integer(1);
    }
    return {};
}

Status SqliteConnector::describe(Statements& s, metadata::Table& table, bool virtual_table) {
    if (auto st = read_columns(s.columns, table); !st) return st;
    if (table.kind == metadata::kind::kView) return {};
    if (auto st = read_indexes(s, table); !st) return st;

    // Primary key first, then unique constraints, then foreign keys in
    // declaration order.
    std::vector<std::pair<int64_t, std::string>> pk;
    for (const auto& c : table.columns) {
        if (c.primary_key_position > 0) pk.emplace_back(c.primary_key_position, c.name);
    }
    if (!pk.empty()) {
        std::sort(pk.begin(), pk.end());
        metadata::Constraint c;
        c.type = "primary_key";
        for (auto& part : pk) c.columns.push_back(std::move(part.second));
        table.constraints.push_back(std::move(c));
    }
    for (const auto& x : table.indexes) {
        if (x.origin != "unique_constraint") continue;
        metadata::Constraint c;
        c.type = "unique";
        for (const auto& key : x.keys) c.columns.push_back(key.column);
        table.constraints.push_back(std::move(c));
    }
    if (auto st = read_foreign_keys(s, table); !st) return st;
    if (auto st = read_estimated_rows(s, table); !st) return st;

    // The rowid alias: an INTEGER PRIMARY KEY of a rowid table. table_xinfo
    // reports notnull = 0 for it, yet it can never hold NULL, and SQLite
    // assigns it when an insert leaves it out. It is the alias exactly when
    // the primary key is a single column and no index backs it (WITHOUT
    // ROWID tables, other primary keys and the "INTEGER PRIMARY KEY DESC"
    // quirk all get one).
    if (virtual_table || pk.size() != 1) return {};
    for (const auto& x : table.indexes) {
        if (x.origin == "primary_key") return {};
    }
    for (auto& c : table.columns) {
        if (c.primary_key_position == 1) {
            c.nullable = false;
            c.identity = "by_default";
        }
    }
    return {};
}

Result<ExtractSummary> SqliteConnector::extract(MetadataSink& sink) {
    auto statements = prepare_all();
    if (!statements) return std::unexpected(statements.error());
    Statements& s = *statements;
    s.schema.reset();
    std::optional<LineageCatalog> lineage;  // built at the first view

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
        if (!sink.wants(table.schema, table.name)) continue;
        const std::optional<std::string> sql = s.schema.optional_text(2);
        const bool view = table.kind == metadata::kind::kView;
        const bool virtual_table = !view && sql && is_virtual_table(*sql);
        if (view) table.definition = sql;

        if (auto st = describe(s, table, virtual_table); !st) {
            if (view) {
                // A view over a dropped table or column cannot be expanded; its
                // definition is still worth cataloguing.
                table.columns.clear();
            } else if (virtual_table) {
                // The module (an extension this build lacks) cannot be loaded:
                // nothing can be said about its columns.
                continue;
            } else {
                return std::unexpected(with_path(st.error()));
            }
        }
        if (view && sql) {
            if (!lineage) {
                auto built = LineageCatalog::open(db_);
                if (!built) return std::unexpected(with_path(built.error()));
                lineage.emplace(std::move(*built));
            }
            std::vector<std::string> names;
            for (const auto& c : table.columns) names.push_back(c.name);
            table.depends_on = lineage->dependencies(table.name, *sql, names);
        }

        if (auto st = sink.write(table); !st) return std::unexpected(st.error());
        add_to_summary(summary, table);
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
