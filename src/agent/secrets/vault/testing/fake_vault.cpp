#include "agent/secrets/vault/testing/fake_vault.h"

#include <gtest/gtest.h>

#include <chrono>

#include "agent/egress/testing/test_pki.h"
#include "common/crypto/random.h"

namespace sa::agent::secrets::vault::testing {

namespace {

using json = nlohmann::json;

void answer(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
}

// Vault's error shape: {"errors":["..."]}.
void error(httplib::Response& res, int status, std::vector<std::string> messages) {
    answer(res, status, json{{"errors", std::move(messages)}});
}

// The text Vault sends for a policy refusal.
const char* const kPermissionDenied = "1 error occurred:\n\t* permission denied\n\n";

std::string rfc3339(int64_t unix_seconds) {
    // Not a real calendar conversion: the store never parses it, the shape
    // is what matters.
    return "2027-01-15T08:00:" + std::to_string(10 + unix_seconds % 50) + ".123456789Z";
}

bool allows(const std::vector<std::string>& readable, const std::string& path) {
    for (const auto& pattern : readable) {
        if (pattern == "*" || pattern == path) return true;
        if (pattern.ends_with('*') && path.starts_with(pattern.substr(0, pattern.size() - 1))) {
            return true;
        }
    }
    return false;
}

}  // namespace

FakeVault::FakeVault(const auth::Clock& clock, Options options)
    : clock_(clock), options_(std::move(options)), server_(sa::agent::testing::pki()) {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
        handle(req, res);
    };
    if (options_.plaintext) {
        plain_ = std::make_unique<httplib::Server>();
        plain_->set_keep_alive_timeout(1);
    }
    httplib::Server& server = plain_ ? *plain_ : server_.http();
    server.Get(R"(/v1/.*)", handler);
    server.Post(R"(/v1/.*)", handler);
    server.Put(R"(/v1/.*)", handler);
}

FakeVault::~FakeVault() {
    stop();
}

