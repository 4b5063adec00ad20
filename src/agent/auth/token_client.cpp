#include "agent/auth/token_client.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <nlohmann/json.hpp>

#include "agent/auth/client_credentials.h"
#include "agent/auth/jwt_assertion.h"
#include "agent/auth/token_lifetime.h"
#include "agent/secrets/json_wipe.h"
#include "common/crypto/random.h"

namespace sa::agent::auth {
namespace {

constexpr std::string_view kJwtBearerAssertionType =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
// RFC 7523 section 3 asks for a short assertion lifetime; a minute covers
// the request and a modest clock skew.
constexpr int64_t kAssertionLifetimeSeconds = 60;

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

struct OAuthError {
    std::string code;  // "invalid_client", ... or "" when the body is no OAuth error
    std::string text;  // "invalid_client: description" or ""
};

// The error of an OAuth error body (RFC 6749 section 5.2). Only printable
// ASCII of it is kept, and not much: it ends up in logs.
OAuthError oauth_error(const std::string& body) {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) return {};
    OAuthError error;
    error.code = doc["error"].get<std::string>();
    error.text = error.code;
    if (doc.contains("error_description") && doc["error_description"].is_string()) {
        error.text += ": " + doc["error_description"].get<std::string>();
    }
    std::erase_if(error.text, [](char c) { return c < 0x20 || c > 0x7e; });
    error.text = error.text.substr(0, 300);
    return error;
}

// Errors that retrying will not fix: the request or the client's grant is wrong.
std::optional<ErrorCode> refusal_code(std::string_view error) {
    if (error == "invalid_client") return ErrorCode::unauthenticated;
    if (error == "unauthorized_client" || error == "invalid_scope" || error == "invalid_target" ||
        error == "access_denied") {
        return ErrorCode::permission_denied;
    }
    if (error == "invalid_request" || error == "unsupported_grant_type" ||
        error == "invalid_grant") {
        return ErrorCode::invalid_argument;
    }
    return std::nullopt;
}

// expires_in (RFC 6749 section 5.1): a positive integer; some servers send
// it as a string of digits. nullopt when invalid.
std::optional<int64_t> parse_expires_in(const nlohmann::json& value) {
    if (value.is_number_integer()) {
        const auto seconds = value.get<int64_t>();
        return seconds > 0 ? std::optional(seconds) : std::nullopt;
    }
    if (value.is_string()) {
        const auto& text = value.get_ref<const std::string&>();
        if (text.empty() || text.size() > 9) return std::nullopt;
        int64_t seconds = 0;
        for (const char c : text) {
            if (c < '0' || c > '9') return std::nullopt;
            seconds = seconds * 10 + (c - '0');
        }
        return seconds > 0 ? std::optional(seconds) : std::nullopt;
    }
    return std::nullopt;
}

}  // namespace

Result<ClientAuthMethod> parse_client_auth_method(std::string_view name) {
    for (const auto method :
         {ClientAuthMethod::client_secret_basic, ClientAuthMethod::client_secret_post,
          ClientAuthMethod::private_key_jwt}) {
        if (name == to_string(method)) return method;
    }
    return fail(ErrorCode::invalid_argument,
                "unknown client authentication method \"" + std::string(name.substr(0, 40)) +
                    "\" (client_secret_basic, client_secret_post or private_key_jwt)");
}

const char* to_string(ClientAuthMethod method) {
    switch (method) {
        case ClientAuthMethod::client_secret_basic:
            return "client_secret_basic";
        case ClientAuthMethod::client_secret_post:
            return "client_secret_post";
        case ClientAuthMethod::private_key_jwt:
            return "private_key_jwt";
    }
    return "";
}

TokenClient::TokenClient(egress::Transport& transport, secrets::CredentialReader read_credential,
                         Options options, const Clock& clock)
    : transport_(transport),
      read_credential_(std::move(read_credential)),
      options_(std::move(options)),
      clock_(clock) {}

TokenClient::TokenClient(std::unique_ptr<egress::Transport> transport,
                         secrets::CredentialReader read_credential, Options options,
                         const Clock& clock)
    : owned_transport_(std::move(transport)),
      transport_(*owned_transport_),
      read_credential_(std::move(read_credential)),
      options_(std::move(options)),
      clock_(clock) {}

void TokenClient::invalidate() {
    std::lock_guard lock(mutex_);
    token_.reset();
    refresh_at_ = 0;
    expires_at_ = 0;
    // A token request already running may have read the old credential: its
    // token still goes to the callers waiting for it, but is not cached.
    ++epoch_;
}

bool TokenClient::has_token() const {
    std::lock_guard lock(mutex_);
    return token_.has_value();
}

