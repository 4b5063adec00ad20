#include "hub/server/api.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/crypto/encoding.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"
#include "hub/wire/names.h"
#include "hub/wire/wire_error.h"

namespace sa::hub::server {

// lease_id and agent_id, which every report about a leased job carries.
struct LeaseReport {
    std::string lease_id;
    std::string agent_id;
};

namespace {

using json = nlohmann::json;
namespace code = wire::code;

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiResponse json_response(int status, const json& body) {
    ApiResponse r;
    r.status = status;
    r.body = dump(body);
    return r;
}

bool starts_with_ci(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i) {
        char a = text[i];
        char b = prefix[i];
        if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
        if (a != b) return false;
    }
    return true;
}

// The credentials after "Scheme " in an Authorization header, or nullopt.
std::optional<std::string_view> credentials(const std::optional<std::string>& header,
                                            std::string_view scheme) {
    if (!header) return std::nullopt;
    std::string_view v = *header;
    if (!starts_with_ci(v, scheme) || v.size() <= scheme.size() || v[scheme.size()] != ' ') {
        return std::nullopt;
    }
    v.remove_prefix(scheme.size());
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    return v;
}

std::expected<json, ApiResponse> parse_object(std::string_view body) {
    if (body.size() > kMaxJsonBody) {
        return std::unexpected(Api::error(
            code::kTooLarge, "request body exceeds " + std::to_string(kMaxJsonBody) + " bytes"));
    }
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) {
        return std::unexpected(Api::error(code::kInvalidRequest, "request body is not valid JSON"));
    }
    if (!j.is_object()) {
        return std::unexpected(
            Api::error(code::kInvalidRequest, "request body must be a JSON object"));
    }
    return j;
}

std::expected<std::string, ApiResponse> required_string(const json& o, const char* name,
                                                        size_t max_bytes) {
    auto it = o.find(name);
    if (it == o.end() || !it->is_string()) {
        return std::unexpected(Api::error(code::kInvalidRequest,
                                          std::string(name) + " is required and must be a string"));
    }
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > max_bytes) {
        return std::unexpected(
            Api::error(code::kInvalidRequest,
                       std::string(name) + " must be 1.." + std::to_string(max_bytes) + " bytes"));
    }
    return s;
}

std::expected<std::optional<int64_t>, ApiResponse> optional_integer(const json& o,
                                                                    const char* name) {
    auto it = o.find(name);
    if (it == o.end() || it->is_null()) return std::optional<int64_t>();
    if (!it->is_number_integer() ||
        (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
        return std::unexpected(
            Api::error(code::kInvalidRequest, std::string(name) + " must be an integer"));
    }
    return std::optional<int64_t>(it->get<int64_t>());
}

std::expected<std::string, ApiResponse> agent_id_of(const json& o) {
    auto id = required_string(o, "agent_id", wire::kMaxAgentId);
    if (!id) return id;
    if (!wire::is_valid_agent_id(*id)) {
        return std::unexpected(
            Api::error(code::kInvalidRequest, "agent_id must be printable ASCII without spaces"));
    }
    return id;
}

// lease_id and agent_id, which every report about a leased job carries.
std::expected<LeaseReport, ApiResponse> lease_report_of(const json& req) {
    auto lease_id = required_string(req, "lease_id", 128);
    if (!lease_id) return std::unexpected(lease_id.error());
    auto agent_id = agent_id_of(req);
    if (!agent_id) return std::unexpected(agent_id.error());
    return LeaseReport{*lease_id, *agent_id};
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// RFC 7523 section 2.2.
constexpr const char* kJwtBearerAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

ApiResponse invalid_client() {
    ApiResponse r = json_response(401, json{{"error", code::kInvalidClient}});
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"agent-hub\"");
    r.detail = code::kInvalidClient;
    return r;
}

}  // namespace

std::optional<std::string> form_url_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            int hi = hex_value(text[i + 1]);
            int lo = hex_value(text[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_form(std::string_view body) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!body.empty()) {
        size_t amp = body.find('&');
        std::string_view part = body.substr(0, amp);
        body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
        if (part.empty()) continue;
        size_t eq = part.find('=');
        auto key = form_url_decode(part.substr(0, eq));
        auto value = form_url_decode(eq == std::string_view::npos ? std::string_view()
                                                                  : part.substr(eq + 1));
        if (!key || !value) return std::nullopt;
        out.emplace_back(std::move(*key), std::move(*value));
    }
    return out;
}

