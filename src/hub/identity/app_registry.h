#pragma once
// The app registry: one OAuth client per app. A client secret is generated
// here, returned once to the operator, and stored only as an scrypt hash.
//
// Thread safety: safe to share between threads (the Store serialises access).
#include <mutex>
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
};

// What `app create` shows the operator once. client_secret is secret: it must
// never be logged or stored.
struct NewApp {
    App app;
    std::string client_secret;
};

class AppRegistry final {
  public:
    // params sets the scrypt cost of new secrets (tests lower it; production
    // keeps the default from password_hash.h).
    AppRegistry(store::Store& store, const clock::Clock& clock,
                crypto::ScryptParams params = crypto::ScryptParams{});

    // Errors: invalid_argument for a bad name ([A-Za-z0-9_.-]{1,64}),
    // conflict when the app exists, io for storage problems.
    Result<NewApp> create(const std::string& name);
    // Errors: not_found, io.
    Result<App> find(const std::string& name);
    Result<std::vector<App>> list();

    // Checks a client id and secret. An unknown client costs about as much as
    // a wrong secret (a dummy hash is checked), and both give the same
    // unauthenticated error, so callers cannot probe for client ids.
    Result<App> authenticate(std::string_view client_id, std::string_view client_secret);

    // True when an app with this name and client id exists (tokens of a
    // deleted or re-created app stop working). Errors: io.
    Result<bool> is_active(const std::string& app, const std::string& client_id);

  private:
    store::Store& store_;
    const clock::Clock& clock_;
    crypto::ScryptParams params_;
    // Hashed on first use: commands that never authenticate skip the cost.
    std::once_flag dummy_once_;
    std::string dummy_hash_;
};

}  // namespace sa::hub::identity
