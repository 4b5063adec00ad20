#include "agent/auth/token_client.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "agent/auth/client_credentials.h"
#include "agent/secrets/json_wipe.h"

namespace sa::agent::auth {
namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// "invalid_client: description" from an OAuth error body, or "".
std::string oauth_error(const std::string& body) {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) return "";
    std::string out = doc["error"].get<std::string>();
    if (doc.contains("error_description") && doc["error_description"].is_string()) {
        out += ": " + doc["error_description"].get<std::string>();
    }
    return out.substr(0, 500);
}

}  // namespace

TokenClient::TokenClient(egress::Transport& transport, const secrets::SecretStores& stores,
                         Options options, const Clock& clock)
    : transport_(transport), stores_(stores), options_(std::move(options)), clock_(clock) {}

void TokenClient::invalidate() {
    token_.reset();
    refresh_at_ = 0;
    expires_at_ = 0;
}

Result<const secrets::SecretValue*> TokenClient::access_token() {
    if (token_ && clock_.now_seconds() < refresh_at_) return &*token_;
    if (auto ok = fetch(); !ok) {
        // An early refresh that failed is not fatal while the current token
        // is still valid: the next call tries again.
        if (token_ && clock_.now_seconds() < expires_at_) return &*token_;
        invalidate();
        return std::unexpected(ok.error());
    }
    return &*token_;
}

Status TokenClient::fetch() {
    // Just in time: the secret lives only for the duration of this request.
    std::optional<secrets::SecretValue> basic;
    {
        auto secret = stores_.read(options_.client_secret);
        if (!secret) {
            return fail(secret.error().code,
                        "cannot read the hub client secret: " + secret.error().message);
        }
        if (options_.on_secret_read) {
            options_.on_secret_read(options_.client_secret, "hub client secret");
        }
        basic = basic_credentials(options_.client_id, *secret);
    }  // the client secret is wiped here

    egress::HttpRequest request;
    request.method = "POST";
    request.url = options_.token_url;
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                       {"Accept", "application/json"}};
    request.body = "grant_type=client_credentials";
    request.timeout = options_.timeout;
    request.authorization = egress::Authorization::basic(*basic);
    // The lifetime counts from before the request, to stay on the safe side.
    const int64_t requested_at = clock_.now_seconds();
    auto response = transport_.send(request);
    basic.reset();
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
    if (response->status == 401) {
        refused("hub rejected the client credentials (HTTP 401)");
        return fail(ErrorCode::unauthenticated,
                    "hub rejected client credentials for client_id " + options_.client_id);
    }
    if (response->status != 200) {
        const std::string detail = oauth_error(response->body);
        refused("HTTP " + std::to_string(response->status) + (detail.empty() ? "" : " " + detail));
        return fail(ErrorCode::unavailable, "token request failed: HTTP " +
                                                std::to_string(response->status) +
                                                (detail.empty() ? "" : " " + detail));
    }

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    secrets::wipe(response->body);
    const auto invalid = [&](const char* what) {
        secrets::wipe_json(doc);
        refused(std::string("token response ") + what);
        return fail(ErrorCode::unavailable, std::string("token response from the hub ") + what);
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
    if (!doc.contains("expires_in") || !doc["expires_in"].is_number_integer() ||
        doc["expires_in"].get<int64_t>() <= 0) {
        return invalid("has no positive integer expires_in");
    }
    const int64_t lifetime = doc["expires_in"].get<int64_t>();
    token_ = secrets::SecretValue::copy_of(doc["access_token"].get_ref<const std::string&>());
    secrets::wipe_json(doc);
    // Refresh early so a token never expires in flight; for very short
    // lifetimes, halfway.
    const int64_t margin = std::min(options_.refresh_margin_seconds, lifetime / 2);
    refresh_at_ = requested_at + lifetime - margin;
    expires_at_ = requested_at + lifetime;
    if (options_.on_token) {
        options_.on_token(
            {.fetched = true, .client_id = options_.client_id, .expires_in = lifetime});
    }
    return {};
}

}  // namespace sa::agent::auth
