#pragma once
// The hub's SQLite database (DIR/hub.db): one connection per Store, shared by
// the threads of one process under a mutex. Several processes (the server and
// the offline CLI commands) may open the same file at once: the database runs
// in WAL mode with a busy timeout, and every write is a BEGIN IMMEDIATE
// transaction.
//
// Thread safety: all access goes through with(), which serialises callers.
#include <concepts>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "common/sqlite/database.h"

namespace sa::hub::store {

inline constexpr int kSchemaVersion = 5;

class Store final {
  public:
    enum class Create { if_missing, never };

    // Opens the database at path (creating it with mode 0600 and the schema
    // when create allows), enables WAL, foreign keys and a busy timeout, and
    // migrates the schema. Errors: not_found when the file is missing and
    // create is never; io otherwise.
    static Result<std::unique_ptr<Store>> open(const std::string& path,
                                               Create create = Create::if_missing);

    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Runs f(sqlite::Database&) while holding this connection exclusively.
    template <class F>
    decltype(auto) with(F&& f) {
        std::lock_guard<std::mutex> lock(mu_);
        return std::forward<F>(f)(db_);
    }

    const std::string& path() const { return path_; }

  private:
    Store(std::string path, sqlite::Database db) : path_(std::move(path)), db_(std::move(db)) {}
    std::string path_;
    std::mutex mu_;
    sqlite::Database db_;
};

// ---- Small helpers for binding parameters; SQL text is never built from data.

struct Blob {
    std::string_view bytes;
};

inline void bind_one(sqlite::Statement& s, int i, std::string_view v) {
    s.bind(i, v);
}
inline void bind_one(sqlite::Statement& s, int i, const std::string& v) {
    s.bind(i, std::string_view(v));
}
inline void bind_one(sqlite::Statement& s, int i, const char* v) {
    s.bind(i, std::string_view(v));
}
inline void bind_one(sqlite::Statement& s, int i, Blob v) {
    s.bind_blob(i, v.bytes);
}
inline void bind_one(sqlite::Statement& s, int i, std::nullopt_t) {
    s.bind_null(i);
}
template <std::integral T>
void bind_one(sqlite::Statement& s, int i, T v) {
    s.bind(i, static_cast<int64_t>(v));
}
template <class T>
void bind_one(sqlite::Statement& s, int i, const std::optional<T>& v) {
    if (v) {
        bind_one(s, i, *v);
    } else {
        s.bind_null(i);
    }
}

// Prepares sql and binds args to parameters 1..N.
template <class... A>
Result<sqlite::Statement> prepare(sqlite::Database& db, std::string_view sql, const A&... args) {
    auto st = db.prepare(sql);
    if (!st) return st;
    int i = 0;
    (bind_one(*st, ++i, args), ...);
    return st;
}

// Prepares, binds and runs a statement that returns no rows.
template <class... A>
Status execute(sqlite::Database& db, std::string_view sql, const A&... args) {
    auto st = prepare(db, sql, args...);
    if (!st) return std::unexpected(st.error());
    return st->run();
}

inline std::optional<int64_t> optional_integer(const sqlite::Statement& s, int i) {
    if (s.is_null(i)) return std::nullopt;
    return s.integer(i);
}

}  // namespace sa::hub::store
