#include "agent/secrets/azure/azure_test_server.h"

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/egress/testing/test_pki.h"
#include "common/crypto/random.h"
#include "common/util/time.h"

namespace sa::agent::secrets::azure::testing {
namespace {

std::string vault_error_body(const std::string& code, const std::string& message,
                             const std::string& inner = {}) {
    nlohmann::json error = {{"code", code}, {"message", message}};
    if (!inner.empty()) error["innererror"] = {{"code", inner}};
    return nlohmann::json{{"error", error}}.dump();
}

std::string oauth_error_body(const std::string& error, const std::string& description) {
    return nlohmann::json{{"error", error}, {"error_description", description}}.dump();
}

std::string params_text(const httplib::Params& params) {
    std::string out;
    for (const auto& [name, value] : params) out += name + "=" + value + " ";
    return out;
}

}  // namespace

PlainTestServer::PlainTestServer() {
    // stop() waits for idle keep-alive connections; keep that wait short.
    server_.set_keep_alive_timeout(1);
}

PlainTestServer::~PlainTestServer() {
    stop();
}

void PlainTestServer::start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) std::abort();
    thread_ = std::thread([this] {
        server_.listen_after_bind();
        finished_ = true;
    });
    while (!server_.is_running() && !finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void PlainTestServer::stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
}

std::string PlainTestServer::url(std::string_view path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

AzureTestServer::AzureTestServer() : vault_(agent::testing::pki()) {
    vault_.http().Get(R"(/secrets/.*)", [this](const httplib::Request& req,
                                               httplib::Response& res) { handle_vault(req, res); });
    vault_.http().Post(
        R"(/[^/]+/oauth2/v2\.0/token)",
        [this](const httplib::Request& req, httplib::Response& res) { handle_token(req, res); });
    imds_.http().Get(kImdsPath, [this](const httplib::Request& req, httplib::Response& res) {
        handle_imds(req, res);
    });
    vault_.start();
    imds_.start();
}

AzureTestServer::~AzureTestServer() {
    vault_.stop();
    imds_.stop();
}

void AzureTestServer::put_secret(const std::string& name, const std::string& value) {
    std::lock_guard lock(mutex_);
    secrets_[name].versions.push_back(value);
}
void AzureTestServer::disable_secret(const std::string& name) {
    std::lock_guard lock(mutex_);
    secrets_[name].enabled = false;
}
void AzureTestServer::forbid_secret(const std::string& name) {
    std::lock_guard lock(mutex_);
    secrets_[name].forbidden = true;
}
void AzureTestServer::malformed_secret(const std::string& name) {
    std::lock_guard lock(mutex_);
    secrets_[name].malformed = true;
}
void AzureTestServer::fail_vault(long status, const std::string& body, int times) {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < times; ++i) vault_failures_.push_back({status, body});
}
void AzureTestServer::revoke_tokens() {
    std::lock_guard lock(mutex_);
    tokens_.clear();
}
void AzureTestServer::set_identities(std::set<std::string> client_ids) {
    std::lock_guard lock(mutex_);
    identities_ = std::move(client_ids);
}
void AzureTestServer::fail_imds(long status, const std::string& body, int times) {
    std::lock_guard lock(mutex_);
    for (int i = 0; i < times; ++i) imds_failures_.push_back({status, body});
}
void AzureTestServer::set_token_lifetime(int seconds) {
    std::lock_guard lock(mutex_);
    token_lifetime_ = seconds;
}
void AzureTestServer::set_client_secret(const std::string& secret) {
    std::lock_guard lock(mutex_);
    client_secret_ = secret;
}
int AzureTestServer::vault_requests() const {
    std::lock_guard lock(mutex_);
    return vault_requests_;
}
int AzureTestServer::imds_requests() const {
    std::lock_guard lock(mutex_);
    return imds_requests_;
}
int AzureTestServer::token_requests() const {
    std::lock_guard lock(mutex_);
    return token_requests_;
}
std::vector<std::string> AzureTestServer::violations() const {
    std::lock_guard lock(mutex_);
    return violations_;
}

void AzureTestServer::violation(const std::string& what) {
    violations_.push_back(what);
}

std::string AzureTestServer::issue_token() {
    std::string token =
        "eyJ0eXAiOiJKV1Qi." + std::to_string(++next_token_) + "." + crypto::random_token(24);
    tokens_.insert(token);
    return token;
}

