#pragma once
// Test-only loopback stand-ins for the two AWS APIs the store uses, each on
// its own TlsTestServer (127.0.0.1:0), faithful to the documented wire
// protocol:
// - Secrets Manager GetSecretValue (JSON 1.1 protocol):
//   https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
//   https://docs.aws.amazon.com/secretsmanager/latest/apireference/CommonErrors.html
//   Every request's SigV4 signature is verified by recomputing it from the
//   received request with the known secret key (an implementation separate
//   from sigv4.cpp), as AWS does.
// - STS AssumeRoleWithWebIdentity (query protocol, XML answers):
//   https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html
//   https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
// What a request gets wrong (method, path, headers, body shape, a missing
// or bad signature) is answered with AWS's documented error AND recorded in
// violations(), which every test expects empty unless it provokes one.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/auth/clock.h"
#include "agent/egress/testing/tls_test_server.h"

namespace sa::agent::secrets::aws::fake {

class FakeClock final : public auth::Clock {
  public:
    explicit FakeClock(int64_t now) : now_(now) {}
    int64_t now_seconds() const override { return now_.load(); }
    void advance(int64_t seconds) { now_ += seconds; }

  private:
    std::atomic<int64_t> now_;
};

class FakeAws final {
  public:
    static constexpr const char* kRegion = "eu-west-1";
    static constexpr const char* kAccount = "123456789012";

    explicit FakeAws(const FakeClock& clock);
    ~FakeAws();
    FakeAws(const FakeAws&) = delete;
    FakeAws& operator=(const FakeAws&) = delete;

    // Configuration: call before start() or between requests.
    // An access key the service accepts; a non-empty session_token must then
    // accompany it (X-Amz-Security-Token), as for temporary credentials.
    void add_access_key(const std::string& id, const std::string& secret,
                        const std::string& session_token = {}, int64_t expiration = 0);
    // A secret version with its staging labels ("AWSCURRENT", ...).
    void put_string(const std::string& name, const std::string& value,
                    std::vector<std::string> stages = {"AWSCURRENT"});
    void put_binary(const std::string& name, const std::string& bytes);
    void deny(const std::string& name);  // AccessDeniedException for this secret
    // The next GetSecretValue (after its signature was verified) gets this
    // answer instead.
    void fail_next(int status, std::string body,
                   std::string content_type = "application/x-amz-json-1.1");
    // Temporary credentials issued so far are rejected as expired.
    void expire_issued_credentials();

    // STS: the role and token AssumeRoleWithWebIdentity accepts.
    void expect_web_identity(const std::string& role_arn, const std::string& token);
    void fail_next_sts(int status, std::string body);

    void start();
    std::string secrets_url() const { return secrets_.url(); }
    std::string sts_url() const { return sts_.url(); }
    int secrets_port() const { return secrets_.port(); }

    int get_secret_value_calls() const { return get_calls_.load(); }
    int assume_role_calls() const { return sts_calls_.load(); }
    std::vector<std::string> violations() const;
    // Secrets Manager requests refused for their signature (never a violation
    // when a test sends a wrong key on purpose).
    int signature_failures() const { return signature_failures_.load(); }
    std::string last_session_name() const;

    // The ARN the fake gives a secret: arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf
    static std::string arn_of(const std::string& name);

  private:
    struct Version {
        std::optional<std::string> string;
        std::optional<std::string> binary;
        std::vector<std::string> stages;
        std::string version_id;
    };
    struct AccessKey {
        std::string secret;
        std::string session_token;
        int64_t expiration = 0;  // 0: never
        bool issued = false;     // by AssumeRoleWithWebIdentity
    };
    struct Failure {
        int status;
        std::string body;
        std::string content_type;
    };

    void handle_get_secret_value(const httplib::Request& req, httplib::Response& res);
    void handle_assume_role(const httplib::Request& req, httplib::Response& res);
    // nullopt when the signature holds; else the documented error (__type, message).
    std::optional<std::pair<std::string, std::string>> verify_signature(
        const httplib::Request& req);
    void violation(std::string what);

    const FakeClock& clock_;
    agent::testing::TlsTestServer secrets_;
    agent::testing::TlsTestServer sts_;

    mutable std::mutex mutex_;
    std::map<std::string, AccessKey> keys_;
    std::map<std::string, std::vector<Version>> secrets_by_name_;
    std::set<std::string> denied_;
    std::optional<Failure> next_failure_;
    std::optional<Failure> next_sts_failure_;
    std::string role_arn_;
    std::string web_identity_token_;
    std::string last_session_name_;
    std::vector<std::string> violations_;
    int issued_ = 0;

    std::atomic<int> get_calls_{0};
    std::atomic<int> sts_calls_{0};
    std::atomic<int> signature_failures_{0};
};

}  // namespace sa::agent::secrets::aws::fake
