#pragma once
// DaprSecretStore: secrets through the Dapr sidecar's secrets API (config
// type dapr), read just in time with one request per read:
//
//   GET {address}/v1.0/secrets/{dapr_store}/{name}
//   dapr-api-token: TOKEN        (when api_token is set)
//
// See https://docs.dapr.io/reference/api/secrets_api/
//
// Reference: STORE/NAME or STORE/NAME#KEY. NAME is the secret name as the
// Dapr component knows it; it is sent as ONE path segment, every byte but
// A-Z a-z 0-9 - . _ ~ percent-encoded, so a '/' in a name (Vault paths like
// "db/prod") travels as %2F, which the sidecar decodes back into the name.
// The answer is a JSON object of string values (one entry per key; stores
// with name/value semantics answer {NAME: VALUE}):
// - #KEY: the entry named KEY. A dotted KEY that names no entry ("db.user")
//   selects the entry before the first dot and the rest as a (dotted) field
//   of that entry's value parsed as JSON (select_secret).
// - no KEY: the only entry; with several entries invalid_argument listing
//   how many there are and asking for #KEY.
//
// Errors (messages start with store_where(name, path), never carry a value or
// token): 204 (secret not found) -> not_found; 400 (ERR_SECRET_STORE_NOT_FOUND,
// ERR_SECRET_STORES_NOT_CONFIGURED: the component is missing or
// misconfigured) -> invalid_argument naming the Dapr store; 401 (bad or
// missing dapr-api-token), 403 (ERR_PERMISSION_DENIED: the component's
// secret scope denies the name) -> permission_denied; 500 (ERR_SECRET_GET),
// 429, other 5xx and transport failures -> unavailable; a malformed answer ->
// invalid_argument. Dapr's error body {"errorCode","message"} is quoted
// through error_detail: "WHERE: HTTP 403: ERR_PERMISSION_DENIED: MESSAGE".
//
// Thread-safe: one mutex around each read.
#include <memory>
#include <mutex>
#include <string>

#include "agent/egress/http.h"
#include "agent/secrets/dapr/dapr_settings.h"
#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::dapr {

class DaprSecretStore final : public SecretStore {
  public:
    // name: the store's name under secret_stores (for messages). transport:
    // the connection to the sidecar (owned). credentials reads api_token
    // (required when it is set). Validates the settings (invalid_argument
    // naming the field); does no I/O.
    static Result<std::unique_ptr<DaprSecretStore>> create(
        std::string name, DaprSettings settings, std::unique_ptr<egress::Transport> transport,
        CredentialReader credentials = {});

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    DaprSecretStore(std::string name, DaprSettings settings,
                    std::unique_ptr<egress::Transport> transport, CredentialReader credentials);

    std::string name_;
    DaprSettings settings_;
    std::unique_ptr<egress::Transport> transport_;
    CredentialReader credentials_;
    std::mutex mutex_;
};

// Checks settings. Errors: invalid_argument naming the field.
Status validate(const DaprSettings& settings);

}  // namespace sa::agent::secrets::dapr
