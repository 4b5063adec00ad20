#pragma once
// The XML answers of AWS STS AssumeRoleWithWebIdentity, parsed with expat:
// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
//
// SECURITY NOTE: the answer is untrusted input. A document with a DOCTYPE
// or an entity declaration is refused (STS never sends one; this shuts out
// entity expansion attacks), nesting is limited, and the credential texts
// go straight into SecretValues (the parser's own buffers are beyond reach).
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::secrets::aws {

struct TemporaryCredentials {
    SecretValue access_key_id;
    SecretValue secret_access_key;
    SecretValue session_token;
    int64_t expiration = 0;  // Unix seconds
};

// AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/
// Credentials/{AccessKeyId,SecretAccessKey,SessionToken,Expiration}.
// Errors: invalid_argument naming what is missing or malformed (never a value).
Result<TemporaryCredentials> parse_assume_role_with_web_identity(std::string_view xml);

// ErrorResponse/Error/{Code,Message}; both empty when the body is not one.
struct StsError {
    std::string code;
    std::string message;
};
StsError parse_sts_error(std::string_view xml);

// "2019-11-09T13:34:41Z", optionally with fractional seconds, in UTC.
Result<int64_t> parse_iso8601_utc(std::string_view text);

}  // namespace sa::agent::secrets::aws
