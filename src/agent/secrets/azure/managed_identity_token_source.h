#pragma once
// ManagedIdentityTokenSource: access tokens of an Azure managed identity from
// the Instance Metadata Service (IMDS) of the VM the agent runs on:
//
//   GET {endpoint}?api-version=2018-02-01&resource=RESOURCE[&client_id=ID]
//   Metadata: true
//
// answered with {"access_token", "expires_in" (a string of seconds),
// "expires_on", "resource", "token_type": "Bearer", ...}. See
// https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-use-vm-token
//
// - The token is held as a SecretValue and refreshed refresh_margin (5 min;
//   half the lifetime for shorter tokens) before it expires; invalidate()
//   (after a 401 from the resource) drops it so the next call fetches anew.
//   A failed early refresh keeps using the cached token until it expires.
// - Errors (message "Azure managed identity token: ..."): 400 "Identity not
//   found" (no such identity assigned to the VM) -> permission_denied; other
//   400s -> invalid_argument; 404 and 410 (IMDS is updating), 429, 5xx and
//   transport failures -> unavailable; a malformed answer -> invalid_argument.
//   The IMDS error text is quoted only through error_detail.
// - Thread-safe: one mutex around the cached token and the transport, so
//   callers arriving during a fetch wait for its token (one IMDS request).
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "agent/auth/clock.h"
#include "agent/auth/token_client.h"
#include "agent/egress/http.h"
#include "agent/secrets/azure/azure_settings.h"

namespace sa::agent::secrets::azure {

class ManagedIdentityTokenSource final : public auth::TokenSource {
  public:
    static constexpr const char* kApiVersion = "2018-02-01";

    struct Options {
        std::string endpoint = "http://169.254.169.254/metadata/identity/oauth2/token";
        std::string resource = "https://vault.azure.net";
        std::string client_id;  // empty: the system-assigned identity
        std::chrono::milliseconds timeout{10'000};
        int64_t refresh_margin_seconds = 300;
    };

    // The options of settings.auth (method managed_identity). Errors:
    // invalid_argument naming the field (auth.imds_endpoint must be an
    // http:// or https:// URL without query; auth.resource not empty).
    static Result<Options> options_from(const AzureKeyVaultSettings& settings);

    // transport: the connection to IMDS (owned); clock must outlive this. No I/O.
    ManagedIdentityTokenSource(std::unique_ptr<egress::Transport> transport, Options options,
                               const auth::Clock& clock);

    // A copy of the cached (or freshly fetched) token.
    Result<SecretValue> access_token() override;
    void invalidate() override;

  private:
    Status fetch();  // mutex_ held

    std::unique_ptr<egress::Transport> transport_;
    Options options_;
    std::string url_;  // endpoint with the query
    const auth::Clock& clock_;
    std::mutex mutex_;
    std::optional<SecretValue> token_;
    int64_t refresh_at_ = 0;
    int64_t expires_at_ = 0;
};

}  // namespace sa::agent::secrets::azure
