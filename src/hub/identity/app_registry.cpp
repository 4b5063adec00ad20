#include "hub/identity/app_registry.h"

#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/jose/jws.h"
#include "hub/wire/names.h"

namespace sa::hub::identity {
namespace {

using Step = sqlite::Statement::Step;

constexpr const char* kAppColumns =
    "name, client_id, created_at_ms, rotated_at_ms, rotated_by, previous_secret_expires_at_ms, "
    "revoked_at_ms, revoked_by, auth_method";
constexpr int kAppColumnCount = 9;

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
    a.auth_method = s.text(8);
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

std::string describe_key(const ClientPublicKey& key) {
    return key.description() + " key (" + key.algorithm() + "), thumbprint " + key.thumbprint();
}

Status insert_key(sqlite::Database& db, const std::string& app, const ClientPublicKey& key,
                  int64_t now_ms) {
    return store::execute(db,
                          "INSERT INTO app_keys(app, thumbprint, algorithm, public_key, "
                          "added_at_ms) VALUES (?, ?, ?, ?, ?)",
                          app, key.thumbprint(), key.algorithm(), key.pem(), now_ms);
}

struct StoredKey {
    AppKey key;
    std::string pem;
};

// The keys of app accepted at now_ms, the current one first.
Result<std::vector<StoredKey>> load_keys(sqlite::Database& db, const std::string& app,
                                         int64_t now_ms) {
    auto st = store::prepare(db,
                             "SELECT thumbprint, algorithm, added_at_ms, expires_at_ms, "
                             "public_key FROM app_keys WHERE app = ? AND "
                             "(expires_at_ms IS NULL OR expires_at_ms > ?) "
                             "ORDER BY expires_at_ms IS NOT NULL, added_at_ms DESC",
                             app, now_ms);
    if (!st) return std::unexpected(st.error());
    std::vector<StoredKey> out;
    for (;;) {
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Step::done) break;
        out.push_back(StoredKey{
            AppKey{st->text(0), st->text(1), st->integer(2), store::optional_integer(*st, 3)},
            st->text(4)});
    }
    return out;
}

}  // namespace

AppRegistry::AppRegistry(store::Store& store, const clock::Clock& clock,
                         crypto::ScryptParams params)
    : store_(store), clock_(clock), params_(params) {}

Status AppRegistry::insert_app(const App& app, const std::string& secret_hash,
                               const ClientPublicKey* key, const std::string& actor) {
    return store_.with([&](sqlite::Database& db) -> Status {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto existing = store::prepare(db, "SELECT 1 FROM apps WHERE name = ?", app.name);
        if (!existing) return std::unexpected(existing.error());
        auto step = existing->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Step::row) {
            return fail(ErrorCode::conflict, "app '" + app.name + "' already exists");
        }
        if (auto s = store::execute(db,
                                    "INSERT INTO apps(name, client_id, secret_hash, created_at_ms, "
                                    "auth_method) VALUES (?, ?, ?, ?, ?)",
                                    app.name, app.client_id, secret_hash, app.created_at_ms,
                                    app.auth_method);
            !s) {
            return s;
        }
        if (auto s = record_event(db, app.name, "created", app.created_at_ms, actor,
                                  key != nullptr ? "authenticates with private_key_jwt" : "");
            !s) {
            return s;
        }
        if (key != nullptr) {
            if (auto s = insert_key(db, app.name, *key, app.created_at_ms); !s) return s;
            if (auto s = record_event(db, app.name, "key-registered", app.created_at_ms, actor,
                                      describe_key(*key));
                !s) {
                return s;
            }
        }
        return tx->commit();
    });
}

Result<NewApp> AppRegistry::create(const std::string& name, const std::string& actor) {
    if (!wire::is_valid_name(name, wire::kMaxAppName)) {
        return fail(ErrorCode::invalid_argument,
                    "app name must match [A-Za-z0-9_.-]{1,64}, got '" + name + "'");
    }
    NewApp out{App{name, "cid_" + crypto::random_token(16), clock_.now_ms()},
               crypto::random_token(32)};
    std::string hash = crypto::hash_password(out.client_secret, params_);
    if (auto s = insert_app(out.app, hash, nullptr, actor); !s) return std::unexpected(s.error());
    return out;
}

