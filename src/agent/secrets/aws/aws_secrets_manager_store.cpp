#include "agent/secrets/aws/aws_secrets_manager_store.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "agent/secrets/aws/sigv4.h"
#include "agent/secrets/http_store.h"
#include "agent/secrets/json_wipe.h"
#include "common/crypto/encoding.h"
#include "common/util/files.h"

namespace sa::agent::secrets::aws {
namespace {

using nlohmann::json;

constexpr std::string_view kJsonContentType = "application/x-amz-json-1.1";
constexpr std::string_view kGetSecretValueTarget = "secretsmanager.GetSecretValue";
constexpr std::string_view kStsAction = "AssumeRoleWithWebIdentity";

const auth::SystemClock& system_clock() {
    static const auth::SystemClock clock;
    return clock;
}

Error invalid(std::string message) {
    return Error{ErrorCode::invalid_argument, std::move(message)};
}

bool valid_region(std::string_view region) {
    return !region.empty() && std::all_of(region.begin(), region.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) ||
               std::isdigit(static_cast<unsigned char>(c)) || c == '-';
    });
}

bool valid_session_name(std::string_view name) {
    // RoleSessionName: [\w+=,.@-]{2,64}
    return name.size() >= 2 && name.size() <= 64 &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) ||
                      std::string_view("_+=,.@-").find(c) != std::string_view::npos;
           });
}

bool valid_ref(const SecretRef& ref) {
    return !ref.store.empty() && !ref.path.empty();
}

// Secrets Manager __type -> what the caller can do about it; nullopt: decide
// by HTTP status. The JSON protocol answers nearly everything with 400, so
// the status alone says little.
std::optional<ErrorCode> secrets_manager_error_code(std::string_view type) {
    static const std::pair<std::string_view, ErrorCode> kCodes[] = {
        {"ResourceNotFoundException", ErrorCode::not_found},
        {"AccessDeniedException", ErrorCode::permission_denied},
        {"DecryptionFailure", ErrorCode::permission_denied},
        {"UnrecognizedClientException", ErrorCode::permission_denied},
        {"InvalidSignatureException", ErrorCode::permission_denied},
        {"IncompleteSignature", ErrorCode::permission_denied},
        {"InvalidClientTokenId", ErrorCode::permission_denied},
        {"MissingAuthenticationToken", ErrorCode::permission_denied},
        {"ExpiredTokenException", ErrorCode::permission_denied},
        {"RequestExpired", ErrorCode::permission_denied},
        {"ThrottlingException", ErrorCode::unavailable},
        {"InternalServiceError", ErrorCode::unavailable},
        {"InternalFailure", ErrorCode::unavailable},
        {"ServiceUnavailable", ErrorCode::unavailable},
        {"RequestTimeout", ErrorCode::unavailable},
        {"InvalidRequestException", ErrorCode::invalid_argument},
        {"InvalidParameterException", ErrorCode::invalid_argument},
    };
    for (const auto& [name, code] : kCodes) {
        if (name == type) return code;
    }
    return std::nullopt;
}

std::optional<ErrorCode> sts_error_code(std::string_view code) {
    static const std::pair<std::string_view, ErrorCode> kCodes[] = {
        {"AccessDenied", ErrorCode::permission_denied},
        {"InvalidIdentityToken", ErrorCode::permission_denied},
        {"ExpiredTokenException", ErrorCode::permission_denied},
        {"IDPRejectedClaim", ErrorCode::permission_denied},
        {"RegionDisabledException", ErrorCode::permission_denied},
        {"IDPCommunicationError", ErrorCode::unavailable},
        {"Throttling", ErrorCode::unavailable},
        {"InternalFailure", ErrorCode::unavailable},
        {"ServiceUnavailable", ErrorCode::unavailable},
        {"MalformedPolicyDocument", ErrorCode::invalid_argument},
        {"PackedPolicyTooLarge", ErrorCode::invalid_argument},
        {"ValidationError", ErrorCode::invalid_argument},
    };
    for (const auto& [name, value] : kCodes) {
        if (name == code) return value;
    }
    return std::nullopt;
}

