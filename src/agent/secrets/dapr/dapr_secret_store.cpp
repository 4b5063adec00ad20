#include "agent/secrets/dapr/dapr_secret_store.h"

#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"

namespace sa::agent::secrets::dapr {
namespace {

// http(s)://host[:port] with nothing after it but an optional "/".
bool is_base_url(std::string_view url) {
    std::string_view rest;
    if (url.starts_with("http://")) {
        rest = url.substr(7);
    } else if (url.starts_with("https://")) {
        rest = url.substr(8);
    } else {
        return false;
    }
    if (rest.ends_with('/')) rest.remove_suffix(1);
    return !rest.empty() && rest.find_first_of("/?#@ \r\n") == std::string_view::npos;
}

// "ERR_CODE: message" of a Dapr error body {"errorCode","message"}, or "".
std::string dapr_error(const std::string& body) {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object()) return "";
    std::string out;
    if (doc.contains("errorCode") && doc["errorCode"].is_string()) {
        out = doc["errorCode"].get<std::string>();
    }
    if (doc.contains("message") && doc["message"].is_string()) {
        out += (out.empty() ? "" : ": ") + doc["message"].get<std::string>();
    }
    return out;
}

// The secret a reference names in Dapr's answer (a JSON object of strings);
// doc is wiped either way.
Result<SecretValue> select_entry(nlohmann::json& doc, const SecretRef& ref,
                                 const std::string& where) {
    const auto done = [&](Result<SecretValue> result) {
        wipe_json(doc);
        return result;
    };
    if (!doc.is_object()) {
        return done(
            fail(ErrorCode::invalid_argument, where + ": Dapr answer is not a JSON object"));
    }
    const auto string_entry = [&](const std::string& name) -> const std::string* {
        const auto it = doc.find(name);
        return it != doc.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
    };
    if (ref.key.empty()) {
        if (doc.size() != 1) {
            return done(fail(ErrorCode::invalid_argument, where + ": the Dapr secret has " +
                                                              std::to_string(doc.size()) +
                                                              " keys; name one with #KEY"));
        }
        const auto& only = doc.begin().value();
        if (!only.is_string()) {
            return done(fail(ErrorCode::invalid_argument,
                             where + ": the Dapr secret's value is not a string"));
        }
        return done(SecretValue::copy_of(only.get_ref<const std::string&>()));
    }
    if (doc.contains(ref.key)) {
        const std::string* value = string_entry(ref.key);
        if (value == nullptr) {
            return done(fail(ErrorCode::invalid_argument,
                             where + ": key \"" + ref.key + "\" is not a string"));
        }
        return done(SecretValue::copy_of(*value));
    }
    // "entry.field...": a field of the JSON held in one entry.
    const size_t dot = ref.key.find('.');
    const std::string* entry =
        dot == std::string::npos ? nullptr : string_entry(ref.key.substr(0, dot));
    if (entry == nullptr) {
        return done(fail(ErrorCode::not_found, where + ": no key \"" + ref.key + "\""));
    }
    SecretRef inner = ref;
    inner.key = ref.key.substr(dot + 1);
    auto selected = select_secret(std::string(*entry), inner, where);
    if (!selected && selected.error().code == ErrorCode::not_found) {
        return done(fail(ErrorCode::not_found, where + ": no key \"" + ref.key + "\""));
    }
    return done(std::move(selected));
}

}  // namespace

Status validate(const DaprSettings& settings) {
    if (!is_base_url(settings.address)) {
        return fail(ErrorCode::invalid_argument,
                    "address must be http://HOST:PORT or https://HOST:PORT of the Dapr sidecar");
    }
    if (settings.dapr_store.empty()) {
        return fail(ErrorCode::invalid_argument,
                    "dapr_store must name the Dapr secret store component");
    }
    if (settings.api_token &&
        (settings.api_token->store.empty() || settings.api_token->path.empty())) {
        return fail(ErrorCode::invalid_argument,
                    "api_token must reference the Dapr API token (STORE/PATH)");
    }
    if (settings.timeout_seconds <= 0) {
        return fail(ErrorCode::invalid_argument, "timeout_seconds must be positive");
    }
    return {};
}

Result<std::unique_ptr<DaprSecretStore>> DaprSecretStore::create(
    std::string name, DaprSettings settings, std::unique_ptr<egress::Transport> transport,
    CredentialReader credentials) {
    const auto invalid = [&](const std::string& what) {
        return fail(ErrorCode::invalid_argument, "secret store \"" + name + "\": " + what);
    };
    if (auto valid = validate(settings); !valid) return invalid(valid.error().message);
    if (!transport) return invalid("needs a transport");
    if (settings.api_token && !credentials) {
        return invalid("api_token is set but no credential reader was given");
    }
    while (settings.address.ends_with('/')) settings.address.pop_back();
    return std::unique_ptr<DaprSecretStore>(new DaprSecretStore(
        std::move(name), std::move(settings), std::move(transport), std::move(credentials)));
}

DaprSecretStore::DaprSecretStore(std::string name, DaprSettings settings,
                                 std::unique_ptr<egress::Transport> transport,
                                 CredentialReader credentials)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      transport_(std::move(transport)),
      credentials_(std::move(credentials)) {}

Result<SecretValue> DaprSecretStore::read(const SecretRef& ref) {
    const std::string where = store_where(name_, ref.path);
    if (ref.path.empty()) return fail(ErrorCode::invalid_argument, where + ": empty secret name");

    egress::HttpRequest request;
    request.url = settings_.address + "/v1.0/secrets/" +
                  crypto::percent_encode(settings_.dapr_store) + "/" +
                  crypto::percent_encode(ref.path);
    request.headers = {{"Accept", "application/json"}};
    request.timeout = std::chrono::seconds(settings_.timeout_seconds);

    std::lock_guard lock(mutex_);
    Result<egress::HttpResponse> response = fail(ErrorCode::internal, "no request sent");
    {
        // Just in time: the token lives only for this request; the egress
        // layer sends it as the dapr-api-token header and wipes its copy.
        std::optional<SecretValue> token;
        if (settings_.api_token) {
            auto read = credentials_(*settings_.api_token);
            if (!read) {
                return fail(read.error().code,
                            where + ": cannot read the Dapr API token: " + read.error().message);
            }
            token = std::move(*read);
            request.authorization = egress::Authorization::header("dapr-api-token", *token);
        }
        response = transport_->send(request);
    }
    if (!response) return std::unexpected(transport_store_error(where, response.error()));

    if (response->status == 204) {
        return fail(ErrorCode::not_found, where + ": HTTP 204: the Dapr secret store \"" +
                                              settings_.dapr_store + "\" has no such secret");
    }
    if (response->status != 200) {
        const std::string detail = error_detail(dapr_error(response->body));
        Error error = http_store_error(where, response->status, detail);
        if (response->status == 400) {
            error.message += " (check the Dapr secret store component \"" + settings_.dapr_store +
                             "\": missing or misconfigured)";
        }
        return std::unexpected(std::move(error));
    }

    nlohmann::json doc = nlohmann::json::parse(response->body, nullptr, false);
    wipe(response->body);
    if (doc.is_discarded()) {
        return fail(ErrorCode::invalid_argument, where + ": Dapr answer is not valid JSON");
    }
    return select_entry(doc, ref, where);
}

}  // namespace sa::agent::secrets::dapr
