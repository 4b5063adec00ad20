#pragma once
// Test-only fakes of the Google endpoints the GCP secret store talks to,
// implementing the documented wire protocol and asserting every request:
//
// - FakeSecretManager (HTTPS, TlsTestServer):
//   * GET /v1/projects/{project}/secrets/{secret}/versions/{version}:access
//     https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions/access
//     answer {"name","payload":{"data": base64, "dataCrc32c": "decimal"}}
//     (https://cloud.google.com/secret-manager/docs/reference/rest/v1/SecretPayload);
//     errors in Google's format {"error":{"code","message","status"}}
//     (https://cloud.google.com/apis/design/errors): 401 UNAUTHENTICATED,
//     403 PERMISSION_DENIED, 404 NOT_FOUND, 400 FAILED_PRECONDITION for a
//     disabled/destroyed version.
//   * POST /token: Google's OAuth 2.0 token endpoint for service accounts
//     (JWT bearer grant, RFC 7523 section 2.1), as described in
//     https://developers.google.com/identity/protocols/oauth2/service-account
//     It verifies the RS256 assertion with the test key's public key and
//     checks kid, iss, scope, aud, iat and exp; errors are OAuth error
//     bodies {"error":"invalid_grant","error_description":...}.
// - FakeMetadataServer (plain http on 127.0.0.1):
//   GET /computeMetadata/v1/instance/service-accounts/{account}/token
//   requiring and answering "Metadata-Flavor: Google"
//   (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications).
//
// Requests that break the protocol are answered with an error and recorded
// in problems(); tests check it is empty.
#include <httplib.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/auth/clock.h"
#include "agent/egress/http.h"
#include "agent/egress/policy.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/openssl_ptr.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::secrets::gcp::testing {

// A throwaway RSA-2048 service-account key, and the key JSON Google's IAM
// would hand out for it (type, project_id, private_key_id, private_key,
// client_email, client_id, auth_uri, token_uri, ...).
struct TestServiceAccount {
    std::string client_email = "agent@test-project.iam.gserviceaccount.com";
    std::string private_key_id = "0123456789abcdef0123456789abcdef01234567";
    std::string private_key_pem;  // PKCS#8
    crypto::EvpPkeyPtr key;       // to verify signatures

    static TestServiceAccount generate();
    std::string key_json(const std::string& token_uri) const;
};

class FakeSecretManager final {
  public:
    enum class State { enabled, disabled, destroyed };

    // account: whose assertions /token accepts (the public key is taken).
    FakeSecretManager(std::string project, const TestServiceAccount& account);
    ~FakeSecretManager();

    void start();
    void stop();
    std::string url(const std::string& path = "") const { return tls_.url(path); }
    int port() const { return tls_.port(); }

    // Adds a version (numbered from 1) to a secret; "latest" is the newest.
    void add_version(const std::string& secret, const std::string& data,
                     State state = State::enabled);
    // Secrets the caller may not read (403 PERMISSION_DENIED).
    void deny(const std::string& secret);
    // Access tokens the API accepts (the /token endpoint adds its own).
    void accept_token(const std::string& token);
    // Forgets every accepted token: the next API call gets 401.
    void revoke_tokens();
    // The next access answers are these instead (status, body, content type).
    void fail_next(int status, std::string body, std::string content_type = "application/json");
    // Send a wrong dataCrc32c / no dataCrc32c.
    void set_corrupt_crc(bool on) { corrupt_crc_ = on; }
    void set_send_crc(bool on) { send_crc_ = on; }
    // expires_in of tokens from /token.
    void set_token_lifetime(int seconds) { token_lifetime_ = seconds; }
    // The time /token checks iat/exp against (Unix seconds).
    void set_now(int64_t now) { now_ = now; }

    int access_requests() const { return access_requests_; }
    int token_requests() const { return token_requests_; }
    std::vector<std::string> problems() const;

  private:
    void on_access(const httplib::Request& req, httplib::Response& res);
    void on_token(const httplib::Request& req, httplib::Response& res);
    void problem(std::string text);

    struct Version {
        std::string data;
        State state;
    };
    std::string project_;
    std::string client_email_;
    std::string key_id_;
    crypto::EvpPkeyPtr public_key_;
    agent::testing::TlsTestServer tls_;

    mutable std::mutex mutex_;
    std::map<std::string, std::vector<Version>> secrets_;
    std::set<std::string> denied_;
    std::set<std::string> tokens_;
    std::vector<std::pair<int, std::pair<std::string, std::string>>> failures_;
    std::vector<std::string> problems_;
    std::atomic<bool> corrupt_crc_{false};
    std::atomic<bool> send_crc_{true};
    std::atomic<int> token_lifetime_{3599};
    std::atomic<int64_t> now_;
    std::atomic<int> access_requests_{0};
    std::atomic<int> token_requests_{0};
};

class FakeMetadataServer final {
  public:
    FakeMetadataServer();
    ~FakeMetadataServer();

    void start();  // binds 127.0.0.1:0
    void stop();
    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    // Service accounts attached to the "instance"; "default" aliases the first.
    void attach(const std::string& email);
    // Issues tokens into this sink (the FakeSecretManager that accepts them).
    void issue_to(FakeSecretManager* api) { api_ = api; }
    void set_token_lifetime(int seconds) { token_lifetime_ = seconds; }
    // Answer without "Metadata-Flavor: Google" (an impostor).
    void set_impostor(bool on) { impostor_ = on; }
    void fail_next(int status, std::string body);

    int token_requests() const { return token_requests_; }
    std::vector<std::string> problems() const;

  private:
    httplib::Server server_;
    std::thread thread_;
    std::atomic<bool> finished_{false};
    int port_ = 0;
    FakeSecretManager* api_ = nullptr;
    mutable std::mutex mutex_;
    std::vector<std::string> accounts_;
    std::vector<std::pair<int, std::string>> failures_;
    std::vector<std::string> problems_;
    std::atomic<int> token_lifetime_{3599};
    std::atomic<bool> impostor_{false};
    std::atomic<int> token_requests_{0};
};

// A clock the test moves.
class FakeClock final : public auth::Clock {
  public:
    explicit FakeClock(int64_t now) : now_(now) {}
    int64_t now_seconds() const override { return now_; }
    void advance(int64_t seconds) { now_ += seconds; }

  private:
    std::atomic<int64_t> now_;
};

// The network as the agent sets it up: an egress policy allowing the fake
// API over https (https_port) and, when http_port is set, the fake metadata
// server over plain http (an allow rule with plaintext_http unless
// plaintext_rule is false), and HttpClients trusting the test CA.
class TestNetwork final {
  public:
    TestNetwork(int https_port, int http_port, bool plaintext_rule = true);
    std::unique_ptr<egress::Transport> transport() const;

  private:
    sa::testing::TempDir dir_{"sa-gcp-"};
    std::string ca_file_;
    egress::EgressPolicy policy_;
};

// What a store sent (no credentials), recorded by RecordingTransport.
struct SentRequest {
    std::string method;
    std::string url;
    std::chrono::milliseconds timeout{0};
    bool bearer = false;  // an Authorization: Bearer was attached
};

// Forwards to another transport and records each request.
class RecordingTransport final : public egress::Transport {
  public:
    explicit RecordingTransport(std::unique_ptr<egress::Transport> inner)
        : inner_(std::move(inner)) {}
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override;
    std::vector<SentRequest> sent() const;

  private:
    std::unique_ptr<egress::Transport> inner_;
    mutable std::mutex mutex_;
    std::vector<SentRequest> sent_;
};

}  // namespace sa::agent::secrets::gcp::testing
