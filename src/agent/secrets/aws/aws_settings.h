#pragma once
// Settings of an AWS Secrets Manager secret store (config section
// secret_stores: {NAME: {type: aws_secrets_manager, ...}}); field names are
// the YAML keys. Validated by AwsSecretsManagerStore::create.
#include <optional>
#include <string>

#include "agent/secrets/secret_store.h"

namespace sa::agent::secrets::aws {

// auth: how the agent gets AWS credentials for itself.
struct AwsAuthSettings {
    // "static" (an access key, optionally with a session token) or
    // "web_identity" (EKS IRSA: AssumeRoleWithWebIdentity with a projected
    // service-account token).
    std::string method = "static";

    // static: references read through the CredentialReader just in time, for
    // each request, and released right after signing.
    SecretRef access_key_id;
    SecretRef secret_access_key;
    std::optional<SecretRef> session_token;  // for temporary credentials

    // web_identity:
    std::string role_arn;    // "arn:aws:iam::123456789012:role/secure-agent"
    std::string token_file;  // the projected token, read fresh for each AssumeRole
                             // (EKS: AWS_WEB_IDENTITY_TOKEN_FILE)
    std::string session_name = "secure-agent";  // RoleSessionName (2-64 chars)
    // Empty: https://sts.{region}.amazonaws.com (the regional endpoint).
    std::string sts_endpoint;
    int duration_seconds = 3600;  // DurationSeconds asked for (900..43200)
};

struct AwsSecretsManagerSettings {
    std::string region;  // required, e.g. "eu-central-1"
    // Empty: https://secretsmanager.{region}.amazonaws.com; set it for a VPC
    // endpoint (https://vpce-...secretsmanager.REGION.vpce.amazonaws.com).
    std::string endpoint;
    AwsAuthSettings auth;
    int timeout_seconds = 10;  // per HTTP request (GetSecretValue, AssumeRole)
};

}  // namespace sa::agent::secrets::aws
