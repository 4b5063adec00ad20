#pragma once
// HubClient: the agent's side of the wire protocol (docs/protocol.md
// sections 2-6): lease, chunk upload, heartbeat, completion and failure
// reports, ping.
//
// Every call carries "Authorization: Bearer" from the TokenSource; a 401
// from the hub invalidates the token and the call is retried once with a
// fresh one (which re-reads the client secret: rotation without restart).
// ping() is the exception: one attempt, so a health probe sees every failure.
// Hub errors ({"error", "error_description"}) become the Error message;
// codes: 400/413 invalid_argument, 401 unauthenticated, 403
// permission_denied, 404 not_found, 409 conflict (e.g. lease_lost), 429 and
// 5xx unavailable. Transport failures keep the transport's code.
// Not thread-safe: one HubClient per control loop.
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/auth/token_client.h"
#include "agent/connectors/connector.h"
#include "agent/delivery/chunk_writer.h"
#include "agent/egress/http.h"
#include "agent/jobs/job_verifier.h"

namespace sa::agent::control {

// The body of POST /v1/jobs/{id}/complete (protocol section 4).
struct Completion {
    std::string lease_id;
    std::vector<delivery::ChunkInfo> chunks;
    connectors::ExtractSummary summary;
    int64_t started_at_ms = 0;
    int64_t finished_at_ms = 0;
    // The JSON object an interactive operation (test_connection, preflight,
    // list_schemas) delivers instead of chunks; sent when set. At most
    // protocol::kMaxResultBytes serialized, or the hub answers 413.
    std::optional<nlohmann::json> result;
    // An incremental extraction: the chunks are a delta (changed and new
    // records plus removals) against this baseline job, sent as
    // "delta": {"baseline_job_id": ...}. Unset: a full replacement.
    std::optional<std::string> delta_baseline_job_id;
};

// Progress carried by a heartbeat (protocol section 5a).
struct Progress {
    int64_t objects = 0;
    int64_t bytes = 0;
    int64_t chunks = 0;
    std::string phase = "extracting";  // starting | extracting | uploading | finishing
};

// What the hub answers to a heartbeat.
struct HeartbeatReply {
    int64_t lease_expires_at = 0;  // Unix seconds: the extended lease
    bool cancel = false;           // an operator asked to cancel the job
};

// What GET /v1/agent/ping tells (protocol section 6).
struct PingResult {
    int64_t server_time = 0;           // the hub's clock, Unix seconds
    std::chrono::milliseconds rtt{0};  // the request alone, without getting the token
};

class HubClient final {
  public:
    struct Options {
        std::string hub_url;  // no trailing '/'
        std::string agent_id;
        // Chunk uploads: attempts in all (1 + retries) on unavailable, 5xx, 429.
        int upload_attempts = 4;
        std::chrono::milliseconds retry_base{500};
        std::chrono::milliseconds retry_cap{10'000};
        std::chrono::milliseconds request_timeout{60'000};
        egress::ResponseObserver observer;  // optional, for metrics
        // Waits between retries; returns false when interrupted (shutdown).
        // Default: std::this_thread::sleep_for.
        std::function<bool(std::chrono::milliseconds)> sleep;
    };

    // transport and tokens must outlive the HubClient. Does no I/O.
    HubClient(egress::Transport& transport, auth::TokenSource& tokens, Options options);

    // POST /v1/agent/lease, long-polling up to wait_seconds (request timeout
    // wait_seconds + 10 s). 200: the envelope (unverified: the caller runs
    // the JobVerifier); 204: nullopt. A malformed 200 body: invalid_argument.
    Result<std::optional<jobs::LeaseEnvelope>> lease(int wait_seconds);

    // GET /v1/agent/ping?agent_id=...: one attempt, no retries (a probe must
    // report failures, not hide them), timeout Options::request_timeout.
    // 401: the token is invalidated (the next call fetches a new one) and the
    // error is unauthenticated. A 200 without an integer server_time:
    // invalid_argument. Other statuses as in the header comment.
    Result<PingResult> ping();

    // PUT /v1/jobs/{job_id}/chunks/{seq} with X-Lease-Id and Content-Digest.
    // 201 (stored) and 200 (same chunk again) both succeed. Retries with
    // jittered backoff, honouring Retry-After.
    Status upload_chunk(const std::string& job_id, const std::string& lease_id,
                        const delivery::Chunk& chunk);

    // POST /v1/jobs/{job_id}/heartbeat with the progress: extends the lease
    // and tells whether the job was cancelled. One attempt (plus the usual
    // retry after a 401), timeout kHeartbeatTimeout: the caller heartbeats
    // again soon anyway. 409 (lease unknown, expired or not ours): conflict
    // whose message contains "lease_lost". A 200 without an integer
    // lease_expires_at and a boolean cancel: invalid_argument.
    Result<HeartbeatReply> heartbeat(const std::string& job_id, const std::string& lease_id,
                                     const Progress& progress);
    static constexpr std::chrono::milliseconds kHeartbeatTimeout{15'000};

    // POST /v1/jobs/{job_id}/complete; returns the hub's response object.
    Result<nlohmann::json> complete(const std::string& job_id, const Completion& completion);

    // POST /v1/jobs/{job_id}/fail; outcome is "refused" or "failed".
    Status fail(const std::string& job_id, const std::string& lease_id, const std::string& outcome,
                const std::string& reason_code, const std::string& message);

    // Retry-After of the last 429/503 answer, if it carried one.
    std::optional<std::chrono::seconds> last_retry_after() const { return last_retry_after_; }

  private:
    Result<egress::HttpResponse> call(const char* endpoint, const std::string& method,
                                      const std::string& path, const std::string& body,
                                      std::vector<std::pair<std::string, std::string>> headers,
                                      std::chrono::milliseconds timeout,
                                      const std::string& job_id = {}, int max_attempts = 2,
                                      std::chrono::milliseconds* send_time = nullptr);
    // job_id: the job the request serves, named in the network log.
    Result<egress::HttpResponse> post_json(const char* endpoint, const std::string& path,
                                           const nlohmann::json& body, const std::string& job_id);

    egress::Transport& transport_;
    auth::TokenSource& tokens_;
    Options options_;
    std::optional<std::chrono::seconds> last_retry_after_;
};

// "/v1/jobs/" + percent-encoded job id; exposed for tests.
std::string job_path(const std::string& job_id);

// The Error for a non-success hub response (see the header comment).
Error hub_error(const std::string& what, const egress::HttpResponse& response);

}  // namespace sa::agent::control
