#pragma once
// Thin RAII wrapper over the SQLite C API, shared by the hub's store and the
// agent's SQLite connector. Values are always bound as parameters; SQL text
// is never built from data.
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sa::sqlite {

class Statement;

class Database final {
  public:
    enum class Mode { read_only, read_write_create };

    static Result<Database> open(const std::string& path, Mode mode);

    Database(Database&&) = default;
    Database& operator=(Database&&) = default;

    // Runs one or more statements without results (schema, pragmas).
    Status exec(std::string_view sql);
    Result<Statement> prepare(std::string_view sql);
    int64_t last_insert_rowid() const;
    int changes() const;
    sqlite3* native() const { return db_.get(); }

  private:
    struct Close {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };
    explicit Database(sqlite3* db) : db_(db) {}
    std::unique_ptr<sqlite3, Close> db_;
};

class Statement final {
  public:
    enum class Step { row, done };

    Statement(Statement&&) = default;
    Statement& operator=(Statement&&) = default;

    // Parameters are 1-based, as in SQLite.
    Statement& bind(int index, std::string_view text);
    Statement& bind(int index, int64_t value);
    Statement& bind_blob(int index, std::string_view bytes);
    Statement& bind_null(int index);

    Result<Step> step();
    // Steps until done; for INSERT/UPDATE/DELETE.
    Status run();
    void reset();

    int column_count() const;
    std::string column_name(int index) const;
    bool is_null(int index) const;
    std::string text(int index) const;  // "" for NULL
    std::optional<std::string> optional_text(int index) const;
    int64_t integer(int index) const;
    std::string blob(int index) const;

  private:
    friend class Database;
    struct Finalize {
        void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
    };
    Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
    sqlite3* db_;
    std::unique_ptr<sqlite3_stmt, Finalize> stmt_;
};

// BEGIN IMMEDIATE on construction, ROLLBACK on destruction unless committed.
class Transaction final {
  public:
    static Result<Transaction> begin(Database& db);
    Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();
    Status commit();

  private:
    explicit Transaction(Database* db) : db_(db) {}
    Database* db_;
};

}  // namespace sa::sqlite
