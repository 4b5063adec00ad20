#include "agent/secrets/gcp/gcp_secret_store.h"

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

#include "agent/secrets/gcp/crc32c.h"
#include "agent/secrets/gcp/metadata_token_source.h"
#include "agent/secrets/gcp/service_account_token_source.h"
#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"
#include "common/crypto/encoding.h"

namespace sa::agent::secrets::gcp {
namespace {

constexpr int64_t kMaxTimeoutSeconds = 300;

bool is_id(std::string_view text, size_t max_length) {
    if (text.empty() || text.size() > max_length) return false;
    for (unsigned char c : text) {
        if (!std::isalnum(c) && c != '-' && c != '_') return false;
    }
    return true;
}

// The secret and version a reference PATH names.
struct VersionName {
    std::string secret;
    std::string version;
};

std::optional<VersionName> parse_path(std::string_view path) {
    VersionName out;
    const size_t at = path.find('@');
    out.secret = std::string(path.substr(0, at));
    out.version = at == std::string_view::npos ? "latest" : std::string(path.substr(at + 1));
    if (!is_id(out.secret, 255) || !is_id(out.version, 255)) return std::nullopt;
    return out;
}

// The kind a caller acts on for one of Google's canonical error codes
// (google.rpc.Code, the "status" of an error body); nullopt for an unknown
// one (the HTTP status decides then).
std::optional<ErrorCode> kind_of(std::string_view status) {
    if (status == "NOT_FOUND") return ErrorCode::not_found;
    // Secret Manager answers FAILED_PRECONDITION (HTTP 400) when the version
    // exists but is DISABLED or DESTROYED ("Secret Version [...] is in
    // DISABLED state."). The value cannot be read and a retry will not change
    // that; the fix is the same as for a missing version (point the
    // reference at an enabled version, or re-enable it), so not_found.
    if (status == "FAILED_PRECONDITION") return ErrorCode::not_found;
    if (status == "PERMISSION_DENIED" || status == "UNAUTHENTICATED") {
        return ErrorCode::permission_denied;
    }
    if (status == "RESOURCE_EXHAUSTED" || status == "UNAVAILABLE" || status == "INTERNAL" ||
        status == "DEADLINE_EXCEEDED" || status == "ABORTED" || status == "UNKNOWN" ||
        status == "CANCELLED") {
        return ErrorCode::unavailable;
    }
    if (!status.empty()) return ErrorCode::invalid_argument;
    return std::nullopt;
}

// The error for a non-200 answer: "WHERE: HTTP 404: NOT_FOUND: message"
// from Google's {"error":{"code","message","status"}}, or the HTTP status
// alone (with an excerpt of a non-JSON body).
Error answer_error(std::string_view where, const egress::HttpResponse& response) {
    const auto doc = nlohmann::json::parse(response.body, nullptr, false);
    const nlohmann::json* error = nullptr;
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
        error = &doc["error"];
    }
    if (error == nullptr) {
        return http_store_error(where, response.status, error_detail(response.body));
    }
    const auto text = [&](const char* field) -> std::string {
        const auto it = error->find(field);
        return it != error->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string status = text("status");
    const std::string message = text("message");
    std::string detail = status;
    if (!message.empty()) detail += (detail.empty() ? "" : ": ") + message;
    Error out = http_store_error(where, response.status, error_detail(detail));
    if (const auto kind = kind_of(status)) out.code = *kind;
    return out;
}

// dataCrc32c is an int64, which proto3 JSON writes as a decimal string (a
// number is accepted too). nullopt: malformed.
std::optional<uint32_t> parse_crc(const nlohmann::json& field) {
    if (field.is_number_unsigned()) {
        const auto v = field.get<uint64_t>();
        if (v > 0xFFFFFFFFu) return std::nullopt;
        return static_cast<uint32_t>(v);
    }
    if (!field.is_string()) return std::nullopt;
    const std::string& text = field.get_ref<const std::string&>();
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v > 0xFFFFFFFFu) {
        return std::nullopt;
    }
    return static_cast<uint32_t>(v);
}

}  // namespace

Result<std::unique_ptr<GcpSecretManagerStore>> GcpSecretManagerStore::create(
    std::string name, GcpSecretManagerSettings settings,
    std::unique_ptr<egress::Transport> transport, std::unique_ptr<auth::TokenSource> tokens) {
    const std::string prefix = "secret store \"" + name + "\": ";
    if (settings.project.empty() ||
        settings.project.find_first_of("/?#@ \t\r\n") != std::string::npos) {
        return fail(ErrorCode::invalid_argument,
                    prefix + "project must be the GCP project id or number");
    }
    while (!settings.endpoint.empty() && settings.endpoint.back() == '/') {
        settings.endpoint.pop_back();
    }
    if (!settings.endpoint.starts_with("https://") || settings.endpoint.size() <= 8 ||
        settings.endpoint.find_first_of("?#", 8) != std::string::npos) {
        return fail(ErrorCode::invalid_argument,
                    prefix + "endpoint must be an https://HOST[:PORT] URL without query");
    }
    if (settings.timeout_seconds < 1 || settings.timeout_seconds > kMaxTimeoutSeconds) {
        return fail(ErrorCode::invalid_argument, prefix + "timeout_seconds must be between 1 and " +
                                                     std::to_string(kMaxTimeoutSeconds));
    }
    if (!transport || !tokens) {
        return fail(ErrorCode::invalid_argument, prefix + "needs a transport and a token source");
    }
    return std::unique_ptr<GcpSecretManagerStore>(new GcpSecretManagerStore(
        std::move(name), std::move(settings), std::move(transport), std::move(tokens)));
}

