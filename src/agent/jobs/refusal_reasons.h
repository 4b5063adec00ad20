#pragma once
// Refusal and failure reason codes of docs/protocol.md §5, spelled once so
// the verifier, the policy checks and the reporter cannot drift apart.
namespace sa::agent::jobs::reason {

inline constexpr const char* kBadSignature = "bad_signature";
inline constexpr const char* kMalformedJob = "malformed_job";
inline constexpr const char* kWrongAudience = "wrong_audience";
inline constexpr const char* kExpired = "expired";
inline constexpr const char* kWrongType = "wrong_type";
inline constexpr const char* kReplayed = "replayed";
inline constexpr const char* kUnknownSource = "unknown_source";
inline constexpr const char* kUnsupportedOperation = "unsupported_operation";
inline constexpr const char* kExtractionFailed = "extraction_failed";
inline constexpr const char* kDeliveryFailed = "delivery_failed";

}  // namespace sa::agent::jobs::reason