ApiResponse Api::error(const std::string& c, const std::string& description) {
    ApiResponse r;
    r.status = wire::http_status(c);
    if (c == code::kServerError) {
        r.body = dump(json{{"error", c}, {"error_description", "internal error; see the hub log"}});
    } else {
        r.body = dump(json{{"error", c}, {"error_description", description}});
    }
    if (c == code::kInvalidToken) {
        r.headers.emplace_back("WWW-Authenticate",
                               "Bearer realm=\"agent-hub\", error=\"invalid_token\"");
    }
    r.detail = c + ": " + description;
    return r;
}

ApiResponse Api::healthz() const {
    ApiResponse r;
    r.status = 200;
    r.body = "ok";
    r.content_type = "text/plain";
    return r;
}

std::expected<Api::Caller, ApiResponse> Api::authenticate(
    const std::optional<std::string>& authorization) {
    auto token = credentials(authorization, "Bearer");
    if (!token) {
        return std::unexpected(error(code::kInvalidToken, "a Bearer access token is required"));
    }
    auto principal = s_.tokens.verify(*token);
    if (!principal) {
        return std::unexpected(
            error(code::kInvalidToken, principal.error().code == ErrorCode::expired
                                           ? "the access token has expired"
                                           : "the access token is not valid"));
    }
    auto active = s_.apps.is_active(principal->app, principal->client_id);
    if (!active) return std::unexpected(error(code::kServerError, active.error().describe()));
    if (!*active) {
        return std::unexpected(error(
            code::kInvalidToken, "the app of this access token was revoked or no longer exists"));
    }
    return Caller{std::move(*principal)};
}

bool is_hub_audience(std::string_view aud, const TokenEndpointOptions& options) {
    if (aud == protocol::kIssuer) return true;
    if (!options.urls.empty()) {
        return std::find(options.urls.begin(), options.urls.end(), aud) != options.urls.end();
    }
    constexpr std::string_view kScheme = "https://";
    const std::string_view path = protocol::kTokenPath;
    if (!aud.starts_with(kScheme) || !aud.ends_with(path)) return false;
    std::string_view rest = aud.substr(kScheme.size(), aud.size() - kScheme.size() - path.size());
    const std::string_view authority = rest.substr(0, rest.find('/'));
    return !authority.empty() && authority.find('@') == std::string_view::npos &&
           rest.find_first_of("?#") == std::string_view::npos;
}

