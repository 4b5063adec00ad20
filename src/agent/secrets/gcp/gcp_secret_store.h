#pragma once
// GCP Secret Manager as a secret store (type gcp_secret_manager).
//
// Reference: STORE/SECRET, STORE/SECRET@VERSION, optionally with #KEY.
//   SECRET   the secret id in settings.project ([A-Za-z0-9_-], 1..255 chars)
//   VERSION  "latest" (the default: the most recently created version), a
//            version number ("3") or a version alias; [A-Za-z0-9_-]
//   KEY      a field of a JSON secret (dotted keys walk nested objects),
//            see select_secret; without it, the whole payload.
// Each read is one
//   GET {endpoint}/v1/projects/{project}/secrets/{SECRET}/versions/{VERSION}:access
// with "Authorization: Bearer TOKEN" (the token comes from the TokenSource:
// metadata server or service-account key). The payload is base64-decoded
// and its dataCrc32c checked when present (a mismatch is an integrity error
// and nothing is returned). A 401 invalidates the token and the request is
// sent once more with a new one; a second 401 is permission_denied.
//
// Errors start with store_where(name, path) and follow http_store.h; Google's
// {"error":{"code","message","status"}} is mapped by status: NOT_FOUND and
// FAILED_PRECONDITION (a disabled or destroyed version) -> not_found,
// PERMISSION_DENIED / UNAUTHENTICATED -> permission_denied,
// RESOURCE_EXHAUSTED / UNAVAILABLE / INTERNAL / DEADLINE_EXCEEDED / ABORTED /
// UNKNOWN -> unavailable, anything else -> invalid_argument. Token errors keep
// their kind (unauthenticated becomes permission_denied).
//
// Thread-safe: one mutex around each read (the transport and the token
// source are one-thread-at-a-time). Nothing is cached but the access token.
#include <memory>
#include <mutex>
#include <string>

#include "agent/auth/token_client.h"
#include "agent/egress/http.h"
#include "agent/secrets/gcp/gcp_settings.h"
#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::gcp {

class GcpSecretManagerStore final : public SecretStore {
  public:
    // Validates settings (errors: invalid_argument naming the field:
    // project, endpoint, timeout_seconds). Does no I/O.
    static Result<std::unique_ptr<GcpSecretManagerStore>> create(
        std::string name, GcpSecretManagerSettings settings,
        std::unique_ptr<egress::Transport> transport, std::unique_ptr<auth::TokenSource> tokens);

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    GcpSecretManagerStore(std::string name, GcpSecretManagerSettings settings,
                          std::unique_ptr<egress::Transport> transport,
                          std::unique_ptr<auth::TokenSource> tokens);

    const std::string name_;
    const GcpSecretManagerSettings settings_;
    std::mutex mutex_;
    std::unique_ptr<egress::Transport> transport_;
    std::unique_ptr<auth::TokenSource> tokens_;
};

// The token source settings.auth asks for: "metadata" (MetadataTokenSource)
// or "service_account_key" (ServiceAccountTokenSource, which reads
// auth.key through read_credential at each token exchange). transport is
// the token source's own (one per source); clock must outlive the source.
// Errors: invalid_argument naming the field (auth.method, ...).
Result<std::unique_ptr<auth::TokenSource>> make_gcp_token_source(
    const GcpSecretManagerSettings& settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader read_credential, const auth::Clock& clock);

}  // namespace sa::agent::secrets::gcp