Result<App> AppRegistry::create_with_key(const std::string& name, const ClientPublicKey& key,
                                         const std::string& actor) {
    if (!wire::is_valid_name(name, wire::kMaxAppName)) {
        return fail(ErrorCode::invalid_argument,
                    "app name must match [A-Za-z0-9_.-]{1,64}, got '" + name + "'");
    }
    App app{name, "cid_" + crypto::random_token(16), clock_.now_ms()};
    app.auth_method = kAuthPrivateKeyJwt;
    // No secret exists: '' is no scrypt hash, so nothing verifies against it.
    if (auto s = insert_app(app, "", &key, actor); !s) return std::unexpected(s.error());
    return app;
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
        if (app->uses_key()) {
            return fail(ErrorCode::conflict,
                        "app '" + name +
                            "' authenticates with private_key_jwt and has no client secret; "
                            "replace its key with `app set-key " +
                            name + " --public-key FILE`");
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
        if (auto s = store::execute(db, "DELETE FROM app_keys WHERE app = ?", name); !s) {
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
        // A key app has no secret: it is checked like an unknown client.
        if (r.app.uses_key()) return std::nullopt;
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

Result<KeyChange> AppRegistry::set_key(const std::string& name, const ClientPublicKey& key,
                                       std::chrono::seconds overlap, const std::string& actor) {
    if (overlap.count() < 0 || overlap > kMaxRotationOverlap) {
        return fail(ErrorCode::invalid_argument,
                    "overlap must be 0.." + std::to_string(kMaxRotationOverlap.count()) +
                        " seconds, got " + std::to_string(overlap.count()));
    }
    const int64_t now = clock_.now_ms();
    const int64_t until = now + overlap.count() * 1000;
    return store_.with([&](sqlite::Database& db) -> Result<KeyChange> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        auto app = load(db, name, now);
        if (!app) return std::unexpected(app.error());
        if (app->revoked()) {
            return fail(ErrorCode::conflict,
                        "app '" + name + "' is revoked; create a new app instead");
        }
        if (!app->uses_key()) {
            return fail(ErrorCode::conflict,
                        "app '" + name +
                            "' authenticates with a client secret; rotate it with `app rotate " +
                            name + "`, or create a new app with --public-key");
        }
        auto before = load_keys(db, name, now);
        if (!before) return std::unexpected(before.error());
        std::optional<AppKey> current;
        bool older_in_overlap = false;
        for (const auto& k : *before) {
            if (!k.key.valid_until_ms) {
                current = k.key;
            } else {
                older_in_overlap = true;
            }
        }
        if (current && current->thumbprint == key.thumbprint()) {
            return fail(ErrorCode::invalid_argument, "this key (thumbprint " + key.thumbprint() +
                                                         ") is already the current key of app '" +
                                                         name + "'");
        }
        // At most two keys: whatever was replaced before goes (even when it
        // is the new key coming back), the current one starts its overlap.
        if (auto s = store::execute(
                db, "DELETE FROM app_keys WHERE app = ? AND expires_at_ms IS NOT NULL", name);
            !s) {
            return std::unexpected(s.error());
        }
        auto retired = overlap.count() > 0
                           ? store::execute(db,
                                            "UPDATE app_keys SET expires_at_ms = ? WHERE app = ? "
                                            "AND expires_at_ms IS NULL",
                                            until, name)
                           : store::execute(db,
                                            "DELETE FROM app_keys WHERE app = ? AND "
                                            "expires_at_ms IS NULL",
                                            name);
        if (!retired) return std::unexpected(retired.error());
        if (auto s = insert_key(db, name, key, now); !s) return std::unexpected(s.error());
        if (auto s = store::execute(db,
                                    "UPDATE apps SET rotated_at_ms = ?, rotated_by = ? "
                                    "WHERE name = ?",
                                    now, actor.empty() ? std::string("unknown") : actor, name);
            !s) {
            return std::unexpected(s.error());
        }
        std::string detail = "new " + describe_key(key);
        if (current) {
            detail += "; replaces " + current->thumbprint + ", overlap " +
                      std::to_string(overlap.count()) + " s";
        }
        if (older_in_overlap) {
            detail += "; the key replaced by the previous rotation stopped working";
        }
        if (auto s = record_event(db, name, "key-rotated", now, actor, detail); !s) {
            return std::unexpected(s.error());
        }
        auto updated = load(db, name, now);
        if (!updated) return std::unexpected(updated.error());
        auto after = load_keys(db, name, now);
        if (!after) return std::unexpected(after.error());
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        KeyChange change{std::move(*updated), {}, std::nullopt, older_in_overlap};
        for (const auto& k : *after) {
            if (k.key.valid_until_ms) {
                change.previous = k.key;
            } else {
                change.key = k.key;
            }
        }
        return change;
    });
}

Result<std::vector<AppKey>> AppRegistry::keys(const std::string& name) {
    const int64_t now = clock_.now_ms();
    return store_.with([&](sqlite::Database& db) -> Result<std::vector<AppKey>> {
        auto app = load(db, name, now);
        if (!app) return std::unexpected(app.error());
        std::vector<AppKey> out;
        if (!app->uses_key() || app->revoked()) return out;
        auto stored = load_keys(db, name, now);
        if (!stored) return std::unexpected(stored.error());
        for (auto& k : *stored) out.push_back(std::move(k.key));
        return out;
    });
}

Result<App> AppRegistry::authenticate_assertion(std::string_view assertion,
                                                std::optional<std::string_view> client_id,
                                                const AssertionRules& rules) {
    using nlohmann::json;
    auto refuse = [](const std::string& why) -> Result<App> {
        return fail(ErrorCode::unauthenticated, "client assertion refused: " + why);
    };
    // Bound the work an unauthenticated caller can cause.
    if (assertion.empty() || assertion.size() > kMaxAssertionBytes) {
        return refuse("empty or longer than " + std::to_string(kMaxAssertionBytes) + " bytes");
    }
    auto jws = jose::decode_unverified(assertion);
    if (!jws) return refuse(jws.error().message);
    // decode_unverified checked the three-part shape.
    const size_t last_dot = assertion.rfind('.');
    const std::string_view signing_input = assertion.substr(0, last_dot);
    auto signature = crypto::base64url_decode(assertion.substr(last_dot + 1));
    if (!signature) return refuse("the signature is not base64url");

    const json& header = jws->header;
    const json& claims = jws->payload;
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string() ||
        (*alg != "EdDSA" && *alg != "ES256" && *alg != "RS256")) {
        return refuse("the algorithm must be EdDSA, ES256 or RS256");
    }
    // RFC 7515 section 4.1.11: an extension the hub does not understand.
    if (header.contains("crit")) return refuse("the header has crit extensions");
    std::optional<std::string> kid;
    if (auto k = header.find("kid"); k != header.end()) {
        if (!k->is_string()) return refuse("kid is not a string");
        kid = k->get<std::string>();
    }
    auto text_claim = [&](const char* name) -> std::string {
        auto it = claims.find(name);
        return it != claims.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string iss = text_claim("iss");
    if (iss.empty() || iss.size() > 256) return refuse("iss is missing");
    if (text_claim("sub") != iss) return refuse("sub is not iss");
    if (client_id && *client_id != iss) return refuse("the client_id parameter is not iss");

    const int64_t now_ms = clock_.now_ms();
    const int64_t now = now_ms / 1000;
    if (auto checked = jose::check_claims(*jws,
                                          jose::ClaimRules{
                                              .issuer = iss,
                                              .audience = "",
                                              .type = "",
                                              .now = now,
                                              .leeway_seconds = rules.leeway_seconds,
                                              .require_jti = true,
                                          });
        !checked) {
        return refuse(checked.error().message);
    }
    const int64_t exp = claims.at("exp").get<int64_t>();  // check_claims: an integer
    if (exp > now + rules.max_lifetime_seconds) {
        return refuse("exp is more than " + std::to_string(rules.max_lifetime_seconds) +
                      " s ahead");
    }
    const std::string jti = text_claim("jti");
    if (jti.size() > kMaxAssertionJti) return refuse("jti is too long");
    bool audience_ok = false;
    if (auto aud = claims.find("aud"); aud != claims.end() && rules.audience_ok) {
        if (aud->is_string()) {
            audience_ok = rules.audience_ok(aud->get_ref<const std::string&>());
        } else if (aud->is_array()) {
            for (const auto& a : *aud) {
                audience_ok = audience_ok ||
                              (a.is_string() && rules.audience_ok(a.get_ref<const std::string&>()));
            }
        }
    }
    if (!audience_ok) return refuse("aud does not name this hub");

    struct Found {
        App app;
        std::vector<StoredKey> keys;
    };
    auto found = store_.with([&](sqlite::Database& db) -> Result<std::optional<Found>> {
        auto st = store::prepare(db, select_app("WHERE client_id = ?"), iss);
        if (!st) return std::unexpected(st.error());
        auto step = st->step();
        if (!step) return std::unexpected(step.error());
        if (*step != Step::row) return std::nullopt;
        Found f{read_app(*st, now_ms), {}};
        if (!f.app.uses_key() || f.app.revoked()) return std::nullopt;
        auto keys = load_keys(db, f.app.name, now_ms);
        if (!keys) return std::unexpected(keys.error());
        f.keys = std::move(*keys);
        return f;
    });
    if (!found) return std::unexpected(found.error());
    if (!*found) return refuse("unknown client, revoked app or an app without a key");
    bool verified = false;
    for (const auto& k : (*found)->keys) {
        if (kid && *kid != k.key.thumbprint) continue;
        if (k.key.algorithm != alg->get_ref<const std::string&>()) continue;
        auto key = ClientPublicKey::from_pem(k.pem);
        if (!key) continue;  // stored by set_key/create_with_key: parses
        if (key->verify(k.key.algorithm, signing_input, *signature)) {
            verified = true;
            break;
        }
    }
    if (!verified) return refuse("the signature does not verify with a key of the app");

    // Single use: remembered until no clock could still accept it.
    const int64_t remember_until_ms = (exp + rules.leeway_seconds + 1) * 1000;
    auto fresh = store_.with([&](sqlite::Database& db) -> Result<bool> {
        auto tx = sqlite::Transaction::begin(db);
        if (!tx) return std::unexpected(tx.error());
        if (auto s = store::execute(db, "DELETE FROM client_assertion_jtis WHERE expires_at_ms < ?",
                                    now_ms);
            !s) {
            return std::unexpected(s.error());
        }
        auto seen = store::prepare(
            db, "SELECT 1 FROM client_assertion_jtis WHERE client_id = ? AND jti = ?", iss, jti);
        if (!seen) return std::unexpected(seen.error());
        auto step = seen->step();
        if (!step) return std::unexpected(step.error());
        if (*step == Step::row) return false;
        if (auto s = store::execute(db,
                                    "INSERT INTO client_assertion_jtis(client_id, jti, "
                                    "expires_at_ms) VALUES (?, ?, ?)",
                                    iss, jti, remember_until_ms);
            !s) {
            return std::unexpected(s.error());
        }
        if (auto s = tx->commit(); !s) return std::unexpected(s.error());
        return true;
    });
    if (!fresh) return std::unexpected(fresh.error());
    if (!*fresh) return refuse("jti " + jti + " was already used (replay)");
    return std::move((*found)->app);
}

}  // namespace sa::hub::identity