ApiResponse Api::token(const std::optional<std::string>& authorization, std::string_view body) {
    ApiResponse r;
    const auto issue = [&](const identity::App& app, const char* method) {
        auto issued = s_.tokens.issue(app);
        ApiResponse ok = json_response(200, json{{"access_token", issued.access_token},
                                                 {"token_type", "Bearer"},
                                                 {"expires_in", issued.expires_in}});
        ok.client_id = app.client_id;
        ok.detail =
            "token issued for app " + app.name + " via " + method + " (jti " + issued.jti + ")";
        return ok;
    };
    if (body.size() > kMaxFormBody) {
        r = error(code::kTooLarge,
                  "request body exceeds " + std::to_string(kMaxFormBody) + " bytes");
    } else if (auto form = parse_form(body); !form) {
        r = error(code::kInvalidRequest, "the body is not valid form-url-encoded data");
    } else {
        std::optional<std::string> grant;
        int grants = 0;
        // client_secret_post (RFC 6749 section 2.3.1): the credentials as
        // form parameters; private_key_jwt (RFC 7523 section 2.2): an
        // assertion and its type. Like every token request parameter, at
        // most once.
        std::optional<std::string> post_id;
        std::optional<std::string> post_secret;
        std::optional<std::string> assertion_type;
        std::optional<std::string> assertion;
        bool repeated = false;
        for (const auto& [k, v] : *form) {
            std::optional<std::string>* slot = nullptr;
            if (k == "grant_type") {
                grant = v;
                ++grants;
            } else if (k == "client_id") {
                slot = &post_id;
            } else if (k == "client_secret") {
                slot = &post_secret;
            } else if (k == "client_assertion_type") {
                slot = &assertion_type;
            } else if (k == "client_assertion") {
                slot = &assertion;
            }
            if (slot != nullptr) {
                if (*slot) repeated = true;
                *slot = v;
            }
        }
        const bool uses_assertion = assertion_type || assertion;
        if (!grant || grants != 1) {
            r = error(code::kInvalidRequest, "exactly one grant_type is required");
        } else if (repeated) {
            r = error(code::kInvalidRequest,
                      "client_id, client_secret, client_assertion_type and client_assertion may "
                      "occur only once");
        } else if (uses_assertion && (authorization || post_secret)) {
            r = error(code::kInvalidRequest,
                      "use one client authentication method: a client assertion, HTTP Basic "
                      "authentication or a client secret in the body");
        } else if (authorization && (post_id || post_secret)) {
            // Section 2.3: one authentication method per request.
            r = error(code::kInvalidRequest,
                      "use either HTTP Basic authentication or client_id and client_secret in "
                      "the body, not both");
        } else if (*grant != "client_credentials") {
            r = error(code::kUnsupportedGrantType, "only client_credentials is supported");
        } else if (uses_assertion) {
            if (!assertion_type || !assertion) {
                r = error(code::kInvalidRequest,
                          "client_assertion_type and client_assertion go together");
            } else if (*assertion_type != kJwtBearerAssertionType) {
                r = error(code::kInvalidRequest,
                          std::string("client_assertion_type must be ") + kJwtBearerAssertionType);
            } else {
                const identity::AssertionRules rules{
                    .audience_ok =
                        [this](std::string_view aud) {
                            return is_hub_audience(aud, token_endpoint_);
                        },
                };
                std::optional<std::string_view> id;
                if (post_id) id = *post_id;
                auto app = s_.apps.authenticate_assertion(*assertion, id, rules);
                if (!app && app.error().code == ErrorCode::unauthenticated) {
                    // Same answer for every reason; the reason is for the log.
                    r = invalid_client();
                    r.detail += ": private_key_jwt: " + app.error().message;
                } else if (!app) {
                    r = error(code::kServerError, app.error().describe());
                } else {
                    r = issue(*app, "private_key_jwt");
                }
            }
        } else {
            std::optional<std::string> id;
            std::optional<std::string> secret;
            const char* method = authorization ? "client_secret_basic" : "client_secret_post";
            const bool none = !authorization && !post_id && !post_secret;
            if (authorization) {
                // client_secret_basic: base64(urlencode(id) ":" urlencode(secret)).
                if (auto basic = credentials(authorization, "Basic")) {
                    if (auto decoded = crypto::base64_decode(*basic)) {
                        size_t colon = decoded->find(':');
                        if (colon != std::string::npos) {
                            id = form_url_decode(std::string_view(*decoded).substr(0, colon));
                            secret = form_url_decode(std::string_view(*decoded).substr(colon + 1));
                        }
                    }
                }
            } else if (post_id && post_secret) {
                id = std::move(post_id);
                secret = std::move(post_secret);
            }
            // Missing, partial or oversized credentials get the same answer
            // as a wrong secret.
            if (!id || !secret || id->empty() || id->size() > 256 || secret->size() > 1024) {
                r = invalid_client();
                r.detail +=
                    none ? std::string(": no client credentials") : std::string(": ") + method;
            } else if (auto app = s_.apps.authenticate(*id, *secret); !app) {
                if (app.error().code == ErrorCode::unauthenticated) {
                    r = invalid_client();
                    r.detail += std::string(": ") + method;
                } else {
                    r = error(code::kServerError, app.error().describe());
                }
            } else {
                r = issue(*app, method);
            }
        }
    }
    // RFC 6749 section 5.1: token responses are never cached.
    r.headers.emplace_back("Cache-Control", "no-store");
    r.headers.emplace_back("Pragma", "no-cache");
    return r;
}

