#include "hub/identity/app_registry.h"

#include "common/crypto/random.h"
#include "hub/wire/names.h"

namespace sa::hub::identity {

AppRegistry::AppRegistry(store::Store& store, const clock::Clock& clock,
                         crypto::ScryptParams params)
    : store_(store), clock_(clock), params_(params) {}

Result<NewApp> AppRegistry::create(const std::string& name) {
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
        if (*step == sqlite::Statement::Step::row) {
            return fail(ErrorCode::conflict, "app '" + name + "' already exists");
        }
        if (auto s = store::execute(db,
                                    "INSERT INTO apps(name, client_id, secret_hash, created_at_ms) "
                                    "VALUES (?, ?, ?, ?)",
                                    name, out.app.client_id, hash, out.app.created_at_ms);
            !s) {
            return s;
        }
        return tx->commit();
    });
    if (!st) return std::unexpected(st.error());
    return out;
}

namespace {

App read_app(const sqlite::Statement& s) {
    return App{s.text(0), s.text(1), s.integer(2)};
}

}  // namespace

Result<App> AppRegistry::find(const std::string& name) {
    return store_.with([&](sqlite::Database& db) -> Result<App> {
        auto st = store::prepare(
            db, "SELECT name, client_id, created_at_ms FROM apps WHERE name = ?", name);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step != sqlite::Statement::Step::row) {
            return fail(ErrorCode::not_found, "no app named '" + name + "'");
        }
        return read_app(*st);
    });
}

Result<std::vector<App>> AppRegistry::list() {
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<App>> {
        auto st = db.prepare("SELECT name, client_id, created_at_ms FROM apps ORDER BY name");
        if (!st) return std::unexpected(st.error());
        std::vector<App> out;
        for (;;) {
            auto step = st->step();
            if (!step) return std::unexpected(step.error());
            if (*step == sqlite::Statement::Step::done) break;
            out.push_back(read_app(*st));
        }
        return out;
    });
}

Result<App> AppRegistry::authenticate(std::string_view client_id, std::string_view client_secret) {
    struct Row {
        App app;
        std::string hash;
    };
    auto row = store_.with([&](sqlite::Database& db) -> Result<std::optional<Row>> {
        auto st = store::prepare(
            db, "SELECT name, client_id, created_at_ms, secret_hash FROM apps WHERE client_id = ?",
            client_id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step != sqlite::Statement::Step::row) return std::nullopt;
        return Row{read_app(*st), st->text(3)};
    });
    if (!row) return std::unexpected(row.error());
    // Same cost as real hashes, so a miss takes as long as a wrong secret.
    std::call_once(dummy_once_,
                   [&] { dummy_hash_ = crypto::hash_password(crypto::random_token(32), params_); });
    // The slow hash runs outside the store lock so other requests proceed.
    bool ok = crypto::verify_password(client_secret, *row ? (*row)->hash : dummy_hash_);
    if (!ok || !*row) return fail(ErrorCode::unauthenticated, "unknown client or wrong secret");
    return (*row)->app;
}

Result<bool> AppRegistry::is_active(const std::string& app, const std::string& client_id) {
    return store_.with([&](sqlite::Database& db) -> Result<bool> {
        auto st = store::prepare(db, "SELECT 1 FROM apps WHERE name = ? AND client_id = ?", app,
                                 client_id);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        return *step == sqlite::Statement::Step::row;
    });
}

}  // namespace sa::hub::identity
