#include "agent/control/hub_client.h"

#include <algorithm>
#include <thread>

#include "agent/control/backoff.h"
#include "common/crypto/encoding.h"
#include "common/protocol/content_digest.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"

namespace sa::agent::control {
namespace {

using nlohmann::json;

bool is_retryable(long status) {
    return status == 429 || status >= 500;
}

ErrorCode code_for(long status) {
    switch (status) {
        case 401:
            return ErrorCode::unauthenticated;
        case 403:
            return ErrorCode::permission_denied;
        case 404:
            return ErrorCode::not_found;
        case 409:
            return ErrorCode::conflict;
        default:
            break;
    }
    if (is_retryable(status)) return ErrorCode::unavailable;
    if (status >= 400) return ErrorCode::invalid_argument;
    return ErrorCode::unavailable;  // an unexpected 1xx/2xx/3xx
}

// Reads a required string field of the lease response.
std::optional<std::string> string_field(const json& doc, const char* name) {
    if (!doc.contains(name) || !doc[name].is_string()) return std::nullopt;
    std::string value = doc[name].get<std::string>();
    if (value.empty()) return std::nullopt;
    return value;
}

// Ids travel back in URLs and headers: printable ASCII only, so a bad lease
// response cannot smuggle a header line (CR/LF) into later requests.
bool is_wire_id(std::string_view id) {
    return !id.empty() && id.size() <= 256 &&
           std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Serialises without throwing: invalid UTF-8 (say, in an error message) is
// replaced, not fatal.
std::string dump(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string job_path(const std::string& job_id) {
    return protocol::kJobsPrefix + crypto::percent_encode(job_id);
}

Error hub_error(const std::string& what, const egress::HttpResponse& response) {
    std::string message = what + ": HTTP " + std::to_string(response.status);
    const json doc = json::parse(response.body, nullptr, false);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_string()) {
        message += " " + doc["error"].get<std::string>();
        if (doc.contains("error_description") && doc["error_description"].is_string()) {
            // Bounded: the hub is trusted, but error text lands in logs.
            message += ": " + doc["error_description"].get<std::string>().substr(0, 1000);
        }
    }
    return Error{code_for(response.status), message};
}

HubClient::HubClient(egress::Transport& transport, auth::TokenSource& tokens, Options options)
    : transport_(transport), tokens_(tokens), options_(std::move(options)) {
    if (!options_.sleep) {
        options_.sleep = [](std::chrono::milliseconds delay) {
            std::this_thread::sleep_for(delay);
            return true;
        };
    }
}

Result<egress::HttpResponse> HubClient::call(
    const char* endpoint, const std::string& method, const std::string& path,
    const std::string& body, std::vector<std::pair<std::string, std::string>> headers,
    std::chrono::milliseconds timeout, const std::string& job_id, int max_attempts,
    std::chrono::milliseconds* send_time) {
    egress::HttpRequest request;
    request.method = method;
    request.url = options_.hub_url + path;
    request.job_id = job_id;
    request.headers = std::move(headers);
    request.headers.emplace_back("Accept", "application/json");
    request.body = body;
    request.timeout = timeout;
    // One retry after a 401: the token may have expired early or been
    // revoked; a fresh one (with the client secret re-read) settles it.
    for (int attempt = 0;; ++attempt) {
        auto token = tokens_.access_token();
        if (!token) return std::unexpected(token.error());
        request.authorization = egress::Authorization::bearer(*token);
        const auto sent_at = std::chrono::steady_clock::now();
        auto response = transport_.send(request);
        if (send_time != nullptr) {
            *send_time = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - sent_at);
        }
        if (options_.observer) options_.observer(endpoint, response ? response->status : 0);
        if (!response) {
            return sa::fail(response.error().code,
                            "hub " + method + " " + path + ": " + response.error().message);
        }
        last_retry_after_.reset();
        if (response->status == 429 || response->status == 503) {
            if (const std::string* value = response->header("retry-after")) {
                last_retry_after_ = parse_retry_after(*value, util::unix_seconds());
            }
        }
        if (response->status == 401 && attempt + 1 < max_attempts) {
            tokens_.invalidate();
            continue;
        }
        return response;
    }
}

Result<egress::HttpResponse> HubClient::post_json(const char* endpoint, const std::string& path,
                                                  const json& body, const std::string& job_id) {
    return call(endpoint, "POST", path, dump(body), {{"Content-Type", "application/json"}},
                options_.request_timeout, job_id);
}

Result<std::optional<jobs::LeaseEnvelope>> HubClient::lease(int wait_seconds) {
    const json body{{"agent_id", options_.agent_id}, {"wait_seconds", wait_seconds}};
    auto response =
        call("lease", "POST", protocol::kLeasePath, dump(body),
             {{"Content-Type", "application/json"}}, std::chrono::seconds(wait_seconds + 10));
    if (!response) return std::unexpected(response.error());
    if (response->status == 204) return std::optional<jobs::LeaseEnvelope>();
    if (response->status != 200) {
        return std::unexpected(
            hub_error("hub POST " + std::string(protocol::kLeasePath), *response));
    }
    const json doc = json::parse(response->body, nullptr, false);
    if (!doc.is_object())
        return sa::fail(ErrorCode::invalid_argument, "lease response is not a JSON object");
    jobs::LeaseEnvelope envelope;
    auto lease_id = string_field(doc, "lease_id");
    auto job_id = string_field(doc, "job_id");
    auto job = string_field(doc, "job");
    if (!lease_id || !job_id || !job) {
        return sa::fail(ErrorCode::invalid_argument,
                        "lease response lacks lease_id, job_id or job");
    }
    if (!is_wire_id(*lease_id) || !is_wire_id(*job_id)) {
        return sa::fail(ErrorCode::invalid_argument,
                        "lease response has a lease_id or job_id that is not printable ASCII");
    }
    if (!doc.contains("lease_expires_at") || !doc["lease_expires_at"].is_number_integer()) {
        return sa::fail(ErrorCode::invalid_argument, "lease response lacks lease_expires_at");
    }
    envelope.lease_id = std::move(*lease_id);
    envelope.job_id = std::move(*job_id);
    envelope.job_jws = std::move(*job);
    envelope.lease_expires_at = doc["lease_expires_at"].get<int64_t>();
    return std::optional<jobs::LeaseEnvelope>(std::move(envelope));
}

Result<PingResult> HubClient::ping() {
    const std::string path =
        std::string(protocol::kPingPath) + "?agent_id=" + crypto::percent_encode(options_.agent_id);
    // The round trip of the request alone (with a TLS handshake when the
    // connection is new), not the time it took to get a token.
    std::chrono::milliseconds rtt{0};
    auto response = call("ping", "GET", path, "", {}, options_.request_timeout, {}, 1, &rtt);
    if (!response) return std::unexpected(response.error());
    // No retry, but the token the hub refused is not used again.
    if (response->status == 401) tokens_.invalidate();
    if (response->status != 200) {
        return std::unexpected(hub_error("hub GET " + std::string(protocol::kPingPath), *response));
    }
    const json doc = json::parse(response->body, nullptr, false);
    if (!doc.is_object() || !doc.contains("server_time") ||
        !doc["server_time"].is_number_integer() ||
        (doc["server_time"].is_number_unsigned() &&
         doc["server_time"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
        return sa::fail(ErrorCode::invalid_argument, "ping response lacks an integer server_time");
    }
    return PingResult{doc["server_time"].get<int64_t>(), rtt};
}

Status HubClient::upload_chunk(const std::string& job_id, const std::string& lease_id,
                               const delivery::Chunk& chunk) {
    const std::string path = job_path(job_id) + protocol::kChunksSuffix + std::to_string(chunk.seq);
    std::vector<std::pair<std::string, std::string>> headers{
        {protocol::kLeaseHeader, lease_id},
        {"Content-Type", "application/x-ndjson"},
        {protocol::kDigestHeader, protocol::content_digest_sha256(chunk.body)},
    };
    Backoff backoff(options_.retry_base, options_.retry_cap);
    Error last{ErrorCode::unavailable, "chunk upload not attempted"};
    for (int attempt = 1;; ++attempt) {
        auto response =
            call("chunk", "PUT", path, chunk.body, headers, options_.request_timeout, job_id);
        bool retryable = false;
        if (!response) {
            last = response.error();
            retryable = last.code == ErrorCode::unavailable;
        } else if (response->status == 200 || response->status == 201) {
            return {};
        } else {
            last = hub_error("hub PUT " + path, *response);
            retryable = is_retryable(response->status);
        }
        if (!retryable || attempt >= options_.upload_attempts) return std::unexpected(last);
        auto delay = backoff.next();
        // The hub knows best when to come back, within reason.
        if (last_retry_after_)
            delay =
                std::min<std::chrono::milliseconds>(*last_retry_after_, std::chrono::seconds(60));
        if (!options_.sleep(delay)) return std::unexpected(last);
    }
}

Result<json> HubClient::complete(const std::string& job_id, const Completion& completion) {
    json chunks = json::array();
    for (const auto& info : completion.chunks) {
        chunks.push_back({{"seq", info.seq}, {"sha256", info.sha256_hex}, {"size", info.size}});
    }
    const json base{
        {"lease_id", completion.lease_id},
        {"agent_id", options_.agent_id},
        {"chunks", std::move(chunks)},
        {"summary",
         {{"tables", completion.summary.tables},
          {"views", completion.summary.views},
          {"columns", completion.summary.columns}}},
        {"started_at_ms", completion.started_at_ms},
        {"finished_at_ms", completion.finished_at_ms},
    };
    json body = base;
    if (completion.result) body["result"] = *completion.result;
    if (completion.delta_baseline_job_id) {
        body["delta"] = {{"baseline_job_id", *completion.delta_baseline_job_id}};
    }
    const std::string path = job_path(job_id) + protocol::kCompleteSuffix;
    auto response = post_json("complete", path, body, job_id);
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) return std::unexpected(hub_error("hub POST " + path, *response));
    json doc = json::parse(response->body, nullptr, false);
    if (doc.is_discarded()) doc = json::object();
    return doc;
}

Result<HeartbeatReply> HubClient::heartbeat(const std::string& job_id, const std::string& lease_id,
                                            const Progress& progress) {
    const json body{{"lease_id", lease_id},
                    {"agent_id", options_.agent_id},
                    {"progress",
                     {{"objects", progress.objects},
                      {"bytes", progress.bytes},
                      {"chunks", progress.chunks},
                      {"phase", progress.phase}}}};
    const std::string path = job_path(job_id) + protocol::kHeartbeatSuffix;
    auto response = call("heartbeat", "POST", path, dump(body),
                         {{"Content-Type", "application/json"}}, kHeartbeatTimeout, job_id);
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) {
        Error e = hub_error("hub POST " + path, *response);
        // The only 409 of this endpoint: callers look for the code, so it is
        // named even when the body was lost on the way.
        if (response->status == 409 && e.message.find("lease_lost") == std::string::npos) {
            e.message += " (lease_lost)";
        }
        return std::unexpected(std::move(e));
    }
    const json doc = json::parse(response->body, nullptr, false);
    if (!doc.is_object() || !doc.contains("lease_expires_at") ||
        !doc["lease_expires_at"].is_number_integer() ||
        (doc["lease_expires_at"].is_number_unsigned() &&
         doc["lease_expires_at"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) ||
        !doc.contains("cancel") || !doc["cancel"].is_boolean()) {
        return sa::fail(
            ErrorCode::invalid_argument,
            "heartbeat response lacks an integer lease_expires_at and a boolean cancel");
    }
    return HeartbeatReply{doc["lease_expires_at"].get<int64_t>(), doc["cancel"].get<bool>()};
}

Status HubClient::fail(const std::string& job_id, const std::string& lease_id,
                       const std::string& outcome, const std::string& reason_code,
                       const std::string& message) {
    const json body{{"lease_id", lease_id},
                    {"agent_id", options_.agent_id},
                    {"outcome", outcome},
                    {"reason_code", reason_code},
                    {"message", message.substr(0, 1000)}};
    const std::string path = job_path(job_id) + protocol::kFailSuffix;
    auto response = post_json("fail", path, body, job_id);
    if (!response) return std::unexpected(response.error());
    if (response->status != 200) return std::unexpected(hub_error("hub POST " + path, *response));
    return {};
}

}  // namespace sa::agent::control