ApiResponse Api::lease(const std::optional<std::string>& authorization, std::string_view body) {
    auto caller = authenticate(authorization);
    if (!caller) return caller.error();
    const auto& who = caller->principal;
    auto finish = [&](ApiResponse r) {
        r.client_id = who.client_id;
        return r;
    };
    auto req = parse_object(body);
    if (!req) return finish(req.error());
    auto agent_id = agent_id_of(*req);
    if (!agent_id) return finish(agent_id.error());
    auto wait = optional_integer(*req, "wait_seconds");
    if (!wait) return finish(wait.error());
    int64_t seconds = wait->value_or(protocol::kDefaultWaitSeconds);
    if (seconds < 0 || seconds > protocol::kMaxWaitSeconds) {
        return finish(error(code::kInvalidRequest, "wait_seconds must be 0.." +
                                                       std::to_string(protocol::kMaxWaitSeconds)));
    }
    auto lease = s_.dispatcher.lease(who.app, *agent_id, std::chrono::seconds(seconds));
    if (!lease && lease.error().code == ErrorCode::permission_denied) {
        // Revoked while the long poll waited: the token is dead from now on.
        return finish(error(code::kInvalidToken, "the app of this access token was revoked"));
    }
    if (!lease) return finish(error(code::kServerError, lease.error().describe()));
    if (!*lease) {
        ApiResponse r;
        r.status = 204;
        r.content_type.clear();
        return finish(std::move(r));
    }
    const jobs::Lease& l = **lease;
    ApiResponse r = json_response(200, json{{"lease_id", l.lease_id},
                                            {"job_id", l.job_id},
                                            {"lease_expires_at", l.lease_expires_at},
                                            {"job", l.job}});
    r.detail = "job " + l.job_id + " leased to agent " + *agent_id + " (attempt " +
               std::to_string(l.details.attempts) + ", " + l.details.operation + ", kid " + l.kid +
               ")";
    return finish(std::move(r));
}

ApiResponse Api::ping(const std::optional<std::string>& authorization,
                      const std::optional<std::string>& agent_id) {
    auto caller = authenticate(authorization);
    if (!caller) return caller.error();
    const auto& who = caller->principal;
    auto finish = [&](ApiResponse r) {
        r.client_id = who.client_id;
        return r;
    };
    if (!agent_id || !wire::is_valid_agent_id(*agent_id)) {
        return finish(error(code::kInvalidRequest,
                            "the agent_id query parameter is required once: printable ASCII "
                            "without spaces, 1.." +
                                std::to_string(wire::kMaxAgentId) + " bytes"));
    }
    const int64_t now = s_.clock != nullptr ? s_.clock->now_seconds() : util::unix_seconds();
    ApiResponse r = json_response(200, json{{"agent_id", *agent_id}, {"server_time", now}});
    r.detail = "ping from agent " + *agent_id;
    return finish(std::move(r));
}

ApiResponse Api::put_chunk(const std::optional<std::string>& authorization,
                           const std::string& job_id, const std::string& seq,
                           const std::optional<std::string>& lease_id,
                           const std::optional<std::string>& content_digest,
                           std::string_view body) {
    auto caller = authenticate(authorization);
    if (!caller) return caller.error();
    const auto& who = caller->principal;
    auto finish = [&](ApiResponse r) {
        r.client_id = who.client_id;
        return r;
    };
    if (seq.empty() || seq.size() > 9 || seq.find_first_not_of("0123456789") != std::string::npos) {
        return finish(error(code::kInvalidRequest, "chunk seq must be a decimal number"));
    }
    if (!lease_id || lease_id->empty() || lease_id->size() > 128) {
        return finish(error(code::kInvalidRequest,
                            std::string(protocol::kLeaseHeader) + " header is required"));
    }
    std::optional<std::string_view> digest;
    if (content_digest) digest = *content_digest;
    auto receipt = s_.ingest.put_chunk(who.app, job_id, *lease_id, std::stoll(seq), digest, body);
    if (!receipt) return finish(error(receipt.error().code, receipt.error().description));
    ApiResponse r = json_response(
        receipt->created ? 201 : 200,
        json{{"seq", receipt->seq}, {"sha256", receipt->sha256}, {"size", receipt->size}});
    r.detail =
        "job " + job_id + " chunk " + seq + (receipt->created ? " stored" : " already stored");
    return finish(std::move(r));
}

