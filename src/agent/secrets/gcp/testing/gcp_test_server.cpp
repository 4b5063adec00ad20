#include "agent/secrets/gcp/testing/gcp_test_server.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "agent/egress/http_client.h"
#include "agent/secrets/gcp/crc32c.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/util/time.h"

namespace sa::agent::secrets::gcp::testing {
namespace {

constexpr const char* kProjectNumber = "123456789012";
constexpr const char* kScope = "https://www.googleapis.com/auth/cloud-platform";
constexpr const char* kGrantPrefix =
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "gcp test server: %s: %s\n", what, crypto::openssl_error().c_str());
    std::abort();
}

// Google's error body (google.rpc.Status in JSON).
std::string google_error(int code, const std::string& status, const std::string& message) {
    return nlohmann::json{{"error", {{"code", code}, {"message", message}, {"status", status}}}}
        .dump();
}

std::string oauth_error(const std::string& error, const std::string& description) {
    return nlohmann::json{{"error", error}, {"error_description", description}}.dump();
}

std::string new_token() {
    return "ya29.c.test-" + crypto::random_token(24);
}

bool verify_rs256(EVP_PKEY* key, std::string_view signing_input, std::string_view signature) {
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1) {
        return false;
    }
    return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(signing_input.data()),
                            signing_input.size()) == 1;
}

}  // namespace

TestServiceAccount TestServiceAccount::generate() {
    TestServiceAccount out;
    out.key.reset(EVP_RSA_gen(2048));
    if (!out.key) die("EVP_RSA_gen");
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), out.key.get(), nullptr, nullptr, 0, nullptr,
                                         nullptr) != 1) {
        die("PEM_write_bio_PrivateKey");
    }
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    out.private_key_pem.assign(data, static_cast<size_t>(size));
    return out;
}