GcpSecretManagerStore::GcpSecretManagerStore(std::string name, GcpSecretManagerSettings settings,
                                             std::unique_ptr<egress::Transport> transport,
                                             std::unique_ptr<auth::TokenSource> tokens)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      transport_(std::move(transport)),
      tokens_(std::move(tokens)) {}

Result<SecretValue> GcpSecretManagerStore::read(const SecretRef& ref) {
    const std::string where = store_where(name_, ref.path);
    const auto name = parse_path(ref.path);
    if (!name) {
        return fail(ErrorCode::invalid_argument,
                    where + ": path must be SECRET or SECRET@VERSION (letters, digits, - and _)");
    }
    egress::HttpRequest request;
    request.method = "GET";
    request.url = settings_.endpoint + "/v1/projects/" + crypto::percent_encode(settings_.project) +
                  "/secrets/" + name->secret + "/versions/" + name->version + ":access";
    request.timeout = std::chrono::seconds(settings_.timeout_seconds);

    std::lock_guard lock(mutex_);
    std::optional<egress::HttpResponse> response;
    // Two rounds at most: a 401 means the cached token was revoked or expired
    // early, so it is dropped and the request sent once with a new one.
    for (int round = 0; round < 2; ++round) {
        auto token = tokens_->access_token();
        if (!token) {
            Error error = token.error();
            if (error.code == ErrorCode::unauthenticated) error.code = ErrorCode::permission_denied;
            return fail(error.code, where + ": no access token: " + error.message);
        }
        request.authorization = egress::Authorization::bearer(*token);
        auto sent = transport_->send(request);
        request.authorization.reset();
        if (!sent) return std::unexpected(transport_store_error(where, sent.error()));
        response = std::move(*sent);
        if (response->status != 401) break;
        tokens_->invalidate();
    }
    if (response->status != 200) return std::unexpected(answer_error(where, *response));

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    wipe(response->body);
    const auto malformed = [&](const std::string& what) -> Result<SecretValue> {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument, where + ": malformed answer: " + what);
    };
    if (!doc.is_object() || !doc.contains("payload") || !doc["payload"].is_object()) {
        return malformed("no payload object");
    }
    const nlohmann::json& payload = doc["payload"];
    if (!payload.contains("data") || !payload["data"].is_string()) {
        return malformed("no payload.data string");
    }
    std::optional<uint32_t> expected_crc;
    if (payload.contains("dataCrc32c")) {
        expected_crc = parse_crc(payload["dataCrc32c"]);
        if (!expected_crc) return malformed("payload.dataCrc32c is not a 32-bit decimal");
    }
    // bytes fields are standard base64 in proto3 JSON; the URL-safe alphabet
    // is accepted too, as the proto3 JSON parsers do.
    const std::string& data = payload["data"].get_ref<const std::string&>();
    std::optional<std::string> decoded = crypto::base64_decode(data);
    if (!decoded) {
        std::string unpadded = data.substr(0, data.find_last_not_of('=') + 1);
        decoded = crypto::base64url_decode(unpadded);
        wipe(unpadded);
    }
    if (!decoded) return malformed("payload.data is not base64");
    wipe_json(doc);
    if (expected_crc && crc32c(*decoded) != *expected_crc) {
        wipe(*decoded);
        return fail(ErrorCode::integrity,
                    where + ": payload does not match its dataCrc32c (damaged in transit)");
    }
    return select_secret(std::move(*decoded), ref, where);
}

Result<std::unique_ptr<auth::TokenSource>> make_gcp_token_source(
    const GcpSecretManagerSettings& settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader read_credential, const auth::Clock& clock) {
    const std::chrono::milliseconds timeout = std::chrono::seconds(settings.timeout_seconds);
    if (settings.auth.method == "metadata") {
        auto source =
            MetadataTokenSource::create(settings.auth, timeout, std::move(transport), clock);
        if (!source) return std::unexpected(source.error());
        return std::unique_ptr<auth::TokenSource>(std::move(*source));
    }
    if (settings.auth.method == "service_account_key") {
        auto source = ServiceAccountTokenSource::create(
            settings.auth, timeout, std::move(transport), std::move(read_credential), clock);
        if (!source) return std::unexpected(source.error());
        return std::unique_ptr<auth::TokenSource>(std::move(*source));
    }
    return fail(ErrorCode::invalid_argument,
                "auth.method must be \"metadata\" or \"service_account_key\"");
}

}  // namespace sa::agent::secrets::gcp