struct Api::LeasedJobReport {
    identity::Principal who;
    json body;
    LeaseReport lease;
    ApiResponse finish(ApiResponse r) const {
        r.client_id = who.client_id;
        return r;
    }
};

std::expected<Api::LeasedJobReport, ApiResponse> Api::leased_job_report(
    const std::optional<std::string>& authorization, std::string_view body) {
    auto caller = authenticate(authorization);
    if (!caller) return std::unexpected(caller.error());
    LeasedJobReport report{caller->principal, {}, {}};
    auto req = parse_object(body);
    if (!req) return std::unexpected(report.finish(req.error()));
    auto lease = lease_report_of(*req);
    if (!lease) return std::unexpected(report.finish(lease.error()));
    report.body = std::move(*req);
    report.lease = std::move(*lease);
    return report;
}

ApiResponse Api::complete(const std::optional<std::string>& authorization,
                          const std::string& job_id, std::string_view body) {
    auto report_in = leased_job_report(authorization, body);
    if (!report_in) return report_in.error();
    const identity::Principal& who = report_in->who;
    const json* req = &report_in->body;
    const LeaseReport* lease = &report_in->lease;
    auto finish = [&](ApiResponse r) { return report_in->finish(std::move(r)); };
    ingest::Completion c;
    c.lease_id = lease->lease_id;
    c.agent_id = lease->agent_id;
    auto started = optional_integer(*req, "started_at_ms");
    if (!started) return finish(started.error());
    c.started_at_ms = *started;
    auto finished = optional_integer(*req, "finished_at_ms");
    if (!finished) return finish(finished.error());
    c.finished_at_ms = *finished;
    auto chunks = req->find("chunks");
    if (chunks == req->end() || !chunks->is_array() || chunks->size() > kMaxCompletionChunks) {
        return finish(error(code::kInvalidRequest, "chunks is required: an array of at most " +
                                                       std::to_string(kMaxCompletionChunks) +
                                                       " {seq, sha256, size}"));
    }
    for (size_t i = 0; i < chunks->size(); ++i) {
        const json& item = (*chunks)[i];
        std::string where = "chunks[" + std::to_string(i) + "]";
        if (!item.is_object())
            return finish(error(code::kInvalidRequest, where + " must be an object"));
        auto seq = optional_integer(item, "seq");
        auto size = optional_integer(item, "size");
        auto sha = required_string(item, "sha256", 128);
        if (!seq || !*seq || **seq < 0 || !size || !*size || **size < 0) {
            return finish(
                error(code::kInvalidRequest, where + " needs non-negative integers seq and size"));
        }
        if (!sha)
            return finish(error(code::kInvalidRequest, where + ".sha256 must be a hex string"));
        c.chunks.push_back(ingest::ChunkRef{**seq, *sha, **size});
    }
    if (auto result = req->find("result"); result != req->end() && !result->is_null()) {
        if (!result->is_object()) {
            return finish(error(code::kInvalidRequest, "result must be a JSON object"));
        }
        c.result = *result;
    }
    if (auto delta = req->find("delta"); delta != req->end() && !delta->is_null()) {
        auto baseline = delta->is_object() ? delta->find("baseline_job_id") : delta->end();
        if (!delta->is_object() || baseline == delta->end() || !baseline->is_string() ||
            !wire::is_valid_job_id(baseline->get_ref<const std::string&>())) {
            return finish(error(code::kInvalidRequest,
                                "delta must be an object {\"baseline_job_id\": ID}, ID printable "
                                "ASCII without spaces, 1.." +
                                    std::to_string(wire::kMaxJobId) + " bytes"));
        }
        c.delta_baseline_job_id = baseline->get<std::string>();
    }
    auto done = s_.ingest.complete(who.app, job_id, c);
    if (!done) return finish(error(done.error().code, done.error().description));
    if (jobs::is_interactive(done->operation)) {
        ApiResponse r =
            json_response(200, json{{"job_id", job_id}, {"status", jobs::status::kSucceeded}});
        r.detail = "job " + job_id + " (" + done->operation + ") succeeded with a result";
        return finish(std::move(r));
    }
    ApiResponse r = json_response(200, json{{"job_id", job_id},
                                            {"status", jobs::status::kSucceeded},
                                            {"tables", done->summary.tables},
                                            {"views", done->summary.views},
                                            {"columns", done->summary.columns}});
    r.detail = "job " + job_id + " succeeded: " + std::to_string(done->summary.tables) +
               " tables, " + std::to_string(done->summary.views) + " views, " +
               std::to_string(done->summary.columns) + " columns" +
               (done->delta ? " (incremental, " + std::to_string(done->removals) + " removals)"
                            : std::string());
    return finish(std::move(r));
}