std::string TestServiceAccount::key_json(const std::string& token_uri) const {
    // The fields (and their order) of a key created with
    // "gcloud iam service-accounts keys create".
    nlohmann::ordered_json doc = {
        {"type", "service_account"},
        {"project_id", "test-project"},
        {"private_key_id", private_key_id},
        {"private_key", private_key_pem},
        {"client_email", client_email},
        {"client_id", "112233445566778899000"},
        {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
        {"token_uri", token_uri},
        {"auth_provider_x509_cert_url", "https://www.googleapis.com/oauth2/v1/certs"},
        {"client_x509_cert_url",
         "https://www.googleapis.com/robot/v1/metadata/x509/agent%40test-project.iam."
         "gserviceaccount.com"},
        {"universe_domain", "googleapis.com"}};
    return doc.dump(2);
}

FakeSecretManager::FakeSecretManager(std::string project, const TestServiceAccount& account)
    : project_(std::move(project)),
      client_email_(account.client_email),
      key_id_(account.private_key_id),
      tls_(agent::testing::pki()),
      now_(util::unix_seconds()) {
    EVP_PKEY_up_ref(account.key.get());
    public_key_.reset(account.key.get());
    auto& http = tls_.http();
    http.Get(R"(/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/]+):access)",
             [this](const httplib::Request& req, httplib::Response& res) { on_access(req, res); });
    http.Post("/token",
              [this](const httplib::Request& req, httplib::Response& res) { on_token(req, res); });
    const auto unexpected = [this](const httplib::Request& req, httplib::Response& res) {
        problem("unexpected request " + req.method + " " + req.path);
        res.status = 404;
        res.set_content(google_error(404, "NOT_FOUND", "unexpected"), "application/json");
    };
    http.Get(".*", unexpected);
    http.Post(".*", unexpected);
    http.Put(".*", unexpected);
    http.Delete(".*", unexpected);
}

FakeSecretManager::~FakeSecretManager() {
    stop();
}

void FakeSecretManager::start() {
    tls_.start();
}

void FakeSecretManager::stop() {
    tls_.stop();
}

void FakeSecretManager::add_version(const std::string& secret, const std::string& data,
                                    State state) {
    std::lock_guard lock(mutex_);
    secrets_[secret].push_back({data, state});
}

void FakeSecretManager::deny(const std::string& secret) {
    std::lock_guard lock(mutex_);
    denied_.insert(secret);
}

void FakeSecretManager::accept_token(const std::string& token) {
    std::lock_guard lock(mutex_);
    tokens_.insert(token);
}

void FakeSecretManager::revoke_tokens() {
    std::lock_guard lock(mutex_);
    tokens_.clear();
}

void FakeSecretManager::fail_next(int status, std::string body, std::string content_type) {
    std::lock_guard lock(mutex_);
    failures_.push_back({status, {std::move(body), std::move(content_type)}});
}

std::vector<std::string> FakeSecretManager::problems() const {
    std::lock_guard lock(mutex_);
    return problems_;
}

void FakeSecretManager::problem(std::string text) {
    std::lock_guard lock(mutex_);
    problems_.push_back(std::move(text));
}

void FakeSecretManager::on_access(const httplib::Request& req, httplib::Response& res) {
    ++access_requests_;
    const std::string project = req.matches[1];
    const std::string secret = req.matches[2];
    const std::string version = req.matches[3];
    // The documented request: GET, no query, empty body, a bearer token.
    if (!req.params.empty()) problem("access request has a query: " + req.target);
    if (!req.body.empty()) problem("access request has a body");
    if (project != project_) problem("access request for project " + project);
    const std::string resource = "projects/" + project + "/secrets/" + secret;

    std::unique_lock lock(mutex_);
    if (!failures_.empty()) {
        auto [status, answer] = std::move(failures_.front());
        failures_.erase(failures_.begin());
        res.status = status;
        res.set_content(answer.first, answer.second.c_str());
        return;
    }
    const std::string authorization = req.get_header_value("Authorization");
    if (!authorization.starts_with("Bearer ") || !tokens_.contains(authorization.substr(7))) {
        res.status = 401;
        res.set_content(google_error(401, "UNAUTHENTICATED",
                                     "Request had invalid authentication credentials. Expected "
                                     "OAuth 2 access token, login cookie or other valid "
                                     "authentication credential."),
                        "application/json");
        return;
    }
    if (denied_.contains(secret)) {
        res.status = 403;
        res.set_content(
            google_error(403, "PERMISSION_DENIED",
                         "Permission 'secretmanager.versions.access' denied for resource '" +
                             resource + "/versions/" + version + "' (or it may not exist)."),
            "application/json");
        return;
    }
    const auto it = secrets_.find(secret);
    if (it == secrets_.end() || it->second.empty()) {
        res.status = 404;
        res.set_content(google_error(404, "NOT_FOUND",
                                     "Secret [projects/" + std::string(kProjectNumber) +
                                         "/secrets/" + secret + "] not found or has no versions."),
                        "application/json");
        return;
    }
    size_t number = it->second.size();
    if (version != "latest") {
        const bool digits =
            !version.empty() && version.find_first_not_of("0123456789") == std::string::npos;
        number = digits ? std::strtoul(version.c_str(), nullptr, 10) : 0;
    }
    const std::string name = "projects/" + std::string(kProjectNumber) + "/secrets/" + secret +
                             "/versions/" + std::to_string(number);
    if (number == 0 || number > it->second.size()) {
        res.status = 404;
        res.set_content(
            google_error(404, "NOT_FOUND",
                         "Secret Version [projects/" + std::string(kProjectNumber) + "/secrets/" +
                             secret + "/versions/" + version + "] not found."),
            "application/json");
        return;
    }
    const Version& v = it->second[number - 1];
    if (v.state != State::enabled) {
        res.status = 400;
        res.set_content(
            google_error(400, "FAILED_PRECONDITION",
                         "Secret Version [" + name + "] is in " +
                             (v.state == State::disabled ? "DISABLED" : "DESTROYED") + " state."),
            "application/json");
        return;
    }
    nlohmann::json payload = {{"data", crypto::base64_encode(v.data)}};
    if (send_crc_) {
        const uint32_t crc = crc32c(v.data) ^ (corrupt_crc_ ? 1u : 0u);
        payload["dataCrc32c"] = std::to_string(crc);
    }
    res.status = 200;
    res.set_content(nlohmann::json{{"name", name}, {"payload", payload}}.dump(),
                    "application/json");
}

void FakeSecretManager::on_token(const httplib::Request& req, httplib::Response& res) {
    ++token_requests_;
    const auto reject = [&](const std::string& error, const std::string& description,
                            bool is_problem) {
        if (is_problem) problem("token request: " + description);
        res.status = 400;
        res.set_content(oauth_error(error, description), "application/json");
    };
    if (!req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded")) {
        return reject("invalid_request", "Content-Type is not a form", true);
    }
    if (!req.body.starts_with(kGrantPrefix)) {
        return reject("unsupported_grant_type", "Invalid grant_type or parameter order", true);
    }
    const std::string jwt = req.body.substr(std::string_view(kGrantPrefix).size());
    const size_t dot1 = jwt.find('.');
    const size_t dot2 = dot1 == std::string::npos ? dot1 : jwt.find('.', dot1 + 1);
    if (dot2 == std::string::npos || jwt.find('.', dot2 + 1) != std::string::npos) {
        return reject("invalid_grant", "Invalid JWT: not a compact JWS", true);
    }
    const auto header_text = crypto::base64url_decode(std::string_view(jwt).substr(0, dot1));
    const auto claims_text =
        crypto::base64url_decode(std::string_view(jwt).substr(dot1 + 1, dot2 - dot1 - 1));
    const auto signature = crypto::base64url_decode(std::string_view(jwt).substr(dot2 + 1));
    if (!header_text || !claims_text || !signature) {
        return reject("invalid_grant", "Invalid JWT: not base64url", true);
    }
    const auto header = nlohmann::json::parse(*header_text, nullptr, false);
    const auto claims = nlohmann::json::parse(*claims_text, nullptr, false);
    if (!header.is_object() || !claims.is_object()) {
        return reject("invalid_grant", "Invalid JWT: not JSON", true);
    }
    if (header.value("alg", "") != "RS256" || header.value("typ", "") != "JWT" ||
        header.value("kid", "") != key_id_) {
        return reject("invalid_grant", "Invalid JWT header: " + header.dump(), true);
    }
    // A key the account does not have (rotated, deleted) fails here: no problem.
    if (!verify_rs256(public_key_.get(), std::string_view(jwt).substr(0, dot2), *signature)) {
        return reject("invalid_grant", "Invalid JWT Signature.", false);
    }
    const int64_t now = now_;
    if (claims.value("iss", "") != client_email_ || claims.value("scope", "") != kScope ||
        claims.value("aud", "") != url("/token") || !claims.contains("iat") ||
        !claims["iat"].is_number_integer() || !claims.contains("exp") ||
        !claims["exp"].is_number_integer()) {
        return reject("invalid_grant", "Invalid JWT claims: " + claims.dump(), true);
    }
    const int64_t iat = claims["iat"].get<int64_t>();
    const int64_t exp = claims["exp"].get<int64_t>();
    if (exp - iat != 3600 || iat > now + 60 || iat < now - 300) {
        return reject("invalid_grant",
                      "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                      "reasonable timeframe. Check your iat and exp values in the JWT claim.",
                      true);
    }
    const std::string token = new_token();
    accept_token(token);
    res.status = 200;
    res.set_content(nlohmann::json{{"access_token", token},
                                   {"expires_in", token_lifetime_.load()},
                                   {"token_type", "Bearer"}}
                        .dump(),
                    "application/json");
}

FakeMetadataServer::FakeMetadataServer() {
    server_.set_keep_alive_timeout(1);
    server_.Get(R"(/computeMetadata/v1/instance/service-accounts/([^/]+)/token)",
                [this](const httplib::Request& req, httplib::Response& res) {
                    ++token_requests_;
                    if (!impostor_) res.set_header("Metadata-Flavor", "Google");
                    if (!req.params.empty()) {
                        std::lock_guard lock(mutex_);
                        problems_.push_back("token request has a query: " + req.target);
                    }
                    // The metadata server refuses requests without the header (a
                    // guard against SSRF through naive proxies).
                    if (req.get_header_value("Metadata-Flavor") != "Google") {
                        std::lock_guard lock(mutex_);
                        problems_.push_back("token request without Metadata-Flavor: Google");
                        res.status = 403;
                        res.set_content("Missing Metadata-Flavor:Google header.", "text/plain");
                        return;
                    }
                    std::unique_lock lock(mutex_);
                    if (!failures_.empty()) {
                        auto [status, body] = std::move(failures_.front());
                        failures_.erase(failures_.begin());
                        res.status = status;
                        res.set_content(body, "text/plain");
                        return;
                    }
                    const std::string account = req.matches[1];
                    const bool known =
                        !accounts_.empty() &&
                        (account == "default" ||
                         std::find(accounts_.begin(), accounts_.end(), account) != accounts_.end());
                    lock.unlock();
                    if (!known) {
                        res.status = 404;
                        res.set_content("Not Found", "text/plain");
                        return;
                    }
                    const std::string token = new_token();
                    if (api_ != nullptr) api_->accept_token(token);
                    res.status = 200;
                    res.set_content(nlohmann::json{{"access_token", token},
                                                   {"expires_in", token_lifetime_.load()},
                                                   {"token_type", "Bearer"}}
                                        .dump(),
                                    "application/json");
                });
    server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex_);
        problems_.push_back("unexpected request " + req.path);
        res.status = 404;
    });
}

