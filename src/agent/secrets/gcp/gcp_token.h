#pragma once
// What the two GCP token sources (metadata server, service-account key)
// share: the OAuth token answer {"access_token","expires_in","token_type"},
// and a cache that refreshes the token 5 minutes before it expires.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "agent/auth/clock.h"
#include "agent/auth/token_client.h"
#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::secrets::gcp {

struct AccessToken {
    SecretValue value;
    int64_t expires_in = 0;  // seconds, > 0
};

// Parses a token answer and wipes body. Errors: invalid_argument
// "WHERE: token answer ..." (not JSON, no access_token, token_type other
// than Bearer, no positive integer expires_in); never quotes the body.
Result<AccessToken> parse_token_answer(std::string& body, std::string_view where);

// The token cache both sources share. A token is refreshed refresh_margin
// (300 s, or half the lifetime for tokens shorter than 10 minutes) before it
// expires; when that early refresh fails, the cached token is used until it
// really expires. invalidate() (after a 401 from Secret Manager) drops it.
// Thread-safe: one mutex around the cache, so at most one token request
// runs at a time (the source's transport is one-thread-at-a-time).
class RefreshingTokenSource : public auth::TokenSource {
  public:
    static constexpr int64_t kRefreshMarginSeconds = 300;

    explicit RefreshingTokenSource(const auth::Clock& clock) : clock_(clock) {}

    // A copy of the cached (or freshly fetched) token.
    Result<SecretValue> access_token() final;
    void invalidate() final;

    // When the cached token will be refreshed (Unix seconds); 0 without one.
    int64_t refresh_at() const;

  protected:
    // One token request (no retry).
    virtual Result<AccessToken> fetch() = 0;
    const auth::Clock& clock() const { return clock_; }

  private:
    void drop();

    const auth::Clock& clock_;
    mutable std::mutex mutex_;
    std::optional<SecretValue> token_;
    int64_t refresh_at_ = 0;
    int64_t expires_at_ = 0;
};

// The process-wide system clock, for callers without a test clock.
const auth::Clock& system_clock();

}  // namespace sa::agent::secrets::gcp