void AzureTestServer::handle_vault(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    ++vault_requests_;
    const auto answer = [&](int status, const std::string& body) {
        res.status = status;
        res.set_content(body, "application/json; charset=utf-8");
    };
    // Authentication comes first, as in the service.
    const std::string authorization = req.get_header_value("Authorization");
    if (!authorization.starts_with("Bearer ") || !tokens_.contains(authorization.substr(7))) {
        res.set_header("WWW-Authenticate",
                       "Bearer authorization=\"https://login.microsoftonline.com/" +
                           std::string(kTenant) + "\", resource=\"https://vault.azure.net\"");
        answer(401, vault_error_body("Unauthorized",
                                     "AKV10000: Request is missing a Bearer or PoP token."));
        return;
    }
    if (req.params.size() != 1 || req.get_param_value("api-version") != "7.4") {
        violation("Key Vault query: " + params_text(req.params));
        answer(400, vault_error_body("BadParameter", "The api-version is missing or unsupported."));
        return;
    }
    if (req.get_header_value("Accept") != "application/json") {
        violation("Key Vault Accept header: " + req.get_header_value("Accept"));
    }
    if (!vault_failures_.empty()) {
        const Failure failure = vault_failures_.front();
        vault_failures_.erase(vault_failures_.begin());
        answer(static_cast<int>(failure.status), failure.body);
        return;
    }

    // /secrets/NAME or /secrets/NAME/VERSION
    const std::string rest = req.path.substr(std::string("/secrets/").size());
    const size_t slash = rest.find('/');
    const std::string name = rest.substr(0, slash);
    const std::string version = slash == std::string::npos ? "" : rest.substr(slash + 1);
    const auto it = secrets_.find(name);
    if (it == secrets_.end() || it->second.versions.empty()) {
        answer(404, vault_error_body("SecretNotFound",
                                     "A secret with (name/id) " + rest +
                                         " was not found in this key vault. If you recently "
                                         "deleted this secret you may be able to recover it "
                                         "using the correct recovery command."));
        return;
    }
    const Secret& secret = it->second;
    if (secret.forbidden) {
        answer(403, vault_error_body("Forbidden",
                                     "The user, group or application 'appid=agent' does not "
                                     "have secrets get permission on key vault 'myvault'.",
                                     "AccessDenied"));
        return;
    }
    if (!secret.enabled) {
        answer(403,
               vault_error_body("Forbidden", "Operation get is not allowed on a disabled secret.",
                                "SecretDisabled"));
        return;
    }
    if (secret.malformed) {
        answer(200, "<html>not a secret bundle</html>");
        return;
    }
    size_t index = secret.versions.size() - 1;
    if (!version.empty()) {
        const bool numbered = version.size() > 1 && version[0] == 'v';
        const size_t n = numbered ? std::strtoul(version.c_str() + 1, nullptr, 10) : 0;
        if (n == 0 || n > secret.versions.size()) {
            answer(404,
                   vault_error_body("SecretNotFound", "A secret with (name/id) " + rest +
                                                          " was not found in this key vault."));
            return;
        }
        index = n - 1;
    }
    const std::string id =
        "https://myvault.vault.azure.net/secrets/" + name + "/v" + std::to_string(index + 1);
    nlohmann::json body = {{"value", secret.versions[index]},
                           {"id", id},
                           {"attributes",
                            {{"enabled", true},
                             {"created", 1493938410},
                             {"updated", 1493938410},
                             {"recoveryLevel", "Recoverable+Purgeable"}}},
                           {"tags", nlohmann::json::object()}};
    answer(200, body.dump());
}

void AzureTestServer::handle_imds(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    ++imds_requests_;
    const auto answer = [&](int status, const std::string& body) {
        res.status = status;
        res.set_content(body, "application/json; charset=utf-8");
    };
    if (req.get_header_value("Metadata") != "true") {
        violation("IMDS request without Metadata: true");
        answer(400, oauth_error_body("bad_request_102", "Required metadata header not specified"));
        return;
    }
    // The resource is a URL and must arrive percent-encoded in the query.
    const bool known_params = std::all_of(req.params.begin(), req.params.end(), [](const auto& p) {
        return p.first == "api-version" || p.first == "resource" || p.first == "client_id";
    });
    if (req.get_param_value("api-version") != "2018-02-01" ||
        req.get_param_value("resource") != "https://vault.azure.net" || !known_params ||
        req.target.find("resource=https%3A%2F%2Fvault.azure.net") == std::string::npos) {
        violation("IMDS query: " + req.target);
        answer(400, oauth_error_body("invalid_request", "Invalid query parameters"));
        return;
    }
    if (!imds_failures_.empty()) {
        const Failure failure = imds_failures_.front();
        imds_failures_.erase(imds_failures_.begin());
        answer(static_cast<int>(failure.status), failure.body);
        return;
    }
    if (!identities_.contains(req.get_param_value("client_id"))) {
        answer(400, oauth_error_body("invalid_request", "Identity not found"));
        return;
    }
    const int64_t now = util::unix_seconds();
    nlohmann::json body = {{"access_token", issue_token()},
                           {"refresh_token", ""},
                           {"expires_in", std::to_string(token_lifetime_)},
                           {"expires_on", std::to_string(now + token_lifetime_)},
                           {"not_before", std::to_string(now)},
                           {"resource", "https://vault.azure.net"},
                           {"token_type", "Bearer"}};
    answer(200, body.dump());
}

void AzureTestServer::handle_token(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mutex_);
    ++token_requests_;
    const auto answer = [&](int status, const std::string& body) {
        res.status = status;
        res.set_content(body, "application/json; charset=utf-8");
    };
    const std::string expected_path = "/" + std::string(kTenant) + "/oauth2/v2.0/token";
    if (req.path != expected_path ||
        !req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded")) {
        violation("token request: " + req.path + " " + req.get_header_value("Content-Type"));
        answer(400, oauth_error_body("invalid_request", "AADSTS900144: malformed request"));
        return;
    }
    // client_secret_post: the credentials are in the form body only.
    if (req.has_header("Authorization") ||
        req.get_param_value("grant_type") != "client_credentials" ||
        req.get_param_value("scope") != "https://vault.azure.net/.default") {
        violation("token form: grant_type/scope/Authorization not as documented");
        answer(400, oauth_error_body("invalid_request", "AADSTS900144: malformed request"));
        return;
    }
    if (req.get_param_value("client_id") != kClientId ||
        req.get_param_value("client_secret") != client_secret_ || client_secret_.empty()) {
        answer(401, oauth_error_body("invalid_client",
                                     "AADSTS7000215: Invalid client secret provided."));
        return;
    }
    nlohmann::json body = {{"token_type", "Bearer"},
                           {"expires_in", token_lifetime_},
                           {"ext_expires_in", token_lifetime_},
                           {"access_token", issue_token()}};
    answer(200, body.dump());
}

}  // namespace sa::agent::secrets::azure::testing
