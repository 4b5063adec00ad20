#include "hub/identity/app_registry.h"

#include "common/crypto/random.h"
#include "hub/wire/names.h"

namespace sa::hub::identity {
namespace {

using Step = sqlite::Statement::Step;

constexpr const char* kAppColumns =
    "name, client_id, created_at_ms, rotated_at_ms, rotated_by, previous_secret_expires_at_ms, "
    "revoked_at_ms, revoked_by";
constexpr int kAppColumnCount = 8;

std::optional<std::string> optional_text(const sqlite::Statement& s, int i) {
    if (s.is_null(i)) return std::nullopt;
    return s.text(i);
}

// Reads the kAppColumns at the start of a row.
App read_app(const sqlite::Statement& s, int64_t now_ms) {
    App a{s.text(0), s.text(1), s.integer(2)};
    a.rotated_at_ms = store::optional_integer(s, 3);
    a.rotated_by = optional_text(s, 4);
    auto until = store::optional_integer(s, 5);
    if (until && *until > now_ms) a.previous_secret_valid_until_ms = until;
    a.revoked_at_ms = store::optional_integer(s, 6);
    a.revoked_by = optional_text(s, 7);
    return a;
}

std::string select_app(const char* where) {
    return std::string("SELECT ") + kAppColumns + " FROM apps " + where;
}

// The app named name inside a transaction or a with() call; not_found if none.
Result<App> load(sqlite::Database& db, const std::string& name, int64_t now_ms) {
    auto st = store::prepare(db, select_app("WHERE name = ?"), name);
    if (!st) return std::unexpected(st.error());
    auto step = st->step();
    if (!step) return std::unexpected(step.error());
    if (*step != Step::row) return fail(ErrorCode::not_found, "no app named '" + name + "'");
    return read_app(*st, now_ms);
}

Status record_event(sqlite::Database& db, const std::string& app, const char* event, int64_t at_ms,
                    const std::string& actor, const std::string& detail) {
    return store::execute(db,
                          "INSERT INTO app_events(app, event, at_ms, actor, detail) "
                          "VALUES (?, ?, ?, ?, ?)",
                          app, event, at_ms, actor.empty() ? std::string("unknown") : actor,
                          detail);
}

}  // namespace

AppRegistry::AppRegistry(store::Store& store, const clock::Clock& clock,
                         crypto::ScryptParams params)
    : store_(store), clock_(clock), params_(params) {}

Result<NewApp> AppRegistry::create(const std::string& name, const std::string& actor) {
    if (!wire::is_valid_name(name, wire::kMaxAppName)) {
        return fail(ErrorCode::invalid_argument,
                    "app name must match [A-Za-z0-9_.-]{1,64}, got '" + name + "'");
    }
    NewApp out{App{name, "cid_" + crypto::random_token(16), clock_.now_ms()},
               crypto::random_token(32)};
    std::string hash = crypto::hash_password(out.client_secret, params_);
    auto st = store_.with([&](sqlite::Database& db) -> Status {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto existing = store::prepare(db, "SELECT 1 FROM apps WHERE name = ?", name);
        if (!existing) return std::unexpected(existing.error());
        auto step = existing->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Step::row) {
            return fail(ErrorCode::conflict, "app '" + name + "' already exists");
        }
        if (auto s = store::execute(db,
                                    "INSERT INTO apps(name, client_id, secret_hash, created_at_ms) "
                                    "VALUES (?, ?, ?, ?)",
                                    name, out.app.client_id, hash, out.app.created_at_ms);
            !s) {
            return s;
        }
        if (auto s = record_event(db, name, "created", out.app.created_at_ms, actor, ""); !s) {
            return s;
        }
        return tx->commit();
    });
    if (!st) return std::unexpected(st.error());
    return out;
}

Result<App> AppRegistry::find(const std::string& name) {
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) { return load(db, name, now); });
}

Result<std::vector<App>> AppRegistry::list() {
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<App>> {
        auto st = db.prepare(select_app("ORDER BY name"));
        if (!st) return std::unexpected(st.error());
        std::vector<App> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == Step::done) break;
            out.push_back(read_app(*st, now));
        }
        return out;
    });
}

Result<std::vector<AppEvent>> AppRegistry::events(const std::string& name) {
    int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<AppEvent>> {
        if (auto app = load(db, name, now); !app) return std::unexpected(app.error());
        auto st = store::prepare(
            db, "SELECT event, at_ms, actor, detail FROM app_events WHERE app = ? ORDER BY n",
            name);
        if (!st) return std::unexpected(st.error());
        std::vector<AppEvent> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == Step::done) break;
            out.push_back(AppEvent{st->text(0), st->integer(1), st->text(2),
                                   optional_text(*st, 3).value_or("")});
        }
        return out;
    });
}