// "com.amazonaws.secretsmanager#ResourceNotFoundException" -> the part
// after '#'; some services add ":http://..." after the name.
std::string bare_error_type(std::string type) {
    if (const size_t hash = type.rfind('#'); hash != std::string::npos) type.erase(0, hash + 1);
    if (const size_t colon = type.find(':'); colon != std::string::npos) type.resize(colon);
    return type;
}

// The error for a non-200 Secrets Manager answer; *type gets the bare __type.
Error secrets_manager_error(const std::string& where, const egress::HttpResponse& response,
                            std::string* type) {
    const json body = json::parse(response.body, nullptr, false);
    std::string message;
    if (body.is_object()) {
        if (auto it = body.find("__type"); it != body.end() && it->is_string()) {
            *type = bare_error_type(it->get<std::string>());
        }
        for (const char* field : {"message", "Message"}) {
            if (auto it = body.find(field); it != body.end() && it->is_string()) {
                message = it->get<std::string>();
                break;
            }
        }
    }
    if (type->empty()) return http_store_error(where, response.status, error_detail(response.body));
    Error error = http_store_error(where, response.status,
                                   error_detail(*type + (message.empty() ? "" : ": " + message)));
    if (auto code = secrets_manager_error_code(*type)) error.code = *code;
    return error;
}

}  // namespace

Result<AwsEndpoint> parse_aws_endpoint(std::string_view url) {
    constexpr std::string_view kScheme = "https://";
    if (!url.starts_with(kScheme)) return fail(ErrorCode::invalid_argument, "must be an https URL");
    std::string_view rest = url.substr(kScheme.size());
    const size_t end = rest.find_first_of("/?#");
    const std::string_view authority = rest.substr(0, end);
    const std::string_view tail = end == std::string_view::npos ? "" : rest.substr(end);
    if (authority.empty() || authority.find('@') != std::string_view::npos) {
        return fail(ErrorCode::invalid_argument, "must name a host (without user info)");
    }
    if (!tail.empty() && tail != "/") {
        return fail(ErrorCode::invalid_argument, "must not have a path, query or fragment");
    }
    for (char c : authority) {
        if (std::isspace(static_cast<unsigned char>(c)) ||
            std::iscntrl(static_cast<unsigned char>(c))) {
            return fail(ErrorCode::invalid_argument, "must not contain spaces");
        }
    }
    AwsEndpoint out;
    out.url = std::string(kScheme) + std::string(authority) + "/";
    std::string host(authority);
    for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // libcurl leaves the default port out of the Host header; so must the signature.
    if (host.ends_with(":443")) host.resize(host.size() - 4);
    out.host = std::move(host);
    return out;
}