void FakeVault::start() {
    if (!plain_) {
        server_.start();
        return;
    }
    plain_port_ = plain_->bind_to_any_port("127.0.0.1");
    ASSERT_GT(plain_port_, 0) << "could not bind 127.0.0.1:0";
    plain_thread_ = std::thread([this] {
        plain_->listen_after_bind();
        plain_finished_ = true;
    });
    // Polling the server's state, not sleeping for a guessed time.
    while (!plain_->is_running() && !plain_finished_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void FakeVault::stop() {
    if (!plain_) {
        server_.stop();
        return;
    }
    if (!plain_thread_.joinable()) return;
    plain_->stop();
    plain_thread_.join();
}

std::string FakeVault::address() const {
    return plain_ ? "http://127.0.0.1:" + std::to_string(plain_port_) : server_.url();
}

int FakeVault::port() const {
    return plain_ ? plain_port_ : server_.port();
}

void FakeVault::put(const std::string& path, json data) {
    std::lock_guard lock(mutex_);
    auto& versions = secrets_[path];
    versions.push_back(Version{std::move(data), rfc3339(clock_.now_seconds()), "", false});
}

void FakeVault::delete_version(const std::string& path, int version) {
    std::lock_guard lock(mutex_);
    secrets_.at(path).at(version - 1).deletion_time = rfc3339(clock_.now_seconds());
}

void FakeVault::destroy_version(const std::string& path, int version) {
    std::lock_guard lock(mutex_);
    secrets_.at(path).at(version - 1).destroyed = true;
}

void FakeVault::add_token(const std::string& token, TokenPolicy policy) {
    std::lock_guard lock(mutex_);
    const int64_t now = clock_.now_seconds();
    tokens_[token] = Token{policy, now, policy.ttl > 0 ? now + policy.ttl : 0, false};
}

void FakeVault::revoke(const std::string& token) {
    std::lock_guard lock(mutex_);
    tokens_.at(token).revoked = true;
}

void FakeVault::revoke_all() {
    std::lock_guard lock(mutex_);
    for (auto& [token, entry] : tokens_) entry.revoked = true;
}

void FakeVault::set_approle(std::string role_id, std::string secret_id, TokenPolicy policy) {
    std::lock_guard lock(mutex_);
    approle_ = Role{std::move(role_id), std::move(secret_id), std::move(policy)};
}

void FakeVault::set_kubernetes_role(std::string role, std::string jwt, TokenPolicy policy) {
    std::lock_guard lock(mutex_);
    kubernetes_ = Role{std::move(role), std::move(jwt), std::move(policy)};
}

void FakeVault::set_renewal_allowed(bool allowed) {
    std::lock_guard lock(mutex_);
    renewal_allowed_ = allowed;
}

void FakeVault::set_outage(std::optional<std::pair<int, std::string>> answer) {
    std::lock_guard lock(mutex_);
    outage_ = std::move(answer);
}

void FakeVault::set_kv_answer(std::optional<std::pair<int, std::string>> answer) {
    std::lock_guard lock(mutex_);
    kv_answer_ = std::move(answer);
}

std::vector<FakeVault::Seen> FakeVault::requests() const {
    std::lock_guard lock(mutex_);
    return seen_;
}

int FakeVault::count(const std::string& method, const std::string& path_prefix) const {
    std::lock_guard lock(mutex_);
    int n = 0;
    for (const auto& seen : seen_) {
        if (seen.method == method && seen.path.starts_with(path_prefix)) ++n;
    }
    return n;
}

int FakeVault::logins() const {
    return count("POST", "/v1/auth/" + options_.approle_mount + "/login") +
           count("POST", "/v1/auth/" + options_.kubernetes_mount + "/login");
}
int FakeVault::renewals() const {
    return count("POST", "/v1/auth/token/renew-self");
}
int FakeVault::kv_reads() const {
    return count("GET", "/v1/" + options_.kv_mount + "/data/");
}
int FakeVault::issued_tokens() const {
    std::lock_guard lock(mutex_);
    return issued_;
}

FakeVault::Token* FakeVault::valid_token(const std::string& token) {
    auto it = tokens_.find(token);
    if (it == tokens_.end() || it->second.revoked) return nullptr;
    if (it->second.expires_at != 0 && clock_.now_seconds() >= it->second.expires_at) {
        return nullptr;
    }
    return &it->second;
}

std::string FakeVault::issue(const TokenPolicy& policy) {
    const std::string token = "hvs." + crypto::random_token(24);
    const int64_t now = clock_.now_seconds();
    tokens_[token] = Token{policy, now, policy.ttl > 0 ? now + policy.ttl : 0, false};
    ++issued_;
    return token;
}

json FakeVault::auth_object(const std::string& token, const Token& entry,
                            int64_t lease_duration) const {
    return json{{"client_token", token},
                {"accessor", "acc-" + token.substr(4, 8)},
                {"policies", {"default", "agent"}},
                {"token_policies", {"default", "agent"}},
                {"metadata", {{"role_name", "agent"}}},
                {"lease_duration", lease_duration},
                {"renewable", entry.policy.renewable},
                {"entity_id", "7d2e3179-f69b-450c-7179-ac8ee8bd8ca9"},
                {"token_type", "service"},
                {"orphan", true}};
}

void FakeVault::handle(const httplib::Request& req, httplib::Response& res) {
    Seen seen;
    seen.method = req.method;
    seen.target = req.target;
    seen.path = req.path;
    seen.body = req.body;
    seen.content_type = req.get_header_value("Content-Type");
    if (req.has_header("X-Vault-Token")) {
        seen.token = req.get_header_value("X-Vault-Token");
        seen.token_header = "x-vault-token";
    } else if (const std::string auth = req.get_header_value("Authorization");
               auth.starts_with("Bearer ")) {
        seen.token = auth.substr(7);
        seen.token_header = "authorization";
    }
    seen.has_namespace = req.has_header("X-Vault-Namespace");
    seen.namespace_ = req.get_header_value("X-Vault-Namespace");

    std::lock_guard lock(mutex_);
    seen_.push_back(seen);
    if (outage_) {
        res.status = outage_->first;
        res.set_content(outage_->second, "application/json");
        return;
    }
    if (seen.namespace_ != options_.namespace_) {
        // The token and the mounts live in another namespace.
        error(res, 403, {kPermissionDenied});
        return;
    }
    const std::string kv_prefix = "/v1/" + options_.kv_mount + "/data/";
    if (req.method == "GET" && req.path.starts_with(kv_prefix)) {
        handle_kv(req, res, seen, req.path.substr(kv_prefix.size()));
    } else if (req.method == "POST" &&
               req.path == "/v1/auth/" + options_.approle_mount + "/login") {
        handle_login(res, seen, /*approle=*/true);
    } else if (req.method == "POST" &&
               req.path == "/v1/auth/" + options_.kubernetes_mount + "/login") {
        handle_login(res, seen, /*approle=*/false);
    } else if ((req.method == "POST" || req.method == "PUT") &&
               req.path == "/v1/auth/token/renew-self") {
        handle_renew(res, seen);
    } else {
        ADD_FAILURE() << "fake Vault: unexpected request " << req.method << " " << req.target;
        error(res, 404, {});
    }
}

void FakeVault::handle_kv(const httplib::Request& req, httplib::Response& res, const Seen& seen,
                          const std::string& secret_path) {
    EXPECT_TRUE(seen.body.empty()) << "KV read has no body";
    Token* token = valid_token(seen.token);
    if (token == nullptr || !allows(token->policy.readable, secret_path)) {
        error(res, 403, {kPermissionDenied});
        return;
    }
    for (const auto& [name, value] : req.params) {
        EXPECT_EQ(name, "version") << "KV v2 read takes only ?version";
    }
    if (kv_answer_) {
        res.status = kv_answer_->first;
        res.set_content(kv_answer_->second, "application/json");
        return;
    }
    auto it = secrets_.find(secret_path);
    if (it == secrets_.end()) {
        error(res, 404, {});
        return;
    }
    int version = static_cast<int>(it->second.size());
    if (req.has_param("version")) {
        const std::string text = req.get_param_value("version");
        if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
            error(res, 400, {"error parsing version: invalid syntax"});
            return;
        }
        const int asked = std::stoi(text);
        if (asked != 0) version = asked;  // 0 means the latest, as in Vault
    }
    if (version < 1 || version > static_cast<int>(it->second.size())) {
        error(res, 404, {});
        return;
    }
    const Version& v = it->second.at(version - 1);
    const bool gone = v.destroyed || !v.deletion_time.empty();
    const json body = {{"request_id", crypto::uuid_v4()},
                       {"lease_id", ""},
                       {"renewable", false},
                       {"lease_duration", 0},
                       {"data",
                        {{"data", gone ? json(nullptr) : v.data},
                         {"metadata",
                          {{"created_time", v.created_time},
                           {"custom_metadata", nullptr},
                           {"deletion_time", v.deletion_time},
                           {"destroyed", v.destroyed},
                           {"version", version}}}}},
                       {"wrap_info", nullptr},
                       {"warnings", nullptr},
                       {"auth", nullptr}};
    // A deleted or destroyed version: 404 with the metadata, as Vault does.
    answer(res, gone ? 404 : 200, body);
}

void FakeVault::handle_login(httplib::Response& res, const Seen& seen, bool approle) {
    EXPECT_TRUE(seen.token.empty()) << "a login must not carry a token";
    EXPECT_EQ(seen.content_type, "application/json");
    const json body = json::parse(seen.body, nullptr, false);
    const char* const id_field = approle ? "role_id" : "role";
    const char* const secret_field = approle ? "secret_id" : "jwt";
    const bool well_formed = body.is_object() && body.size() == 2 && body.contains(id_field) &&
                             body.contains(secret_field) && body[id_field].is_string() &&
                             body[secret_field].is_string();
    EXPECT_TRUE(well_formed) << "login body must be {\"" << id_field << "\",\"" << secret_field
                             << "\"}";
    if (!well_formed) {
        error(res, 400, {std::string("missing ") + id_field});
        return;
    }
    const std::optional<Role>& role = approle ? approle_ : kubernetes_;
    const std::string id = body[id_field].get<std::string>();
    const std::string secret = body[secret_field].get<std::string>();
    if (!role || role->id != id) {
        if (approle) {
            error(res, 400, {"invalid role or secret ID"});
        } else {
            error(res, 400, {"invalid role name \"" + id + "\""});
        }
        return;
    }
    if (role->secret != secret) {
        if (approle) {
            error(res, 400, {"invalid role or secret ID"});
        } else {
            error(res, 403, {"permission denied"});
        }
        return;
    }
    const std::string token = issue(role->policy);
    const json reply = {{"request_id", crypto::uuid_v4()},
                        {"lease_id", ""},
                        {"renewable", false},
                        {"lease_duration", 0},
                        {"data", nullptr},
                        {"wrap_info", nullptr},
                        {"warnings", nullptr},
                        {"auth", auth_object(token, tokens_.at(token), role->policy.ttl)}};
    answer(res, 200, reply);
}

void FakeVault::handle_renew(httplib::Response& res, const Seen& seen) {
    if (!seen.body.empty()) {
        const json body = json::parse(seen.body, nullptr, false);
        EXPECT_TRUE(body.is_object()) << "renew-self body must be a JSON object";
        for (const auto& [name, value] : body.items()) {
            EXPECT_EQ(name, "increment") << "renew-self takes only increment";
        }
    }
    Token* token = valid_token(seen.token);
    if (token == nullptr) {
        error(res, 403, {"permission denied"});
        return;
    }
    if (!renewal_allowed_ || !token->policy.renewable) {
        error(res, 400, {"lease is not renewable"});
        return;
    }
    const int64_t now = clock_.now_seconds();
    int64_t granted = token->policy.ttl;
    std::vector<std::string> warnings;
    if (token->policy.max_ttl > 0) {
        const int64_t left = token->issued_at + token->policy.max_ttl - now;
        if (left < granted) {
            granted = std::max<int64_t>(left, 0);
            warnings.push_back("TTL of \"" + std::to_string(token->policy.ttl) +
                               "s\" exceeded the effective max_ttl of \"" + std::to_string(left) +
                               "s\"; TTL value is capped accordingly");
        }
    }
    token->expires_at = now + granted;
    json reply = {{"request_id", crypto::uuid_v4()},
                  {"lease_id", ""},
                  {"renewable", false},
                  {"lease_duration", 0},
                  {"data", nullptr},
                  {"wrap_info", nullptr},
                  {"warnings", warnings.empty() ? json(nullptr) : json(warnings)},
                  {"auth", auth_object(seen.token, *token, granted)}};
    answer(res, 200, reply);
}

}  // namespace sa::agent::secrets::vault::testing