FakeMetadataServer::~FakeMetadataServer() {
    stop();
}

void FakeMetadataServer::start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) die("could not bind 127.0.0.1:0");
    thread_ = std::thread([this] {
        server_.listen_after_bind();
        finished_ = true;
    });
    // Polling a state flag, not sleeping for a guessed time.
    while (!server_.is_running() && !finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void FakeMetadataServer::stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
}

void FakeMetadataServer::attach(const std::string& email) {
    std::lock_guard lock(mutex_);
    accounts_.push_back(email);
}

void FakeMetadataServer::fail_next(int status, std::string body) {
    std::lock_guard lock(mutex_);
    failures_.push_back({status, std::move(body)});
}

std::vector<std::string> FakeMetadataServer::problems() const {
    std::lock_guard lock(mutex_);
    return problems_;
}

namespace {

egress::PolicyOptions network_policy(int https_port, int http_port, bool plaintext_rule) {
    egress::PolicyOptions options;
    options.allow.push_back(
        egress::AllowRule{.host = "127.0.0.1", .port = https_port, .origin = "test https"});
    if (http_port > 0) {
        options.allow.push_back(egress::AllowRule{.host = "127.0.0.1",
                                                  .port = http_port,
                                                  .origin = "test metadata",
                                                  .plaintext_http = plaintext_rule});
    }
    return options;
}

}  // namespace

TestNetwork::TestNetwork(int https_port, int http_port, bool plaintext_rule)
    : ca_file_(
          agent::testing::write_test_file(dir_.file("ca.pem"), agent::testing::pki().ca.cert_pem)),
      policy_(network_policy(https_port, http_port, plaintext_rule)) {}

std::unique_ptr<egress::Transport> TestNetwork::transport() const {
    egress::HttpClient::Options options;
    options.ca_file = ca_file_;
    options.policy = &policy_;
    options.connect_timeout = std::chrono::milliseconds(5000);
    auto client = egress::HttpClient::create(std::move(options));
    if (!client) die("HttpClient::create");
    return std::make_unique<egress::HttpClient>(std::move(*client));
}

Result<egress::HttpResponse> RecordingTransport::send(const egress::HttpRequest& request) {
    {
        std::lock_guard lock(mutex_);
        sent_.push_back(
            {request.method, request.url, request.timeout,
             request.authorization.has_value() &&
                 request.authorization->scheme == egress::Authorization::Scheme::bearer});
    }
    return inner_->send(request);
}

std::vector<SentRequest> RecordingTransport::sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
}

}  // namespace sa::agent::secrets::gcp::testing
