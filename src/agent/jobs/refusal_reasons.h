#pragma once
// Refusal and failure reason codes of docs/protocol.md §5, spelled once so
// the verifier, the policy checks, the supervisor, the workers and the
// reporter cannot drift apart.
namespace sa::agent::jobs::reason {

// Refusals (outcome "refused"): the agent would not run the job.
// Verification (JobVerifier):
inline constexpr const char* kBadSignature = "bad_signature";
inline constexpr const char* kMalformedJob = "malformed_job";
inline constexpr const char* kWrongAudience = "wrong_audience";
inline constexpr const char* kExpired = "expired";
inline constexpr const char* kWrongType = "wrong_type";
inline constexpr const char* kReplayed = "replayed";
inline constexpr const char* kUnknownKey = "unknown_key";
inline constexpr const char* kReplayStoreUnavailable = "replay_store_unavailable";
// The agent's config:
inline constexpr const char* kUnknownSource = "unknown_source";
inline constexpr const char* kUnsupportedOperation = "unsupported_operation";
// The customer's policy (jobs::evaluate):
inline constexpr const char* kSourceNotAllowed = "source_not_allowed";
inline constexpr const char* kOperationNotAllowed = "operation_not_allowed";
inline constexpr const char* kOutsideTimeWindow = "outside_time_window";
inline constexpr const char* kFilterOutsidePolicy = "filter_outside_policy";

// Failures (outcome "failed"): the agent tried and could not finish.
inline constexpr const char* kExtractionFailed = "extraction_failed";
inline constexpr const char* kDeliveryFailed = "delivery_failed";
inline constexpr const char* kWorkerCrashed = "worker_crashed";
inline constexpr const char* kTimeout = "timeout";
inline constexpr const char* kCancelled = "cancelled";
inline constexpr const char* kLeaseLost = "lease_lost";
inline constexpr const char* kLimitExceeded = "limit_exceeded";
inline constexpr const char* kSandboxUnavailable = "sandbox_unavailable";
inline constexpr const char* kConnectionFailed = "connection_failed";

}  // namespace sa::agent::jobs::reason
