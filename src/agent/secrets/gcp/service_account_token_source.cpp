#include "agent/secrets/gcp/service_account_token_source.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "agent/auth/jwt_assertion.h"
#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"

namespace sa::agent::secrets::gcp {
namespace {

// What the token exchange needs of the key JSON; private_key stays a
// SecretValue, the rest is not secret.
struct ServiceAccountKey {
    std::string client_email;
    std::string private_key_id;
    std::string token_uri;
    SecretValue private_key;
};

Result<ServiceAccountKey> parse_key(const SecretValue& content, const std::string& where) {
    nlohmann::json doc = nlohmann::json::parse(content.reveal(), nullptr, false);
    const auto invalid = [&](const std::string& what) -> Result<ServiceAccountKey> {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument, where + ": " + what);
    };
    if (!doc.is_object()) return invalid("the key is not a JSON object");
    const auto text = [&](const char* field) -> std::optional<std::string> {
        const auto it = doc.find(field);
        if (it == doc.end() || !it->is_string()) return std::nullopt;
        return it->get<std::string>();
    };
    if (text("type") != "service_account") {
        return invalid("the key's \"type\" is not \"service_account\"");
    }
    ServiceAccountKey key;
    auto email = text("client_email");
    if (!email || email->empty()) return invalid("the key has no \"client_email\"");
    key.client_email = std::move(*email);
    key.private_key_id = text("private_key_id").value_or("");
    key.token_uri = text("token_uri").value_or(kDefaultTokenUri);
    if (key.token_uri.empty()) key.token_uri = kDefaultTokenUri;
    const auto pk = doc.find("private_key");
    if (pk == doc.end() || !pk->is_string() || pk->get_ref<const std::string&>().empty()) {
        return invalid("the key has no \"private_key\"");
    }
    key.private_key = SecretValue::copy_of(pk->get_ref<const std::string&>());
    wipe_json(doc);
    return key;
}

// "invalid_grant: description" from an OAuth error body; the kind from the
// error code (RFC 6749 section 5.2).
Error oauth_error(const std::string& where, const egress::HttpResponse& response) {
    const auto doc = nlohmann::json::parse(response.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) {
        return http_store_error(where, response.status, error_detail(response.body));
    }
    const std::string code = doc["error"].get<std::string>();
    std::string detail = code;
    if (doc.contains("error_description") && doc["error_description"].is_string()) {
        detail += ": " + doc["error_description"].get<std::string>();
    }
    Error out = http_store_error(where, response.status, error_detail(detail));
    if (code == "invalid_grant" || code == "invalid_client" || code == "unauthorized_client" ||
        code == "access_denied") {
        out.code = ErrorCode::permission_denied;
    } else if (response.status == 400) {
        out.code = ErrorCode::invalid_argument;
    }
    return out;
}

}  // namespace

Result<std::unique_ptr<ServiceAccountTokenSource>> ServiceAccountTokenSource::create(
    const GcpAuthSettings& settings, std::chrono::milliseconds timeout,
    std::unique_ptr<egress::Transport> transport, CredentialReader read_credential,
    const auth::Clock& clock) {
    if (settings.key.store.empty() || settings.key.path.empty()) {
        return fail(ErrorCode::invalid_argument,
                    "auth.key must reference the service account key JSON (STORE/PATH[#KEY])");
    }
    if (settings.scope.empty()) {
        return fail(ErrorCode::invalid_argument, "auth.scope must not be empty");
    }
    if (!transport || !read_credential) {
        return fail(ErrorCode::invalid_argument,
                    "service account token source needs a transport and a credential reader");
    }
    return std::unique_ptr<ServiceAccountTokenSource>(
        new ServiceAccountTokenSource(settings.key, settings.scope, timeout, std::move(transport),
                                      std::move(read_credential), clock));
}

ServiceAccountTokenSource::ServiceAccountTokenSource(SecretRef key, std::string scope,
                                                     std::chrono::milliseconds timeout,
                                                     std::unique_ptr<egress::Transport> transport,
                                                     CredentialReader read_credential,
                                                     const auth::Clock& clock)
    : RefreshingTokenSource(clock),
      key_(std::move(key)),
      scope_(std::move(scope)),
      where_("gcp service account key " + key_.to_string()),
      timeout_(timeout),
      transport_(std::move(transport)),
      read_credential_(std::move(read_credential)) {}

Result<AccessToken> ServiceAccountTokenSource::fetch() {
    std::string token_uri;
    std::string assertion;
    {
        // Just in time: the key lives only until the assertion is signed.
        auto content = read_credential_(key_);
        if (!content) {
            return fail(content.error().code,
                        where_ + ": cannot read the key: " + content.error().message);
        }
        auto key = parse_key(*content, where_);
        if (!key) return std::unexpected(key.error());
        const int64_t now = clock().now_seconds();
        const nlohmann::json claims = {{"iss", key->client_email},
                                       {"scope", scope_},
                                       {"aud", key->token_uri},
                                       {"iat", now},
                                       {"exp", now + kAssertionLifetimeSeconds}};
        auto signed_jwt = auth::sign_jwt(claims, key->private_key, key->private_key_id);
        if (!signed_jwt) {
            return fail(signed_jwt.error().code,
                        where_ + ": cannot sign the assertion: " + signed_jwt.error().message);
        }
        assertion = std::move(*signed_jwt);
        token_uri = std::move(key->token_uri);
    }  // the key JSON and the private key are wiped here

    // The assertion is a bearer credential for an hour: wiped after use.
    // base64url and '.' need no form encoding.
    std::string body =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + assertion;
    wipe(assertion);
    egress::HttpRequest request;
    request.method = "POST";
    request.url = token_uri;
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                       {"Accept", "application/json"}};
    request.body = body;
    request.timeout = timeout_;
    auto response = transport_->send(request);
    wipe(body);
    const std::string where = where_ + " at " + token_uri;
    if (!response) return std::unexpected(transport_store_error(where, response.error()));
    if (response->status != 200) {
        Error error = oauth_error(where, *response);
        // A token endpoint that does not exist is configuration, not a
        // missing secret.
        if (error.code == ErrorCode::not_found) error.code = ErrorCode::invalid_argument;
        return std::unexpected(std::move(error));
    }
    return parse_token_answer(response->body, where);
}

}  // namespace sa::agent::secrets::gcp
