#pragma once
// AWS Signature Version 4, header form (AWS4-HMAC-SHA256), as specified in
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
//
// sign() builds the canonical request, the string to sign, the signing key
// (HMAC chain over date, region, service, "aws4_request") and the signature,
// and returns every intermediate text so tests can compare each stage with
// AWS's published test suite. The secret access key stays in a SecretValue;
// the "AWS4"+secret buffer and every intermediate key are wiped before
// sign() returns.
//
// Canonicalisation (non-S3 services):
// - URI: the path is normalised (empty and "." segments removed, ".."
//   applied, trailing slash kept) and every segment URI-encoded: RFC 3986
//   unreserved bytes stay, every other byte becomes %XX (upper-case hex).
//   The path is taken as it appears in the request line, so a '%' already
//   there is encoded again: AWS's "encode twice" rule for all services but S3.
// - Query: each name and value is percent-decoded, then encoded as above;
//   pairs sorted by encoded name, then encoded value; a name without '='
//   gets an empty value.
// - Headers: names lower-cased; values trimmed and runs of spaces collapsed
//   to one; repeated names joined with ',' in request order; sorted by name.
//   Every header given is signed (the caller chooses what to pass).
// - Payload: lower-case hex SHA-256 of the body.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/secrets/secret_value.h"
#include "common/result.h"

namespace sa::agent::secrets::aws {

struct SigV4Request {
    std::string method;  // "GET", "POST", ...
    std::string path;    // as in the request line, without the query; "" means "/"
    std::string query;   // as in the request line after '?', without it
    // The headers to sign, including "host" and "x-amz-date" (and
    // "x-amz-security-token" for session credentials); any case, repeats allowed.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string_view payload;
};

struct SigV4Scope {
    std::string amz_date;  // "YYYYMMDDTHHMMSSZ", the request's X-Amz-Date
    std::string region;    // "us-east-1"
    std::string service;   // "secretsmanager", "sts", ...
};

// The stages of one signature. None of them contains the secret key; the
// session token, when signed, appears in canonical_request.
struct SigV4Signature {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signed_headers;  // "host;x-amz-date"
    std::string signature;       // lower-case hex HMAC-SHA256
    std::string authorization;   // the Authorization header's value
};

// Errors: invalid_argument for an unusable request or scope (bad date,
// missing host or x-amz-date header, empty key id); internal when OpenSSL
// fails.
Result<SigV4Signature> sigv4_sign(const SigV4Request& request, const SigV4Scope& scope,
                                  std::string_view access_key_id,
                                  const SecretValue& secret_access_key);

// The stages without the HMAC, for code that verifies a signature (tests).
std::string sigv4_canonical_uri(std::string_view path);
std::string sigv4_canonical_query(std::string_view query);
// "YYYYMMDDTHHMMSSZ" of Unix seconds (UTC).
std::string sigv4_amz_date(int64_t unix_seconds);

// SigV4's URI encoding is RFC 3986 percent-encoding: percent_encode in
// agent/secrets/http_store.h.

}  // namespace sa::agent::secrets::aws
