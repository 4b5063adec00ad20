#include "common/sqlite/database.h"

namespace sa::sqlite {

Result<Database> Database::open(const std::string& path, Mode mode) {
    sqlite3* db = nullptr;
    // No SQLITE_OPEN_URI: a path is a path, never a "file:" URI with options.
    int flags = SQLITE_OPEN_NOMUTEX;
    flags |= mode == Mode::read_only ? SQLITE_OPEN_READONLY
                                     : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close_v2(db);
        return fail(ErrorCode::io, "cannot open SQLite database " + path + ": " + msg);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 5000);
    Database out(db);
    if (mode == Mode::read_only) {
        // Belt and braces: even a writable file is queried read-only.
        if (auto st = out.exec("PRAGMA query_only = ON"); !st) return std::unexpected(st.error());
    }
    return out;
}

Status Database::exec(std::string_view sql) {
    char* err = nullptr;
    std::string text(sql);
    if (sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(db_.get());
        sqlite3_free(err);
        return fail(ErrorCode::io, "SQLite: " + msg);
    }
    return {};
}

Result<Statement> Database::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr) !=
        SQLITE_OK) {
        return fail(ErrorCode::io, std::string("SQLite prepare: ") + sqlite3_errmsg(db_.get()));
    }
    return Statement(db_.get(), stmt);
}

int64_t Database::last_insert_rowid() const {
    return sqlite3_last_insert_rowid(db_.get());
}
int Database::changes() const {
    return sqlite3_changes(db_.get());
}

Statement& Statement::bind(int index, std::string_view text) {
    sqlite3_bind_text(stmt_.get(), index, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
}
Statement& Statement::bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_.get(), index, value);
    return *this;
}
Statement& Statement::bind_blob(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_.get(), index, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    return *this;
}
Statement& Statement::bind_null(int index) {
    sqlite3_bind_null(stmt_.get(), index);
    return *this;
}

Result<Statement::Step> Statement::step() {
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return Step::row;
    if (rc == SQLITE_DONE) return Step::done;
    ErrorCode code = (rc & 0xFF) == SQLITE_CONSTRAINT ? ErrorCode::conflict : ErrorCode::io;
    return fail(code, std::string("SQLite: ") + sqlite3_errmsg(db_));
}

Status Statement::run() {
    for (;;) {
        auto s = step();
        if (!s) return std::unexpected(s.error());
        if (*s == Step::done) return {};
    }
}

void Statement::reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
}

int Statement::column_count() const {
    return sqlite3_column_count(stmt_.get());
}
std::string Statement::column_name(int index) const {
    const char* n = sqlite3_column_name(stmt_.get(), index);
    return n ? n : "";
}
bool Statement::is_null(int index) const {
    return sqlite3_column_type(stmt_.get(), index) == SQLITE_NULL;
}
std::string Statement::text(int index) const {
    const unsigned char* t = sqlite3_column_text(stmt_.get(), index);
    if (t == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(t),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), index)));
}
std::optional<std::string> Statement::optional_text(int index) const {
    if (is_null(index)) return std::nullopt;
    return text(index);
}
int64_t Statement::integer(int index) const {
    return sqlite3_column_int64(stmt_.get(), index);
}
std::string Statement::blob(int index) const {
    const void* b = sqlite3_column_blob(stmt_.get(), index);
    if (b == nullptr) return {};
    return std::string(static_cast<const char*>(b),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), index)));
}

Result<Transaction> Transaction::begin(Database& db) {
    if (auto st = db.exec("BEGIN IMMEDIATE"); !st) return std::unexpected(st.error());
    return Transaction(&db);
}

Transaction::~Transaction() {
    if (db_ != nullptr) (void)db_->exec("ROLLBACK");
}

Status Transaction::commit() {
    if (db_ == nullptr) return fail(ErrorCode::conflict, "transaction already finished");
    auto st = db_->exec("COMMIT");
    if (st) db_ = nullptr;
    return st;
}

}  // namespace sa::sqlite
