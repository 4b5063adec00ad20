#include "agent/secrets/azure/managed_identity_token_source.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"

namespace sa::agent::secrets::azure {
namespace {

constexpr const char* kWhat = "Azure managed identity token";

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// IMDS sends expires_in / expires_on as strings of decimal seconds; a number
// is accepted too. nullopt for anything else.
std::optional<int64_t> seconds_field(const nlohmann::json& doc, const char* name) {
    if (!doc.contains(name)) return std::nullopt;
    const auto& field = doc[name];
    if (field.is_number_integer()) return field.get<int64_t>();
    if (!field.is_string()) return std::nullopt;
    const auto& text = field.get_ref<const std::string&>();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

bool is_http_url(std::string_view url) {
    const size_t scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) return false;
    const std::string_view scheme = url.substr(0, scheme_end);
    const std::string_view rest = url.substr(scheme_end + 3);
    return (scheme == "http" || scheme == "https") && !rest.empty() && rest.front() != '/' &&
           rest.find_first_of("?# \r\n") == std::string_view::npos;
}

// "error: error_description" of an IMDS / Entra error body, or "".
std::string imds_error(const std::string& body) {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) return "";
    std::string out = doc["error"].get<std::string>();
    if (doc.contains("error_description") && doc["error_description"].is_string()) {
        out += ": " + doc["error_description"].get<std::string>();
    }
    return out;
}

}  // namespace

Result<ManagedIdentityTokenSource::Options> ManagedIdentityTokenSource::options_from(
    const AzureKeyVaultSettings& settings) {
    if (!is_http_url(settings.auth.imds_endpoint)) {
        return fail(ErrorCode::invalid_argument,
                    "auth.imds_endpoint must be an http:// or https:// URL without query");
    }
    if (settings.auth.resource.empty()) {
        return fail(ErrorCode::invalid_argument, "auth.resource must not be empty");
    }
    if (settings.timeout_seconds <= 0) {
        return fail(ErrorCode::invalid_argument, "timeout_seconds must be positive");
    }
    Options options;
    options.endpoint = settings.auth.imds_endpoint;
    options.resource = settings.auth.resource;
    options.client_id = settings.auth.client_id;
    options.timeout = std::chrono::seconds(settings.timeout_seconds);
    return options;
}

ManagedIdentityTokenSource::ManagedIdentityTokenSource(std::unique_ptr<egress::Transport> transport,
                                                       Options options, const auth::Clock& clock)
    : transport_(std::move(transport)), options_(std::move(options)), clock_(clock) {
    url_ = options_.endpoint + "?api-version=" + kApiVersion +
           "&resource=" + crypto::percent_encode(options_.resource);
    if (!options_.client_id.empty())
        url_ += "&client_id=" + crypto::percent_encode(options_.client_id);
}

void ManagedIdentityTokenSource::invalidate() {
    std::lock_guard lock(mutex_);
    token_.reset();
    refresh_at_ = 0;
    expires_at_ = 0;
}

Result<SecretValue> ManagedIdentityTokenSource::access_token() {
    std::lock_guard lock(mutex_);
    const auto current = [&] { return SecretValue::copy_of(token_->reveal()); };
    if (token_ && clock_.now_seconds() < refresh_at_) return current();
    if (auto fetched = fetch(); !fetched) {
        // An early refresh that failed is not fatal while the token is valid.
        if (token_ && clock_.now_seconds() < expires_at_) return current();
        token_.reset();
        refresh_at_ = expires_at_ = 0;
        return std::unexpected(fetched.error());
    }
    return current();
}

Status ManagedIdentityTokenSource::fetch() {
    egress::HttpRequest request;
    request.url = url_;
    // IMDS refuses requests without it (a guard against SSRF through
    // forwarding proxies, which would not add it).
    request.headers = {{"Metadata", "true"}, {"Accept", "application/json"}};
    request.timeout = options_.timeout;
    const int64_t requested_at = clock_.now_seconds();
    auto response = transport_->send(request);
    if (!response) return std::unexpected(transport_store_error(kWhat, response.error()));

    if (response->status != 200) {
        const std::string detail = error_detail(imds_error(response->body));
        Error error = http_store_error(kWhat, response->status, detail);
        if (response->status == 400 && detail.find("Identity not found") != std::string::npos) {
            // The VM has no such identity (or none at all): a grant to fix.
            error.code = ErrorCode::permission_denied;
        } else if (response->status == 404 || response->status == 410) {
            // Documented as "IMDS is updating": retry later.
            error.code = ErrorCode::unavailable;
        }
        return std::unexpected(std::move(error));
    }

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    wipe(response->body);
    const auto malformed = [&](const std::string& what) {
        wipe_json(doc);
        return fail(ErrorCode::invalid_argument, std::string(kWhat) + ": answer " + what);
    };
    if (!doc.is_object()) return malformed("is not a JSON object");
    if (!doc.contains("access_token") || !doc["access_token"].is_string() ||
        doc["access_token"].get_ref<const std::string&>().empty()) {
        return malformed("has no access_token");
    }
    if (doc.contains("token_type") &&
        (!doc["token_type"].is_string() ||
         !iequals(doc["token_type"].get_ref<const std::string&>(), "Bearer"))) {
        return malformed("has a token_type other than Bearer");
    }
    int64_t lifetime = 0;
    if (const auto expires_in = seconds_field(doc, "expires_in")) {
        lifetime = *expires_in;
    } else if (const auto expires_on = seconds_field(doc, "expires_on")) {
        lifetime = *expires_on - requested_at;
    } else {
        return malformed("has no expires_in or expires_on");
    }
    if (lifetime <= 0) return malformed("has an expired token");

    token_ = SecretValue::copy_of(doc["access_token"].get_ref<const std::string&>());
    wipe_json(doc);
    // The lifetime counts from before the request, to stay on the safe side.
    const int64_t margin = std::min(options_.refresh_margin_seconds, lifetime / 2);
    refresh_at_ = requested_at + lifetime - margin;
    expires_at_ = requested_at + lifetime;
    return {};
}

}  // namespace sa::agent::secrets::azure