Result<std::unique_ptr<AwsSecretsManagerStore>> AwsSecretsManagerStore::create(
    std::string name, AwsSecretsManagerSettings settings, CredentialReader credentials,
    std::unique_ptr<egress::Transport> transport, const auth::Clock* clock) {
    const std::string prefix = "secret store \"" + name + "\": ";
    if (!valid_region(settings.region)) {
        return std::unexpected(invalid(prefix + "region must be an AWS region like \"eu-west-1\""));
    }
    if (settings.timeout_seconds < 1 || settings.timeout_seconds > 300) {
        return std::unexpected(invalid(prefix + "timeout_seconds must be 1..300"));
    }
    if (!transport) return std::unexpected(invalid(prefix + "no transport"));
    const std::string endpoint_url =
        settings.endpoint.empty() ? "https://secretsmanager." + settings.region + ".amazonaws.com"
                                  : settings.endpoint;
    auto endpoint = parse_aws_endpoint(endpoint_url);
    if (!endpoint) {
        return std::unexpected(invalid(prefix + "endpoint " + endpoint.error().message));
    }
    AwsEndpoint sts;
    auto& auth = settings.auth;
    if (auth.method == "static") {
        if (!valid_ref(auth.access_key_id)) {
            return std::unexpected(invalid(prefix + "auth.access_key_id is required"));
        }
        if (!valid_ref(auth.secret_access_key)) {
            return std::unexpected(invalid(prefix + "auth.secret_access_key is required"));
        }
        if (auth.session_token && !valid_ref(*auth.session_token)) {
            return std::unexpected(invalid(prefix + "auth.session_token is not a reference"));
        }
        if (!credentials) {
            return std::unexpected(
                invalid(prefix + "auth.method static needs a credential reader"));
        }
    } else if (auth.method == "web_identity") {
        if (!auth.role_arn.starts_with("arn:")) {
            return std::unexpected(invalid(prefix + "auth.role_arn must be an IAM role ARN"));
        }
        if (auth.token_file.empty()) {
            return std::unexpected(invalid(prefix + "auth.token_file is required"));
        }
        if (!valid_session_name(auth.session_name)) {
            return std::unexpected(invalid(
                prefix + "auth.session_name must be 2-64 characters of [A-Za-z0-9_+=,.@-]"));
        }
        if (auth.duration_seconds < 900 || auth.duration_seconds > 43200) {
            return std::unexpected(invalid(prefix + "auth.duration_seconds must be 900..43200"));
        }
        auto parsed = parse_aws_endpoint(auth.sts_endpoint.empty()
                                             ? "https://sts." + settings.region + ".amazonaws.com"
                                             : auth.sts_endpoint);
        if (!parsed) {
            return std::unexpected(invalid(prefix + "auth.sts_endpoint " + parsed.error().message));
        }
        sts = std::move(*parsed);
    } else {
        return std::unexpected(invalid(prefix + "auth.method must be static or web_identity"));
    }
    return std::unique_ptr<AwsSecretsManagerStore>(new AwsSecretsManagerStore(
        std::move(name), std::move(settings), std::move(credentials), std::move(transport),
        clock != nullptr ? clock : &system_clock(), std::move(*endpoint), std::move(sts)));
}

AwsSecretsManagerStore::AwsSecretsManagerStore(std::string name, AwsSecretsManagerSettings settings,
                                               CredentialReader credentials,
                                               std::unique_ptr<egress::Transport> transport,
                                               const auth::Clock* clock,
                                               AwsEndpoint secrets_endpoint,
                                               AwsEndpoint sts_endpoint)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      credentials_(std::move(credentials)),
      transport_(std::move(transport)),
      clock_(clock),
      secrets_endpoint_(std::move(secrets_endpoint)),
      sts_endpoint_(std::move(sts_endpoint)) {}

Result<SecretValue> AwsSecretsManagerStore::read(const SecretRef& ref) {
    std::lock_guard lock(mutex_);
    const std::string where = store_where(name_, ref.path);

    // PATH = SecretId, optionally "@STAGE" (split at the last '@').
    std::string secret_id = ref.path;
    std::string stage;
    if (const size_t at = secret_id.rfind('@'); at != std::string::npos) {
        stage = secret_id.substr(at + 1);
        secret_id.resize(at);
        if (stage.empty())
            return std::unexpected(invalid(where + ": empty version stage after '@'"));
    }
    if (secret_id.empty()) return std::unexpected(invalid(where + ": empty secret id"));
    json request = {{"SecretId", secret_id}};
    if (!stage.empty()) request["VersionStage"] = stage;
    const std::string body = request.dump();

    Outcome outcome = Outcome::done;
    auto result = get_secret_value(ref, where, body, outcome);
    if (outcome == Outcome::expired_token && settings_.auth.method == "web_identity") {
        // The temporary credentials expired early (revoked session, clock
        // skew): assume the role again and retry once.
        temporary_.reset();
        result = get_secret_value(ref, where, body, outcome);
    }
    return result;
}

