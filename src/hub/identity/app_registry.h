#pragma once
// The app registry: one OAuth client per app. A client secret is generated
// here, returned once to the operator, and stored only as an scrypt hash.
//
// Rotation (issue #5): rotate() issues a new secret and keeps the one it
// replaces valid for an overlap window, so agents can pick up the new secret
// without downtime. At most two secrets are valid: a rotation during an
// overlap drops the oldest one at once. Access tokens already issued stay
// valid until they expire.
//
// Revocation is permanent: a revoked app never gets a token again, and
// is_active() (checked by every API call) turns false at once, so its live
// access tokens stop working. The row stays (jobs and the catalog refer to
// it, and the name is not reused); reconnecting the agent takes a new app.
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto/password_hash.h"
#include "common/result.h"
#include "hub/clock/clock.h"
#include "hub/store/store.h"

namespace sa::hub::identity {

struct App {
    std::string name;
    std::string client_id;
    int64_t created_at_ms = 0;
    std::optional<int64_t> rotated_at_ms;  // the last rotation
    std::optional<std::string> rotated_by;
    // Until when the secret replaced by the last rotation is still accepted;
    // set only when that time is still ahead (as of the registry's clock).
    std::optional<int64_t> previous_secret_valid_until_ms;
    std::optional<int64_t> revoked_at_ms;
    std::optional<std::string> revoked_by;

    bool revoked() const { return revoked_at_ms.has_value(); }
};

// What `app create` / `app rotate` show the operator once. client_secret is
// secret: it must never be logged or stored.
struct NewApp {
    App app;
    std::string client_secret;
};

// One line of an app's history (never a secret).
struct AppEvent {
    std::string event;  // created | rotated | revoked
    int64_t at_ms = 0;
    std::string actor;
    std::string detail;
};

// Longest overlap rotate() accepts: long enough for any change window, short
// enough that a forgotten old secret does not live on for months.
inline constexpr std::chrono::seconds kMaxRotationOverlap{30 * 24 * 3600};
inline constexpr std::chrono::seconds kDefaultRotationOverlap{3600};

class AppRegistry final {
  public:
    // params sets the scrypt cost of new secrets (tests lower it; production
    // keeps the default from password_hash.h).
    AppRegistry(store::Store& store, const clock::Clock& clock,
                crypto::ScryptParams params = crypto::ScryptParams{});

    // actor: who asked (the operator's OS user), recorded in the history.
    // Errors: invalid_argument for a bad name ([A-Za-z0-9_.-]{1,64}),
    // conflict when the app exists, io for storage problems.
    Result<NewApp> create(const std::string& name, const std::string& actor = "unknown");
    // Errors: not_found, io.
    Result<App> find(const std::string& name);
    Result<std::vector<App>> list();
    // The app's history, oldest first. Errors: not_found, io.
    Result<std::vector<AppEvent>> events(const std::string& name);

    // Issues a new client secret. The current one stays valid for overlap
    // (0: it stops at once); a secret replaced earlier stops at once.
    // Errors: invalid_argument (overlap outside 0..kMaxRotationOverlap),
    // not_found, conflict (revoked), io.
    Result<NewApp> rotate(const std::string& name, std::chrono::seconds overlap,
                          const std::string& actor);

    // Revokes the app for good. Errors: not_found, conflict (already
    // revoked), io.
    Result<App> revoke(const std::string& name, const std::string& actor);

    // Checks a client id and secret against the current secret and, during an
    // overlap, the previous one. Every call checks exactly two scrypt hashes
    // (dummies stand in for missing ones), so an unknown client, a revoked
    // app, a wrong secret and an app with or without an overlap all cost the
    // same, and all give the same unauthenticated error: callers cannot probe
    // for client ids or app state.
    Result<App> authenticate(std::string_view client_id, std::string_view client_secret);

    // True when an app with this name and client id exists and is not
    // revoked (tokens of a revoked, deleted or re-created app stop working).
    // One primary-key lookup: cheap enough for every request. Errors: io.
    Result<bool> is_active(const std::string& app, const std::string& client_id);

  private:
    const std::string& dummy_hash();

    store::Store& store_;
    const clock::Clock& clock_;
    crypto::ScryptParams params_;
    // Hashed on first use: commands that never authenticate skip the cost.
    std::once_flag dummy_once_;
    std::string dummy_hash_;
};

}  // namespace sa::hub::identity
