#pragma once
// AwsSecretsManagerStore (type "aws_secrets_manager"): reads secrets with
// AWS Secrets Manager GetSecretValue, signed with SigV4 (service
// "secretsmanager"):
// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
//
// Reference mapping, STORE/PATH#KEY:
// - PATH is the SecretId: the secret's name ("prod/db") or its full ARN.
// - PATH ending in "@STAGE" asks for that staging label (VersionStage), e.g.
//   "prod/db@AWSPREVIOUS". The split is at the LAST '@', so a secret whose
//   name itself contains '@' is referenced with an explicit stage
//   ("team@corp/db@AWSCURRENT") or by its ARN plus stage.
// - KEY selects a field of a JSON SecretString (select_secret; dotted keys
//   walk nested objects). A SecretBinary secret is returned as its decoded
//   bytes; a KEY on a binary secret is invalid_argument.
//
// Errors (every message starts with store_where(name, PATH)): Secrets
// Manager answers errors as HTTP 400 with {"__type": "...", "message": ...};
// the __type decides: ResourceNotFoundException -> not_found;
// AccessDeniedException, DecryptionFailure, UnrecognizedClientException,
// InvalidSignatureException, IncompleteSignature, InvalidClientTokenId,
// ExpiredTokenException -> permission_denied; ThrottlingException,
// InternalServiceError, RequestTimeout -> unavailable;
// InvalidRequestException, InvalidParameterException -> invalid_argument;
// other types and statuses as http_store_error.
//
// Credentials (settings.auth.method):
// - static: access_key_id, secret_access_key and the optional session_token
//   are read through the CredentialReader for each request and released
//   right after signing.
// - web_identity: AssumeRoleWithWebIdentity (unsigned POST to STS) with the
//   token read fresh from token_file; the temporary credentials are kept as
//   SecretValues until 5 minutes before their Expiration (by the Clock),
//   then the role is assumed again. An ExpiredTokenException from Secrets
//   Manager drops them and the read is retried once with new ones.
//
// One attempt per read (plus that one retry); thread-safe (one mutex
// around each read: the Transport is one-thread-at-a-time).
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/auth/clock.h"
#include "agent/egress/http.h"
#include "agent/secrets/aws/aws_settings.h"
#include "agent/secrets/aws/sts_xml.h"
#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::aws {

// For create() and tests: the endpoint's URL ending in "/" and Host value.
// Errors: invalid_argument (not https, has a path, query or user info).
struct AwsEndpoint {
    std::string url;   // "https://host[:port]/"
    std::string host;  // the Host header: "host", or "host:port" for a port other than 443
};
Result<AwsEndpoint> parse_aws_endpoint(std::string_view url);

class AwsSecretsManagerStore final : public SecretStore {
  public:
    // Temporary credentials are renewed this long before they expire.
    static constexpr int64_t kRefreshBeforeExpirySeconds = 300;
    static constexpr size_t kMaxTokenFileBytes = 64 * 1024;

    // name: the store's name in errors. clock: not owned, must outlive the
    // store; null uses the system clock. Errors: invalid_argument naming
    // the setting that is wrong (region, endpoint, auth.*, timeout_seconds).
    static Result<std::unique_ptr<AwsSecretsManagerStore>> create(
        std::string name, AwsSecretsManagerSettings settings, CredentialReader credentials,
        std::unique_ptr<egress::Transport> transport, const auth::Clock* clock = nullptr);

    Result<SecretValue> read(const SecretRef& ref) override;

  private:
    enum class Outcome { done, expired_token };

    AwsSecretsManagerStore(std::string name, AwsSecretsManagerSettings settings,
                           CredentialReader credentials,
                           std::unique_ptr<egress::Transport> transport, const auth::Clock* clock,
                           AwsEndpoint secrets_endpoint, AwsEndpoint sts_endpoint);

    // static: the credentials read just in time (session_token empty when
    // none is configured).
    Result<TemporaryCredentials> static_credentials(const std::string& where);
    Result<SecretValue> read_credential(const SecretRef& ref, const char* setting,
                                        const std::string& where);
    // web_identity: temporary_ is fresh afterwards (assumes the role when
    // there are none or they expire within kRefreshBeforeExpirySeconds).
    Status fresh_temporary_credentials(const std::string& where);
    Status assume_role(const std::string& where);
    Result<SecretValue> get_secret_value(const SecretRef& ref, const std::string& where,
                                         const std::string& body, Outcome& outcome);

    std::string name_;
    AwsSecretsManagerSettings settings_;
    CredentialReader credentials_;
    std::unique_ptr<egress::Transport> transport_;
    const auth::Clock* clock_;
    AwsEndpoint secrets_endpoint_;
    AwsEndpoint sts_endpoint_;

    std::mutex mutex_;
    std::optional<TemporaryCredentials> temporary_;  // web_identity only
};

}  // namespace sa::agent::secrets::aws