Result<SecretValue> AwsSecretsManagerStore::get_secret_value(const SecretRef& ref,
                                                             const std::string& where,
                                                             const std::string& body,
                                                             Outcome& outcome) {
    outcome = Outcome::done;
    // static: read now, released when this function returns.
    TemporaryCredentials owned;
    const TemporaryCredentials* credentials = nullptr;
    if (settings_.auth.method == "static") {
        auto read = static_credentials(where);
        if (!read) return std::unexpected(read.error());
        owned = std::move(*read);
        credentials = &owned;
    } else {
        if (auto fresh = fresh_temporary_credentials(where); !fresh) {
            return std::unexpected(fresh.error());
        }
        credentials = &*temporary_;
    }

    SigV4Request to_sign;
    to_sign.method = "POST";
    to_sign.path = "/";
    to_sign.headers = {
        {"Content-Type", std::string(kJsonContentType)},
        {"Host", secrets_endpoint_.host},
        {"X-Amz-Date", sigv4_amz_date(clock_->now_seconds())},
        {"X-Amz-Target", std::string(kGetSecretValueTarget)},
    };
    const bool has_token = !credentials->session_token.empty();
    if (has_token) {
        to_sign.headers.emplace_back("X-Amz-Security-Token",
                                     std::string(credentials->session_token.reveal()));
    }
    to_sign.payload = body;
    const SigV4Scope scope{to_sign.headers[2].second, settings_.region, "secretsmanager"};
    auto signature = sigv4_sign(to_sign, scope, credentials->access_key_id.reveal(),
                                credentials->secret_access_key);

    egress::HttpRequest http;
    http.method = "POST";
    http.url = secrets_endpoint_.url;
    http.headers = to_sign.headers;
    if (signature) http.headers.emplace_back("Authorization", signature->authorization);
    http.body = body;
    http.timeout = std::chrono::seconds(settings_.timeout_seconds);
    Result<egress::HttpResponse> response =
        signature ? transport_->send(http) : std::unexpected(signature.error());
    // The session token is a credential: no copy outlives the request.
    if (has_token) {
        wipe(to_sign.headers.back().second);
        for (auto& [name, value] : http.headers) {
            if (name == "X-Amz-Security-Token") wipe(value);
        }
        if (signature) wipe(signature->canonical_request);
    }
    if (!signature) {
        return std::unexpected(
            Error{signature.error().code, where + ": " + signature.error().message});
    }
    if (!response) return std::unexpected(transport_store_error(where, response.error()));

    if (response->status != 200) {
        std::string type;
        Error error = secrets_manager_error(where, *response, &type);
        if (type == "ExpiredTokenException") outcome = Outcome::expired_token;
        return std::unexpected(std::move(error));
    }

    json doc = json::parse(response->body, nullptr, false);
    wipe(response->body);
    if (!doc.is_object()) {
        return std::unexpected(invalid(where + ": GetSecretValue answer is not a JSON object"));
    }
    if (auto it = doc.find("SecretString"); it != doc.end() && it->is_string()) {
        std::string content = std::move(*it->get_ptr<std::string*>());
        wipe_json(doc);
        return select_secret(std::move(content), ref, where);
    }
    if (auto it = doc.find("SecretBinary"); it != doc.end() && it->is_string()) {
        auto decoded = crypto::base64_decode(*it->get_ptr<const std::string*>());
        wipe_json(doc);
        if (!decoded) {
            return std::unexpected(invalid(where + ": SecretBinary is not valid base64"));
        }
        if (!ref.key.empty()) {
            wipe(*decoded);
            return std::unexpected(invalid(where + ": key \"" + ref.key +
                                           "\" given for a binary secret (SecretBinary)"));
        }
        return SecretValue::from(std::move(*decoded));
    }
    wipe_json(doc);
    return std::unexpected(
        invalid(where + ": GetSecretValue answer has neither SecretString nor SecretBinary"));
}

