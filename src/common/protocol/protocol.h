#pragma once
// Constants of the agent <-> hub wire protocol, version 1 (docs/protocol.md).
// SECURITY NOTE: both programs read these; change them together with the doc.
namespace sa::protocol {

inline constexpr const char* kIssuer = "agent-hub";
inline constexpr const char* kTokenAudience = "agent-hub";
inline constexpr const char* kAccessTokenType = "at+jwt";
inline constexpr const char* kJobType = "secure-agent-job+jwt";
inline constexpr int kAccessTokenLifetimeSeconds = 900;
inline constexpr int kLeaseLifetimeSeconds = 600;
inline constexpr int kDefaultWaitSeconds = 25;
inline constexpr int kMaxWaitSeconds = 30;
inline constexpr int kClockLeewaySeconds = 60;
inline constexpr unsigned long kMaxChunkBytes = 8ul * 1024 * 1024;
inline constexpr unsigned long kTargetChunkBytes = 4ul * 1024 * 1024;

inline constexpr const char* kTokenPath = "/oauth2/token";
inline constexpr const char* kLeasePath = "/v1/agent/lease";
// GET kPingPath + "?agent_id=" + id: an authenticated no-op for health probes (section 6).
inline constexpr const char* kPingPath = "/v1/agent/ping";
// Job paths: "/v1/jobs/" + job_id + kChunksSuffix + seq, kCompleteSuffix, kFailSuffix.
inline constexpr const char* kJobsPrefix = "/v1/jobs/";
inline constexpr const char* kChunksSuffix = "/chunks/";
inline constexpr const char* kCompleteSuffix = "/complete";
inline constexpr const char* kFailSuffix = "/fail";
// POST "/v1/jobs/" + job_id + kHeartbeatSuffix: extends the lease, carries progress (section 5a).
inline constexpr const char* kHeartbeatSuffix = "/heartbeat";
inline constexpr const char* kLeaseHeader = "X-Lease-Id";
inline constexpr const char* kDigestHeader = "Content-Digest";

inline constexpr const char* kOperationExtractMetadata = "extract_metadata";
// The interactive operations deliver a JSON result with the completion, never chunks.
inline constexpr const char* kOperationTestConnection = "test_connection";
inline constexpr const char* kOperationPreflight = "preflight";
inline constexpr const char* kOperationListSchemas = "list_schemas";

// Job filters (claim "filters"): at most this many patterns per list, each at most
// kMaxFilterPatternBytes, ECMAScript regular expressions matched against whole names.
inline constexpr unsigned long kMaxFilterPatterns = 64;
inline constexpr unsigned long kMaxFilterPatternBytes = 256;
// Largest completion "result" (serialized JSON) of an interactive operation.
inline constexpr unsigned long kMaxResultBytes = 64ul * 1024;
// Heartbeat progress phases.
inline constexpr const char* kPhaseStarting = "starting";
inline constexpr const char* kPhaseExtracting = "extracting";
inline constexpr const char* kPhaseUploading = "uploading";
inline constexpr const char* kPhaseFinishing = "finishing";
// Bounds of `agent-hub serve --lease-seconds` (default kLeaseLifetimeSeconds).
inline constexpr int kMinLeaseSeconds = 10;
inline constexpr int kMaxLeaseSeconds = 3600;

}  // namespace sa::protocol
