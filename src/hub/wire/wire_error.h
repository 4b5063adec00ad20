#pragma once
// Errors that travel to the agent in the OAuth 2.0 error shape
// {"error": code, "error_description": description} (docs/protocol.md).
// The domain code (jobs, ingest) returns them; the server maps the code to an
// HTTP status with http_status().
#include <expected>
#include <string>

#include "common/result.h"

namespace sa::hub::wire {

// Codes of protocol v1, in one place.
namespace code {
inline constexpr const char* kInvalidRequest = "invalid_request";
inline constexpr const char* kInvalidClient = "invalid_client";
inline constexpr const char* kUnsupportedGrantType = "unsupported_grant_type";
inline constexpr const char* kInvalidToken = "invalid_token";
inline constexpr const char* kInvalidDigest = "invalid_digest";
inline constexpr const char* kDigestMismatch = "digest_mismatch";
inline constexpr const char* kChunkConflict = "chunk_conflict";
inline constexpr const char* kLeaseLost = "lease_lost";
inline constexpr const char* kMissingChunk = "missing_chunk";
inline constexpr const char* kBadChunk = "bad_chunk";
// An incremental completion whose baseline is not the job's signed baseline or
// no longer the catalog version of (app, source): the job fails, 409.
inline constexpr const char* kBaselineMismatch = "baseline_mismatch";
inline constexpr const char* kNotFound = "not_found";
inline constexpr const char* kTooLarge = "request_too_large";
inline constexpr const char* kMethodNotAllowed = "method_not_allowed";
inline constexpr const char* kServerError = "server_error";
}  // namespace code

struct WireError {
    std::string code;
    std::string description;
};

template <class T>
using WireResult = std::expected<T, WireError>;

inline std::unexpected<WireError> wire_fail(std::string code, std::string description) {
    return std::unexpected<WireError>(WireError{std::move(code), std::move(description)});
}

// A storage or library failure. The description carries the details for the
// hub's log; the server replaces it with a generic text before answering.
inline std::unexpected<WireError> internal_failure(const Error& error) {
    return wire_fail(code::kServerError, error.describe());
}

// HTTP status for a code: 400 for request problems, 401 for authentication,
// 404, 409 for state conflicts, 413, 500 otherwise.
int http_status(const std::string& code);

}  // namespace sa::hub::wire