Result<SecretValue> AwsSecretsManagerStore::read_credential(const SecretRef& ref,
                                                            const char* setting,
                                                            const std::string& where) {
    auto value = credentials_(ref);
    if (!value) {
        return std::unexpected(Error{value.error().code, where + ": reading " + setting + " (" +
                                                             ref.to_string() +
                                                             "): " + value.error().message});
    }
    if (value->empty()) {
        return std::unexpected(
            invalid(where + ": " + setting + " (" + ref.to_string() + ") is empty"));
    }
    return value;
}

Result<TemporaryCredentials> AwsSecretsManagerStore::static_credentials(const std::string& where) {
    TemporaryCredentials out;
    auto id = read_credential(settings_.auth.access_key_id, "auth.access_key_id", where);
    if (!id) return std::unexpected(id.error());
    auto secret =
        read_credential(settings_.auth.secret_access_key, "auth.secret_access_key", where);
    if (!secret) return std::unexpected(secret.error());
    out.access_key_id = std::move(*id);
    out.secret_access_key = std::move(*secret);
    if (settings_.auth.session_token) {
        auto token = read_credential(*settings_.auth.session_token, "auth.session_token", where);
        if (!token) return std::unexpected(token.error());
        out.session_token = std::move(*token);
    }
    return out;
}

Status AwsSecretsManagerStore::fresh_temporary_credentials(const std::string& where) {
    if (temporary_ &&
        clock_->now_seconds() < temporary_->expiration - kRefreshBeforeExpirySeconds) {
        return {};
    }
    temporary_.reset();
    return assume_role(where);
}

Status AwsSecretsManagerStore::assume_role(const std::string& where) {
    const std::string context = where + ": " + std::string(kStsAction);
    const auto& auth = settings_.auth;
    auto token = util::read_file(auth.token_file);
    if (!token) {
        return std::unexpected(Error{token.error().code, context + ": reading auth.token_file " +
                                                             auth.token_file + ": " +
                                                             token.error().message});
    }
    // The projected token file ends with a newline at most; strip blanks in place.
    while (!token->empty() && std::isspace(static_cast<unsigned char>(token->back()))) {
        token->back() = '\0';
        token->pop_back();
    }
    if (token->empty() || token->size() > kMaxTokenFileBytes) {
        wipe(*token);
        return std::unexpected(
            invalid(context + ": auth.token_file " + auth.token_file + " is empty or too large"));
    }
    std::string form = "Action=" + std::string(kStsAction) +
                       "&Version=2011-06-15&RoleArn=" + crypto::percent_encode(auth.role_arn) +
                       "&RoleSessionName=" + crypto::percent_encode(auth.session_name) +
                       "&WebIdentityToken=";
    form += crypto::percent_encode(*token);
    wipe(*token);
    form += "&DurationSeconds=" + std::to_string(auth.duration_seconds);

    // AssumeRoleWithWebIdentity is not signed: the web identity token is the
    // credential.
    egress::HttpRequest http;
    http.method = "POST";
    http.url = sts_endpoint_.url;
    http.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
    http.body = form;
    http.timeout = std::chrono::seconds(settings_.timeout_seconds);
    auto response = transport_->send(http);
    wipe(form);
    if (!response) return std::unexpected(transport_store_error(context, response.error()));
    if (response->status != 200) {
        const StsError sts = parse_sts_error(response->body);
        if (sts.code.empty()) {
            return std::unexpected(
                http_store_error(context, response->status, error_detail(response->body)));
        }
        Error error = http_store_error(
            context, response->status,
            error_detail(sts.code + (sts.message.empty() ? "" : ": " + sts.message)));
        if (auto code = sts_error_code(sts.code)) error.code = *code;
        return std::unexpected(std::move(error));
    }
    auto credentials = parse_assume_role_with_web_identity(response->body);
    wipe(response->body);
    if (!credentials) return std::unexpected(invalid(context + ": " + credentials.error().message));
    temporary_ = std::move(*credentials);
    return {};
}

}  // namespace sa::agent::secrets::aws