Result<NewApp> AppRegistry::rotate(const std::string& name, std::chrono::seconds overlap,
                                   const std::string& actor) {
    if (overlap.count() < 0 || overlap > kMaxRotationOverlap) {
        return fail(ErrorCode::invalid_argument,
                    "overlap must be 0.." + std::to_string(kMaxRotationOverlap.count()) +
                        " seconds, got " + std::to_string(overlap.count()));
    }
    std::string secret = crypto::random_token(32);
    // Hashed before the write lock is taken: scrypt is slow on purpose.
    std::string hash = crypto::hash_password(secret, params_);
    const int64_t now = clock_.now_ms();
    const int64_t until = now + overlap.count() * 1000;
    auto rotated = store_.with([&](sqlite::Database& db) -> Result<App> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto app = load(db, name, now);
        if (!app) return app;
        if (app->revoked()) {
            return fail(ErrorCode::conflict,
                        "app '" + name + "' is revoked; create a new app instead");
        }
        // The current secret becomes the previous one; whatever was previous
        // (the oldest, possibly still in its own overlap) is dropped.
        if (auto s = store::execute(
                db,
                "UPDATE apps SET previous_secret_hash = CASE WHEN ?1 > 0 THEN secret_hash END, "
                "previous_secret_expires_at_ms = CASE WHEN ?1 > 0 THEN ?2 END, "
                "secret_hash = ?3, rotated_at_ms = ?4, rotated_by = ?5 WHERE name = ?6",
                overlap.count(), until, hash, now, actor.empty() ? std::string("unknown") : actor,
                name);
            !s) {
            return std::unexpected(s.error());
        }
        std::string detail = "overlap " + std::to_string(overlap.count()) + " s";
        if (app->previous_secret_valid_until_ms) {
            detail += "; the secret replaced by the previous rotation stopped working";
        }
        if (auto s = record_event(db, name, "rotated", now, actor, detail); !s) {
            return std::unexpected(s.error());
        }
        auto updated = load(db, name, now);
        if (!updated) return updated;
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return updated;
    });
    if (!rotated) return std::unexpected(rotated.error());
    return NewApp{std::move(*rotated), std::move(secret)};
}

Result<App> AppRegistry::revoke(const std::string& name, const std::string& actor) {
    const int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> Result<App> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto app = load(db, name, now);
        if (!app) return app;
        if (app->revoked()) {
            return fail(ErrorCode::conflict, "app '" + name + "' is already revoked");
        }
        // The hashes go too: nothing can authenticate as this app again.
        if (auto s = store::execute(db,
                                    "UPDATE apps SET revoked_at_ms = ?, revoked_by = ?, "
                                    "previous_secret_hash = NULL, "
                                    "previous_secret_expires_at_ms = NULL WHERE name = ?",
                                    now, actor.empty() ? std::string("unknown") : actor, name);
            !s) {
            return std::unexpected(s.error());
        }
        if (auto s = record_event(db, name, "revoked", now, actor, ""); !s) {
            return std::unexpected(s.error());
        }
        auto updated = load(db, name, now);
        if (!updated) return updated;
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return updated;
    });
}

const std::string& AppRegistry::dummy_hash() {
    // Same cost as real hashes, so a miss takes as long as a wrong secret.
    std::call_once(dummy_once_,
                   [&] { dummy_hash_ = crypto::hash_password(crypto::random_token(32), params_); });
    return dummy_hash_;
}

Result<App> AppRegistry::authenticate(std::string_view client_id, std::string_view client_secret) {
    struct Row {
        App app;
        std::string hash;
        std::optional<std::string> previous_hash;
    };
    const int64_t now = clock_.now_ms();
    auto row = store_.with([&](sqlite::Database& db) -> Result<std::optional<Row>> {
        auto st = store::prepare(db,
                                 std::string("SELECT ") + kAppColumns +
                                     ", secret_hash, previous_secret_hash FROM apps "
                                     "WHERE client_id = ?",
                                 client_id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step != Step::row) return std::nullopt;
        Row r{read_app(*st, now), st->text(kAppColumnCount),
              optional_text(*st, kAppColumnCount + 1)};
        // Past its overlap the previous hash is as good as absent.
        if (!r.app.previous_secret_valid_until_ms) r.previous_hash.reset();
        return r;
    });
    if (!row) return std::unexpected(row.error());
    const std::string& dummy = dummy_hash();
    const bool found = row->has_value();
    const bool has_previous = found && (*row)->previous_hash.has_value();
    // Always two checks, both run (no short circuit): the cost says nothing
    // about whether the client exists, is revoked or is in an overlap. The
    // slow hashes run outside the store lock so other requests proceed.
    const bool current_ok = crypto::verify_password(client_secret, found ? (*row)->hash : dummy);
    const bool previous_ok =
        crypto::verify_password(client_secret, has_previous ? *(*row)->previous_hash : dummy);
    const bool ok =
        found && !(*row)->app.revoked() && (current_ok || (has_previous && previous_ok));
    if (!ok) return fail(ErrorCode::unauthenticated, "unknown client or wrong secret");
    return (*row)->app;
}

Result<bool> AppRegistry::is_active(const std::string& app, const std::string& client_id) {
    return store_.with([&](sqlite::Database& db) -> Result<bool> {
        auto st = store::prepare(db,
                                 "SELECT 1 FROM apps WHERE name = ? AND client_id = ? AND "
                                 "revoked_at_ms IS NULL",
                                 app, client_id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        return *step == Step::row;
    });
}

}  // namespace sa::hub::identity