int64_t TokenClient::refresh_at() const {
    std::lock_guard lock(mutex_);
    return refresh_at_;
}

Result<secrets::SecretValue> TokenClient::access_token() {
    const auto outcome = [](const Round& round) -> Result<secrets::SecretValue> {
        if (round.token) return secrets::SecretValue::copy_of(round.token->reveal());
        return std::unexpected(*round.error);
    };

    std::unique_lock lock(mutex_);
    const int64_t now = clock_.now_seconds();
    if (token_ && now < refresh_at_) return secrets::SecretValue::copy_of(token_->reveal());
    if (in_flight_) {
        // Someone else is refreshing: a still-valid token serves meanwhile;
        // without one, wait for that request's outcome rather than send another.
        if (token_ && now < expires_at_) return secrets::SecretValue::copy_of(token_->reveal());
        const auto round = in_flight_;
        round_done_.wait(lock, [&] { return round->done; });
        return outcome(*round);
    }

    const auto round = std::make_shared<Round>();
    in_flight_ = round;
    const uint64_t epoch = epoch_;
    lock.unlock();
    Result<Fetched> fetched = fail(ErrorCode::internal, "token request failed");
    try {
        fetched = fetch();
    } catch (const std::exception& e) {
        // Waiters must always get an outcome: nothing may escape past them.
        fetched = fail(ErrorCode::internal, std::string("token request failed: ") + e.what());
    } catch (...) {
        fetched = fail(ErrorCode::internal, "token request failed: unknown exception");
    }
    lock.lock();

    in_flight_.reset();
    if (fetched) {
        round->token = secrets::SecretValue::copy_of(fetched->token.reveal());
        if (epoch == epoch_) {
            token_ = std::move(fetched->token);
            refresh_at_ = fetched->refresh_at;
            expires_at_ = fetched->expires_at;
        }
    } else if (token_ && clock_.now_seconds() < expires_at_) {
        // An early refresh that failed is not fatal while the current token
        // is still valid: the next call tries again.
        round->token = secrets::SecretValue::copy_of(token_->reveal());
    } else {
        token_.reset();
        refresh_at_ = 0;
        expires_at_ = 0;
        round->error = fetched.error();
    }
    round->done = true;
    round_done_.notify_all();
    return outcome(*round);
}

Result<secrets::SecretValue> TokenClient::request_body(
    std::optional<secrets::SecretValue>& basic) const {
    const bool use_key = options_.auth_method == ClientAuthMethod::private_key_jwt;
    const std::string what = use_key ? "client private key" : "client secret";
    // Just in time: the credential lives only while the request is built.
    auto credential = read_credential_(options_.client_secret);
    if (!credential) {
        return fail(credential.error().code, "cannot read the " + options_.server_name + " " +
                                                 what + ": " + credential.error().message);
    }

    // The assertion is a bearer credential for its lifetime: wiped like a secret.
    std::string assertion;
    if (use_key) {
        const int64_t now = clock_.now_seconds();
        const nlohmann::json claims = {{"iss", options_.client_id},
                                       {"sub", options_.client_id},
                                       {"aud", options_.token_url},
                                       {"jti", crypto::random_token(24)},
                                       {"iat", now},
                                       {"nbf", now},
                                       {"exp", now + kAssertionLifetimeSeconds}};
        auto signed_jwt = sign_jwt(claims, *credential, options_.key_id);
        if (!signed_jwt) {
            return fail(signed_jwt.error().code,
                        "cannot sign the client assertion with the private key at " +
                            options_.client_secret.to_string() + ": " + signed_jwt.error().message);
        }
        assertion = std::move(*signed_jwt);
    }

    // Reserved for the worst case (every byte %XX) so that no reallocation
    // leaves a copy of the secret behind.
    size_t capacity = 256 + 3 * (options_.client_id.size() + options_.scope.size() +
                                 credential->size() + assertion.size());
    for (const auto& [name, value] : options_.extra_form) {
        capacity += 2 + 3 * (name.size() + value.size());
    }
    std::string body;
    body.reserve(capacity);
    body += "grant_type=client_credentials";
    switch (options_.auth_method) {
        case ClientAuthMethod::client_secret_basic:
            basic = basic_credentials(options_.client_id, *credential);
            break;
        case ClientAuthMethod::client_secret_post:
            body += "&client_id=";
            append_form_urlencoded(body, options_.client_id);
            body += "&client_secret=";
            append_form_urlencoded(body, credential->reveal());
            break;
        case ClientAuthMethod::private_key_jwt:
            body += "&client_id=";
            append_form_urlencoded(body, options_.client_id);
            body += "&client_assertion_type=";
            append_form_urlencoded(body, kJwtBearerAssertionType);
            body += "&client_assertion=";
            append_form_urlencoded(body, assertion);
            secrets::wipe(assertion);
            break;
    }
    if (!options_.scope.empty()) {
        body += "&scope=";
        append_form_urlencoded(body, options_.scope);
    }
    for (const auto& [name, value] : options_.extra_form) {
        body += '&';
        append_form_urlencoded(body, name);
        body += '=';
        append_form_urlencoded(body, value);
    }
    return secrets::SecretValue::from(std::move(body));
}

