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

// What a private_key_jwt client assertion's "aud" may name (RFC 7523
// section 3: the authorization server; its token endpoint URL "MAY be used").
// Accepted: the hub's issuer (protocol::kIssuer, "agent-hub") or a token
// endpoint URL of this hub. With urls set, only those exact URLs; with urls
// empty (the hub does not know the names agents reach it by), any
// "https://AUTHORITY[/PREFIX]/oauth2/token" without query or fragment. The
// secure-agent TokenClient sends the URL it posts to, hub.url +
// "/oauth2/token". An assertion for another server is still refused by its
// iss/sub (the hub's random client id) and its signature.
struct TokenEndpointOptions {
    std::vector<std::string> urls;
};

// True when aud names this hub under options (see TokenEndpointOptions).
bool is_hub_audience(std::string_view aud, const TokenEndpointOptions& options);

class Api final {
  public:
    explicit Api(Services services, TokenEndpointOptions token_endpoint = {})
        : s_(services), token_endpoint_(std::move(token_endpoint)) {}

    // POST /oauth2/token (client_credentials). Client authentication, one
    // method per request (else 400 invalid_request): client_secret_basic,
    // client_secret_post, or private_key_jwt (client_assertion_type
    // urn:ietf:params:oauth:client-assertion-type:jwt-bearer and
    // client_assertion, client_id optional; AppRegistry::authenticate_assertion
    // says what is checked). Every authentication failure is the same 401
    // invalid_client, whatever the reason (the reason goes to log detail).
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
    TokenEndpointOptions token_endpoint_;
};

// Splits "application/x-www-form-urlencoded" text. nullopt on bad escapes.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view body);
// Decodes one form-url-encoded component ('+' is a space). nullopt on bad escapes.
std::optional<std::string> form_url_decode(std::string_view text);

}  // namespace sa::hub::server