ApiResponse Api::heartbeat(const std::optional<std::string>& authorization,
                           const std::string& job_id, std::string_view body) {
    auto report_in = leased_job_report(authorization, body);
    if (!report_in) return report_in.error();
    const identity::Principal& who = report_in->who;
    const json* req = &report_in->body;
    const LeaseReport* lease = &report_in->lease;
    auto finish = [&](ApiResponse r) { return report_in->finish(std::move(r)); };
    jobs::HeartbeatReport report{lease->lease_id, lease->agent_id, std::nullopt};
    if (auto p = req->find("progress"); p != req->end() && !p->is_null()) {
        if (!p->is_object())
            return finish(error(code::kInvalidRequest, "progress must be an object"));
        jobs::Progress progress;
        const std::pair<const char*, int64_t*> fields[] = {{"objects", &progress.objects},
                                                           {"bytes", &progress.bytes},
                                                           {"chunks", &progress.chunks}};
        for (const auto& [name, slot] : fields) {
            auto value = optional_integer(*p, name);
            if (!value || !*value || **value < 0) {
                return finish(error(code::kInvalidRequest, std::string("progress.") + name +
                                                               " is required: an integer >= 0"));
            }
            *slot = **value;
        }
        auto phase = required_string(*p, "phase", 32);
        if (!phase || !jobs::is_progress_phase(*phase)) {
            return finish(error(code::kInvalidRequest,
                                "progress.phase is required: starting, extracting, uploading or "
                                "finishing"));
        }
        progress.phase = *phase;
        report.progress = std::move(progress);
    }
    auto beat = s_.queue.heartbeat(who.app, job_id, report);
    if (!beat) return finish(error(beat.error().code, beat.error().description));
    ApiResponse r = json_response(200, json{{"job_id", job_id},
                                            {"lease_expires_at", beat->lease_expires_at_ms / 1000},
                                            {"cancel", beat->cancel}});
    r.detail = "job " + job_id + " heartbeat from agent " + report.agent_id +
               (report.progress ? " (" + report.progress->phase + ", " +
                                      std::to_string(report.progress->objects) + " objects)"
                                : std::string()) +
               (beat->cancel ? ": cancel requested" : "");
    return finish(std::move(r));
}

ApiResponse Api::fail(const std::optional<std::string>& authorization, const std::string& job_id,
                      std::string_view body) {
    auto report_in = leased_job_report(authorization, body);
    if (!report_in) return report_in.error();
    const identity::Principal& who = report_in->who;
    const json* req = &report_in->body;
    const LeaseReport* lease = &report_in->lease;
    auto finish = [&](ApiResponse r) { return report_in->finish(std::move(r)); };
    jobs::FailReport report;
    report.lease_id = lease->lease_id;
    report.agent_id = lease->agent_id;
    auto outcome = required_string(*req, "outcome", 64);
    if (!outcome) return finish(outcome.error());
    report.outcome = *outcome;
    auto reason = required_string(*req, "reason_code", 64);
    if (!reason) return finish(reason.error());
    report.reason_code = *reason;
    if (auto m = req->find("message"); m != req->end() && !m->is_null()) {
        if (!m->is_string())
            return finish(error(code::kInvalidRequest, "message must be a string"));
        report.message = m->get<std::string>();
    }
    auto job = s_.queue.fail(who.app, job_id, report);
    if (!job) return finish(error(job.error().code, job.error().description));
    ApiResponse r = json_response(200, json{{"job_id", job_id}, {"status", job->status}});
    r.detail = "job " + job_id + " " + job->status + ": " + report.reason_code;
    return finish(std::move(r));
}

}  // namespace sa::hub::server