Result<TokenClient::Fetched> TokenClient::fetch() const {
    const std::string& server = options_.server_name;
    std::optional<secrets::SecretValue> basic;
    auto body = request_body(basic);
    if (!body) return std::unexpected(body.error());

    egress::HttpRequest request;
    request.method = "POST";
    request.url = options_.token_url;
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                       {"Accept", "application/json"}};
    request.body = body->reveal();
    request.timeout = options_.timeout;
    if (basic) request.authorization = egress::Authorization::basic(*basic);
    // The lifetime counts from before the request, to stay on the safe side.
    const int64_t requested_at = clock_.now_seconds();
    auto response = transport_.send(request);
    request.body = {};
    request.authorization.reset();
    basic.reset();
    body = secrets::SecretValue();  // wipes the form (secret or assertion)
    if (options_.observer) options_.observer("token", response ? response->status : 0);
    if (!response) {
        return fail(response.error().code, "token request failed: " + response.error().message);
    }

    const auto refused = [&](const std::string& reason) {
        if (options_.on_token) {
            options_.on_token(
                {.fetched = false, .client_id = options_.client_id, .reason = reason});
        }
    };
    if (response->status != 200) {
        const OAuthError error = oauth_error(response->body);
        const std::string detail = error.text.empty() ? "" : " " + error.text;
        const auto code = refusal_code(error.code);
        if (response->status == 401 || code == ErrorCode::unauthenticated) {
            refused(server + " rejected the client credentials (HTTP " +
                    std::to_string(response->status) + ")");
            return fail(
                ErrorCode::unauthenticated,
                server + " rejected client credentials for client_id " + options_.client_id);
        }
        refused("HTTP " + std::to_string(response->status) + detail);
        // 4xx with an OAuth error: retrying will not help. Anything else
        // (5xx, 429, a proxy's page) may pass.
        const bool client_error = response->status >= 400 && response->status < 500 &&
                                  response->status != 408 && response->status != 429;
        return fail(client_error && code ? *code : ErrorCode::unavailable,
                    "token request failed: HTTP " + std::to_string(response->status) + detail);
    }

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    secrets::wipe(response->body);
    const auto invalid = [&](const char* what) {
        secrets::wipe_json(doc);
        refused(std::string("token response ") + what);
        return fail(ErrorCode::unavailable,
                    "token response from the " + server + " " + std::string(what));
    };
    if (!doc.is_object()) return invalid("is not a JSON object");
    if (!doc.contains("access_token") || !doc["access_token"].is_string() ||
        doc["access_token"].get_ref<const std::string&>().empty()) {
        return invalid("has no access_token");
    }
    if (!doc.contains("token_type") || !doc["token_type"].is_string() ||
        !iequals(doc["token_type"].get_ref<const std::string&>(), "Bearer")) {
        return invalid("has a token_type other than Bearer");
    }
    const std::string& access_token = doc["access_token"].get_ref<const std::string&>();
    // The lifetime rule is documented in token_lifetime.h.
    int64_t lifetime = kDefaultLifetimeSeconds;
    if (doc.contains("expires_in")) {
        const auto expires_in = parse_expires_in(doc["expires_in"]);
        if (!expires_in) return invalid("has an expires_in that is not a positive integer");
        lifetime = *expires_in;
    } else {
        std::optional<int64_t> server_now;
        if (const std::string* date = response->header("date")) {
            server_now = parse_imf_fixdate(*date);
        }
        if (auto remaining = jwt_remaining_lifetime(access_token, server_now, requested_at)) {
            if (*remaining <= 0) return invalid("carries an access token that has expired");
            lifetime = *remaining;
        }
    }
    Fetched fetched{.token = secrets::SecretValue::copy_of(access_token)};
    secrets::wipe_json(doc);
    // Refresh early so a token never expires in flight; for very short
    // lifetimes, halfway.
    const int64_t margin = std::min(options_.refresh_margin_seconds, lifetime / 2);
    fetched.refresh_at = requested_at + lifetime - margin;
    fetched.expires_at = requested_at + lifetime;
    if (options_.on_token) {
        options_.on_token(
            {.fetched = true, .client_id = options_.client_id, .expires_in = lifetime});
    }
    return fetched;
}

}  // namespace sa::agent::auth
