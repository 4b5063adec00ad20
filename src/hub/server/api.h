#pragma once
// The hub's HTTP API (docs/protocol.md), independent of the HTTP library:
// each endpoint takes the parts of the request it needs and returns status,
// headers and body. http_server.cpp adapts it to cpp-httplib; tests call it
// directly.
//
// Every request is untrusted: malformed input gets a 4xx answer in the OAuth
// error shape, never an exception or a crash. Secrets (client secrets,
// tokens) never appear in responses' error descriptions or in log_detail.
//
// Thread safety: all methods may run concurrently.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hub/clock/clock.h"
#include "hub/identity/app_registry.h"
#include "hub/identity/token_service.h"
#include "hub/ingest/ingest.h"
#include "hub/jobs/dispatcher.h"
#include "hub/jobs/job_queue.h"

namespace sa::hub::server {

// Largest JSON or form body accepted by the non-chunk endpoints.
inline constexpr size_t kMaxJsonBody = 1024 * 1024;
inline constexpr size_t kMaxFormBody = 64 * 1024;
inline constexpr size_t kMaxCompletionChunks = 100'000;

struct ApiResponse {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    // For the request log only: the authenticated client and what happened
    // (job id, error code and description). Never a secret.
    std::string client_id;
    std::string detail;
};

struct Services {
    identity::AppRegistry& apps;
    identity::TokenService& tokens;
    jobs::JobQueue& queue;
    jobs::Dispatcher& dispatcher;
    ingest::Ingest& ingest;
    // The time ping answers with; null: the system clock. Not owned.
    const clock::Clock* clock = nullptr;
};

class Api final {
  public:
    explicit Api(Services services) : s_(services) {}

    // POST /oauth2/token (client_credentials; client_secret_basic or
    // client_secret_post, never both in one request: 400 invalid_request).
    ApiResponse token(const std::optional<std::string>& authorization, std::string_view body);
    // POST /v1/agent/lease: may block up to wait_seconds.
    ApiResponse lease(const std::optional<std::string>& authorization, std::string_view body);
    // PUT /v1/jobs/{job_id}/chunks/{seq}
    ApiResponse put_chunk(const std::optional<std::string>& authorization,
                          const std::string& job_id, const std::string& seq,
                          const std::optional<std::string>& lease_id,
                          const std::optional<std::string>& content_digest, std::string_view body);
    // POST /v1/jobs/{job_id}/complete
    ApiResponse complete(const std::optional<std::string>& authorization, const std::string& job_id,
                         std::string_view body);
    // POST /v1/jobs/{job_id}/heartbeat: extends the lease, records progress,
    // answers {"job_id", "lease_expires_at", "cancel"}.
    ApiResponse heartbeat(const std::optional<std::string>& authorization,
                          const std::string& job_id, std::string_view body);
    // POST /v1/jobs/{job_id}/fail
    ApiResponse fail(const std::optional<std::string>& authorization, const std::string& job_id,
                     std::string_view body);
    // GET /v1/agent/ping?agent_id=ID: authenticated like lease, changes no
    // state; 200 {"agent_id", "server_time"} (Unix seconds) for health probes.
    // agent_id is the query parameter when it occurs exactly once, else nullopt.
    ApiResponse ping(const std::optional<std::string>& authorization,
                     const std::optional<std::string>& agent_id);
    // GET /healthz
    ApiResponse healthz() const;

    // The OAuth-shaped error answer for code (status from wire::http_status).
    // Internal failures are answered generically; their details go to detail.
    static ApiResponse error(const std::string& code, const std::string& description);

  private:
    struct Caller {
        identity::Principal principal;
    };
    // Verifies "Authorization: Bearer ..." and that the app still exists and
    // is not revoked (AppRegistry::is_active, one indexed lookup per request).
    std::expected<Caller, ApiResponse> authenticate(
        const std::optional<std::string>& authorization);
    // The start of every report about a leased job (complete, heartbeat,
    // fail): the authenticated caller, the JSON object body, its lease_id and
    // agent_id. Errors already name the caller's client id. Defined in api.cpp.
    struct LeasedJobReport;
    std::expected<LeasedJobReport, ApiResponse> leased_job_report(
        const std::optional<std::string>& authorization, std::string_view body);

    Services s_;
};

// Splits "application/x-www-form-urlencoded" text. nullopt on bad escapes.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view body);
// Decodes one form-url-encoded component ('+' is a space). nullopt on bad escapes.
std::optional<std::string> form_url_decode(std::string_view text);

}  // namespace sa::hub::server
