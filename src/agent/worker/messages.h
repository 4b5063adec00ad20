#pragma once
// The messages of the supervisor <-> worker channel (channel.h carries the
// frames). A narrow, fixed set, each with its own direction and payload:
//
//   supervisor -> worker, in this order and nothing else:
//     job         JSON  WorkerJob
//     credential  binary [u16 BE name length][name][value], 0..kMaxCredentials
//     start       empty  no more input: the worker sandboxes itself and runs
//   worker -> supervisor:
//     ready       JSON  the sandbox report, once, first
//     log         JSON  {"level","message","fields"}, at most kMaxLogBytes
//     progress    JSON  {"objects","bytes","chunks"}
//     chunk       JSON  {"seq","sha256","size","file"}: a chunk file in the spool dir
//     result      JSON  {"summary":{...},"result":{...},"delta":true}: the job's end (success)
//     failure     JSON  {"reason_code","message"}: the job's end (failure)
//
// Decoders treat every payload as untrusted: strict types, bounded sizes,
// errors that name the frame and the field (invalid_argument).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/connectors/connector.h"
#include "agent/connectors/factory.h"
#include "agent/jobs/filters.h"
#include "agent/jobs/refusal_reasons.h"
#include "agent/sandbox/sandbox.h"
#include "agent/secrets/secret_value.h"
#include "agent/worker/channel.h"
#include "common/protocol/protocol.h"
#include "common/result.h"

namespace sa::agent::worker {

enum class FrameType : uint8_t {
    job = 1,
    credential = 2,
    start = 3,
    ready = 16,
    log = 17,
    progress = 18,
    chunk = 19,
    result = 20,
    failure = 21,
};

// "job", "credential", ...; "unknown frame type N" for anything else.
std::string frame_type_name(uint8_t type);

inline constexpr size_t kMaxCredentials = 8;
inline constexpr size_t kMaxLogBytes = 8 * 1024;
inline constexpr size_t kMaxResultBytes = 64 * 1024;
inline constexpr size_t kMaxCredentialNameBytes = 64;

// Reason codes of the failure frame the worker sends (docs/jobs.md), spelled
// once in agent/jobs/refusal_reasons.h: the supervisor reports them to the hub.
namespace failure_reason {
using jobs::reason::kConnectionFailed;
using jobs::reason::kExtractionFailed;
using jobs::reason::kLimitExceeded;
using jobs::reason::kSandboxUnavailable;
using jobs::reason::kUnsupportedOperation;
// The worker refused its own input (a supervisor bug, never the hub's doing).
inline constexpr const char* kProtocolError = "protocol_error";
}  // namespace failure_reason

// Exit statuses of the worker process: after result, after failure, when
// the sandbox cannot be applied, when it refused its input.
inline constexpr int kExitSucceeded = 0;
inline constexpr int kExitFailed = 2;
inline constexpr int kExitSandboxUnavailable = 3;
inline constexpr int kExitProtocolError = 4;

using SourceParams = connectors::SourceParams;

struct JobLimits {
    int64_t max_objects = 0;  // 0: unlimited
    int64_t max_bytes = 0;    // 0: unlimited; NDJSON bytes written to chunks
};

struct SandboxSettings {
    sandbox::Limits limits;
    bool strict = false;
};

struct WorkerJob {
    std::string job_id, operation;  // extract_metadata | test_connection | preflight | list_schemas
    SourceParams source;
    std::vector<jobs::ObjectFilters> filters;  // all must pass (policy's and the job's)
    JobLimits limits;
    size_t chunk_target_bytes = protocol::kTargetChunkBytes;
    std::string spool_dir;  // exists, 0700, created by the supervisor
    SandboxSettings sandbox;
    // extract_metadata only: the supervisor left the baseline of an
    // incremental run in SPOOL/baseline.ndjson (delivery/fingerprint_state.h)
    // and the worker delivers only what changed plus removals. Frame key
    // "baseline": true; absent: false.
    bool baseline = false;
};

struct Credential {
    std::string name;  // "user" | "password"
    secrets::SecretValue value;
};

struct Ready {
    sandbox::Report report;
};
struct LogLine {
    std::string level, message;  // level: info | warn | error
    nlohmann::json fields;       // an object
};
struct Progress {
    int64_t objects = 0, bytes = 0, chunks = 0;
};
// The chunk frame as sent: file is relative to the spool dir.
struct ChunkMessage {
    int64_t seq = 0;
    std::string sha256_hex;
    int64_t size = 0;
    std::string file;
};
struct Finished {
    // What was delivered: in a delta run, changed and new objects only.
    connectors::ExtractSummary summary;
    std::optional<nlohmann::json> result;  // interactive operations only
    // The chunks are a delta against the job's baseline (changed and new
    // records plus removals). Key "delta": true; absent: false.
    bool delta = false;
};
struct Failed {
    std::string reason_code, message;
};

// "chunk-000042.ndjson": the only file name a chunk frame may carry for seq 42.
std::string chunk_file_name(int64_t seq);

// Encoders produce the frame payload; decoders validate it.
std::string encode_job(const WorkerJob& job);
Result<WorkerJob> decode_job(std::string_view payload);

// The credential payload is built in a buffer that is wiped after it is sent.
Status send_credential(Channel& channel, const Credential& credential);
// The same with the caller's buffer, wiped (whole capacity) when this returns:
// the seam a test uses to observe the wipe.
Status send_credential(Channel& channel, const Credential& credential, std::string& buffer);
// Decodes into a SecretValue and wipes payload (whole capacity) whatever the outcome.
Result<Credential> decode_credential(std::string& payload);

std::string encode_ready(const sandbox::Report& report);
Result<Ready> decode_ready(std::string_view payload);
// Cuts the message (and drops fields) so the payload stays within kMaxLogBytes.
std::string encode_log(const LogLine& line);
Result<LogLine> decode_log(std::string_view payload);
std::string encode_progress(const Progress& progress);
Result<Progress> decode_progress(std::string_view payload);
std::string encode_chunk(const ChunkMessage& chunk);
// Also checks that file is exactly chunk_file_name(seq).
Result<ChunkMessage> decode_chunk(std::string_view payload);
// invalid_argument when the result is above kMaxResultBytes.
Result<std::string> encode_finished(const Finished& finished);
Result<Finished> decode_finished(std::string_view payload);
std::string encode_failure(const Failed& failure);
Result<Failed> decode_failure(std::string_view payload);

}  // namespace sa::agent::worker
