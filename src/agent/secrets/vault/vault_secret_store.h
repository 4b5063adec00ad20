#pragma once
// VaultSecretStore: secrets from a HashiCorp Vault KV version 2 engine
// (store type "vault").
//
// Reference mapping, "STORE/PATH#KEY":
// - PATH is the secret's path inside the KV mount (settings.mount), read
//   with GET {address}/v1/{mount}/data/{PATH}. Each '/'-separated segment is
//   percent-encoded; empty, "." and ".." segments are refused.
// - A trailing "@N" (N a positive decimal number) selects version N:
//   "db/prod@3" reads ?version=3. Without it, the current version is read.
//   (So a secret whose name itself ends in "@digits" cannot be referenced.)
// - The secret's key/value map (the answer's data.data) is serialised as
//   compact JSON and goes through select_secret: no KEY gives that JSON text,
//   "#password" its field, "#a.b" a nested field.
// - A deleted or destroyed version is not_found.
//
// Authentication (settings.auth.method):
// - token: the token is read through the CredentialReader for every read
//   and released right after. On a 403 the reference is read once more and,
//   if the token changed (rotated), the read is retried once with it;
//   otherwise the 403 is permission_denied.
// - approle / kubernetes: a login (POST /v1/auth/{mount}/login) gives a
//   client token, the only thing this store keeps (as a SecretValue). Once
//   less than a third of its lease is left it is renewed (POST
//   /v1/auth/token/renew-self) when renewable, otherwise (and when renewal
//   fails or grants too little to get out of that last third, i.e. the token
//   reached its max TTL) the store logs in again; an expired token is
//   replaced by a login. If that early refresh fails, the old token is used
//   until it expires. A 403 on a read means the token was revoked: the
//   store logs in again once and retries the read once.
//   The SecretID (approle) is read through the CredentialReader and the
//   service account JWT (kubernetes) from auth.jwt_file at each login, and
//   both are wiped right after.
// - The token goes out as "Authorization: Bearer" (which Vault accepts like
//   X-Vault-Token), so the egress layer builds the header line from the
//   SecretValue, wipes it and drops it on a cross-origin redirect.
// - settings.namespace_ is sent as X-Vault-Namespace on every request.
//
// Errors start with store_where(name, PATH) and have the shared kinds of
// http_store.h: not_found, permission_denied (also: a login Vault refuses
// with 400, or a credential that cannot be read), unavailable (5xx, 429,
// 412 from a standby that lacks the requested state, "Vault is sealed",
// no answer) and invalid_argument (a bad reference, a malformed answer).
// Vault's {"errors":[...]} texts are quoted only through error_detail.
//
// Thread-safe: one mutex around each read (the transport is single-threaded).
// One attempt per read (plus the one re-authentication retry above): retries
// with backoff, caching and auditing are done around the store.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "agent/auth/clock.h"
#include "agent/egress/http.h"
#include "agent/secrets/secret_store.h"
#include "agent/secrets/vault/vault_settings.h"

namespace sa::agent::secrets::vault {

class VaultSecretStore final : public SecretStore {
  public:
    // name: the store's name in references (for messages). transport: how
    // the store reaches Vault (an egress::HttpClient whose policy allows
    // settings.address). credentials: reads auth.token / auth.secret_id.
    // clock: null = the system clock. Errors: invalid_argument naming the
    // settings field that is wrong. Does no I/O.
    static Result<std::unique_ptr<VaultSecretStore>> create(
        std::string name, VaultSettings settings, std::unique_ptr<egress::Transport> transport,
        CredentialReader credentials, std::shared_ptr<const auth::Clock> clock = nullptr);

    ~VaultSecretStore() override;
    VaultSecretStore(const VaultSecretStore&) = delete;
    VaultSecretStore& operator=(const VaultSecretStore&) = delete;

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    struct Lease;  // the login token and its lease
    struct Target;
    enum class Method { token, approle, kubernetes };

    VaultSecretStore(std::string name, VaultSettings settings, Method method, std::string address,
                     std::string kv_mount, std::string auth_mount,
                     std::unique_ptr<egress::Transport> transport, CredentialReader credentials,
                     std::shared_ptr<const auth::Clock> clock);

    Result<SecretValue> read_with_token_method(const Target& target, const SecretRef& ref,
                                               const std::string& where);
    Result<SecretValue> read_with_login(const Target& target, const SecretRef& ref,
                                        const std::string& where);
    // One KV v2 read with token. forbidden is set when Vault answered 403
    // (the caller decides about a retry).
    Result<SecretValue> read_kv(const Target& target, const SecretRef& ref,
                                const std::string& where, const SecretValue& token,
                                bool& forbidden);
    // Makes sure lease_ holds a usable token (login, renewal); fresh is set
    // when it comes from a login made just now.
    Status ensure_token(const std::string& where, bool& fresh);
    Status login(const std::string& where);
    Status renew(const std::string& where);
    Result<SecretValue> read_credential(const SecretRef& ref, const char* field,
                                        const std::string& where);
    egress::HttpRequest request(std::string method, std::string path) const;

    const std::string name_;
    const VaultSettings settings_;
    const Method method_;
    const std::string auth_mount_;  // encoded, for approle / kubernetes
    const std::string address_;     // without trailing '/'
    const std::string kv_mount_;    // encoded
    const CredentialReader credentials_;
    const std::shared_ptr<const auth::Clock> clock_;

    std::mutex mutex_;
    std::unique_ptr<egress::Transport> transport_;  // guarded by mutex_
    std::unique_ptr<Lease> lease_;                  // guarded by mutex_
};

}  // namespace sa::agent::secrets::vault
