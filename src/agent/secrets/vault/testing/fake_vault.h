#pragma once
// Test-only fake of the parts of HashiCorp Vault's HTTP API that
// VaultSecretStore uses, on a loopback TLS server (TlsTestServer), written
// from Vault's API documentation:
//   KV v2 read secret version
//     https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2#read-secret-version
//   AppRole login   https://developer.hashicorp.com/vault/api-docs/auth/approle#login-with-approle
//   Kubernetes login https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#login
//   Token renew-self https://developer.hashicorp.com/vault/api-docs/auth/token#renew-a-token-self
//   Token header     https://developer.hashicorp.com/vault/docs/auth/token (X-Vault-Token
//                    or Authorization: Bearer)
//   Errors/statuses  https://developer.hashicorp.com/vault/api-docs#error-response and
//                    #http-status-codes ({"errors":[...]}; 404 {"errors":[]}; 403
//                    permission denied; 412 consistency; 429; 503 sealed)
//   Namespaces       https://developer.hashicorp.com/vault/docs/enterprise/namespaces
//                    (X-Vault-Namespace header)
// Every request is recorded (method, raw target, headers that matter,
// body) so tests assert exactly what the store sent; requests the docs do
// not allow (a token on a login, missing fields) fail the running test.
// Tokens expire by the Clock the test controls. Thread-safe.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/auth/clock.h"
#include "agent/egress/testing/tls_test_server.h"

namespace sa::agent::secrets::vault::testing {

// A clock the test moves by hand.
class ManualClock final : public auth::Clock {
  public:
    int64_t now_seconds() const override {
        std::lock_guard lock(mutex_);
        return now_;
    }
    void advance(int64_t seconds) {
        std::lock_guard lock(mutex_);
        now_ += seconds;
    }

  private:
    mutable std::mutex mutex_;
    int64_t now_ = 1'800'000'000;
};

class FakeVault final {
  public:
    struct Options {
        std::string kv_mount = "secret";
        std::string approle_mount = "approle";
        std::string kubernetes_mount = "kubernetes";
        // When set, every request must carry X-Vault-Namespace with it
        // (tokens live in that namespace; another one gets 403).
        std::string namespace_;
        // Plain http on 127.0.0.1 (a Vault dev server or a local agent
        // listener) instead of https.
        bool plaintext = false;
    };

    // What a token (or a role's tokens) may do and how long it lives.
    struct TokenPolicy {
        // Secret paths (inside the KV mount) the token may read: exact
        // paths, or prefixes ending in '*'; {"*"} for all.
        std::vector<std::string> readable = {"*"};
        int64_t ttl = 0;  // lease_duration in seconds; 0 = never expires
        bool renewable = false;
        int64_t max_ttl = 0;  // renewals never go past issue + max_ttl (0 = no cap)
    };

    struct Seen {
        std::string method;
        std::string target;        // raw request target: encoded path and query
        std::string path;          // decoded path
        std::string token;         // the token sent (either header), empty if none
        std::string token_header;  // "x-vault-token" | "authorization" | ""
        std::string namespace_;    // X-Vault-Namespace, empty if none
        bool has_namespace = false;
        std::string content_type;
        std::string body;
    };

    FakeVault(const auth::Clock& clock, Options options);
    ~FakeVault();
    FakeVault(const FakeVault&) = delete;
    FakeVault& operator=(const FakeVault&) = delete;

    void start();
    void stop();
    std::string address() const;  // https://127.0.0.1:PORT (http:// when plaintext)
    int port() const;

    // --- state ---
    // Writes a new version of the secret at path (like PUT .../data/path).
    void put(const std::string& path, nlohmann::json data);
    // Soft-deletes / destroys one version (1-based).
    void delete_version(const std::string& path, int version);
    void destroy_version(const std::string& path, int version);
    // Registers a token (as an operator would hand out with `vault token create`).
    void add_token(const std::string& token, TokenPolicy policy);
    void revoke(const std::string& token);
    void revoke_all();
    void set_approle(std::string role_id, std::string secret_id, TokenPolicy policy);
    void set_kubernetes_role(std::string role, std::string jwt, TokenPolicy policy);
    // renew-self answers 400 "lease is not renewable"-style errors when false.
    void set_renewal_allowed(bool allowed);
    // Every request is answered with this status and body while set.
    void set_outage(std::optional<std::pair<int, std::string>> answer);
    // KV reads are answered with this status and raw body while set.
    void set_kv_answer(std::optional<std::pair<int, std::string>> answer);

    // --- observations ---
    std::vector<Seen> requests() const;
    int count(const std::string& method, const std::string& path_prefix) const;
    int logins() const;
    int renewals() const;
    int kv_reads() const;
    // How many distinct tokens logins issued so far.
    int issued_tokens() const;

  private:
    struct Version {
        nlohmann::json data;
        std::string created_time;
        std::string deletion_time;
        bool destroyed = false;
    };
    struct Token {
        TokenPolicy policy;
        int64_t issued_at = 0;
        int64_t expires_at = 0;  // 0: never
        bool revoked = false;
    };
    struct Role {
        std::string id;      // role_id or role name
        std::string secret;  // secret_id or jwt
        TokenPolicy policy;
    };

    void handle(const httplib::Request& req, httplib::Response& res);
    void handle_kv(const httplib::Request& req, httplib::Response& res, const Seen& seen,
                   const std::string& secret_path);
    void handle_login(httplib::Response& res, const Seen& seen, bool approle);
    void handle_renew(httplib::Response& res, const Seen& seen);
    // The token's entry when it is usable now, else null.
    Token* valid_token(const std::string& token);
    std::string issue(const TokenPolicy& policy);
    nlohmann::json auth_object(const std::string& token, const Token& entry,
                               int64_t lease_duration) const;

    const auth::Clock& clock_;
    const Options options_;
    sa::agent::testing::TlsTestServer server_;
    // Options::plaintext: the same handlers on a plain httplib::Server.
    std::unique_ptr<httplib::Server> plain_;
    std::thread plain_thread_;
    std::atomic<bool> plain_finished_{false};
    int plain_port_ = 0;

    mutable std::mutex mutex_;
    std::map<std::string, std::vector<Version>> secrets_;
    std::map<std::string, Token> tokens_;
    std::optional<Role> approle_;
    std::optional<Role> kubernetes_;
    bool renewal_allowed_ = true;
    std::optional<std::pair<int, std::string>> outage_;
    std::optional<std::pair<int, std::string>> kv_answer_;
    std::vector<Seen> seen_;
    int issued_ = 0;
};

}  // namespace sa::agent::secrets::vault::testing
