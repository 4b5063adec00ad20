#include "agent/egress/http_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>

#include "agent/egress/policy.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"

namespace sa::agent::egress {
namespace {

namespace fs = std::filesystem;
using testing::other_pki;
using testing::pki;
using testing::TestPki;
using testing::TlsTestServer;

class HttpClientTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-egress-" + crypto::random_token(8));
        ca_file_ = testing::write_test_file((dir_ / "ca.pem").string(), pki().ca.cert_pem);
        other_ca_file_ =
            testing::write_test_file((dir_ / "other-ca.pem").string(), other_pki().ca.cert_pem);
    }
    void TearDown() override { fs::remove_all(dir_); }

    HttpClient client(std::optional<std::string> ca_file, const std::atomic<bool>* abort = nullptr,
                      size_t max_body = 16 * 1024 * 1024) {
        HttpClient::Options options;
        options.ca_file = std::move(ca_file);
        options.abort = abort;
        options.max_response_bytes = max_body;
        options.connect_timeout = std::chrono::milliseconds(5000);
        auto made = HttpClient::create(options);
        EXPECT_TRUE(made);
        return std::move(*made);
    }

    static HttpRequest get(const std::string& url) {
        HttpRequest request;
        request.url = url;
        request.timeout = std::chrono::milliseconds(10'000);
        return request;
    }

    fs::path dir_;
    std::string ca_file_;
    std::string other_ca_file_;
};

TEST_F(HttpClientTest, TrustedCaSucceedsAndHeadersAreLowerCased) {
    TlsTestServer server(pki());
    server.http().Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
        res.set_header("Retry-After", "7");
        res.set_header("WWW-Authenticate", "Bearer realm=\"hub\"");
        res.set_content("got " + req.body + " " + req.get_header_value("X-Test"), "text/plain");
    });
    server.start();

    HttpRequest request = get(server.url("/echo"));
    request.method = "POST";
    request.body = "payload";
    request.headers = {{"X-Test", "yes"}, {"Content-Type", "text/plain"}};
    auto c = client(ca_file_);
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "got payload yes");
    ASSERT_NE(response->header("retry-after"), nullptr);
    EXPECT_EQ(*response->header("retry-after"), "7");
    ASSERT_NE(response->header("content-type"), nullptr);
    EXPECT_EQ(*response->header("content-type"), "text/plain");
    ASSERT_NE(response->header("www-authenticate"), nullptr);
    EXPECT_EQ(response->header("Retry-After"), nullptr);  // names are stored lower case
}

TEST_F(HttpClientTest, ReusesTheConnection) {
    TlsTestServer server(pki());
    std::mutex mutex;
    std::set<int> client_ports;
    server.http().Get("/", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        client_ports.insert(req.remote_port);
        res.set_content("ok", "text/plain");
    });
    server.start();
    auto c = client(ca_file_);
    for (int i = 0; i < 3; ++i) {
        auto response = c.send(get(server.url("/")));
        ASSERT_TRUE(response) << response.error().describe();
    }
    std::lock_guard lock(mutex);
    EXPECT_EQ(client_ports.size(), 1u);
}

TEST_F(HttpClientTest, WrongCaFailsWithTlsError) {
    TlsTestServer server(pki());
    server.http().Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("should not be reached", "text/plain");
    });
    server.start();
    auto c = client(other_ca_file_);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_EQ(response.error().message.rfind("TLS handshake with 127.0.0.1 failed: ", 0), 0u)
        << response.error().message;
}

TEST_F(HttpClientTest, SystemTrustStoreDoesNotTrustTestCa) {
    TlsTestServer server(pki());
    server.http().Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("x", "text/plain");
    });
    server.start();
    auto c = client(std::nullopt);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_NE(response.error().message.find("TLS handshake"), std::string::npos);
}

TEST_F(HttpClientTest, PlainHttpIsRefusedBeforeConnecting) {
    auto c = client(ca_file_);
    for (const char* url : {"http://127.0.0.1:1/", "HTTP://127.0.0.1:1/", "ftp://127.0.0.1/x",
                            "file:///etc/passwd"}) {
        auto response = c.send(get(url));
        ASSERT_FALSE(response) << url;
        EXPECT_EQ(response.error().code, ErrorCode::permission_denied) << url;
        EXPECT_NE(response.error().message.find("only https://"), std::string::npos);
    }
    auto malformed = c.send(get("not a url"));
    ASSERT_FALSE(malformed);
}

// The server speaks only TLS 1.1 at security level 0 (so OpenSSL's own
// defaults would allow it); the client must refuse, and its ClientHello
// must not even offer anything below TLS 1.2: that is our floor, not
// OpenSSL's.
TEST_F(HttpClientTest, RefusesTls11AndNeverOffersIt) {
    TlsTestServer::Options options;
    options.min_version = TLS1_1_VERSION;
    options.max_version = TLS1_1_VERSION;
    options.security_level = 0;
    options.ciphers = "DEFAULT:@SECLEVEL=0";
    TlsTestServer server(pki(), options);
    server.http().Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("x", "text/plain");
    });
    server.start();
    auto c = client(ca_file_);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("TLS handshake with 127.0.0.1 failed"),
              std::string::npos)
        << response.error().message;

    const auto offered = server.offered_versions();
    ASSERT_FALSE(offered.empty());
    for (const auto& hello : offered) {
        ASSERT_FALSE(hello.empty());
        for (int version : hello) EXPECT_GE(version, TLS1_2_VERSION) << std::hex << version;
    }
}

TEST_F(HttpClientTest, NegotiatesTls12WhenServerCapsThere) {
    TlsTestServer::Options options;
    options.max_version = TLS1_2_VERSION;
    TlsTestServer server(pki(), options);
    server.http().Get("/", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("x", "text/plain");
    });
    server.start();
    auto c = client(ca_file_);
    auto response = c.send(get(server.url("/")));
    ASSERT_TRUE(response) << response.error().describe();
    // TLS 1.3 is offered too: the floor is a floor, not a pin.
    const auto offered = server.offered_versions();
    ASSERT_FALSE(offered.empty());
    EXPECT_NE(std::find(offered[0].begin(), offered[0].end(), TLS1_3_VERSION), offered[0].end());
}

TEST_F(HttpClientTest, RedirectsAreNotFollowed) {
    TlsTestServer server(pki());
    std::atomic<int> target_hits{0};
    server.http().Get("/redirect", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(server.url("/target"));
    });
    server.http().Get("/target", [&](const httplib::Request&, httplib::Response& res) {
        ++target_hits;
        res.set_content("target", "text/plain");
    });
    server.start();
    auto c = client(ca_file_);
    auto response = c.send(get(server.url("/redirect")));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 302);
    ASSERT_NE(response->header("location"), nullptr);
    EXPECT_EQ(target_hits.load(), 0);
}

TEST_F(HttpClientTest, LineBreaksInHeadersAreRefused) {
    auto c = client(ca_file_);
    HttpRequest request = get("https://127.0.0.1:1/");
    request.headers = {{"X-Lease-Id", "L1\r\nX-Evil: 1"}};
    auto response = c.send(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::invalid_argument);

    const auto token = secrets::SecretValue::copy_of("tok\nX-Evil: 1");
    request.headers.clear();
    request.authorization = Authorization::bearer(token);
    response = c.send(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(response.error().message.find("Evil"), std::string::npos);
}

TEST_F(HttpClientTest, ConnectionRefusedIsUnavailable) {
    int port = 0;
    {
        TlsTestServer server(pki());
        server.start();
        port = server.port();
    }
    auto c = client(ca_file_);
    auto response = c.send(get("https://127.0.0.1:" + std::to_string(port) + "/"));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_EQ(response.error().message.rfind("cannot reach 127.0.0.1", 0), 0u)
        << response.error().message;
}

TEST_F(HttpClientTest, TimeoutIsUnavailable) {
    TlsTestServer server(pki());
    std::mutex mutex;
    std::condition_variable cv;
    bool release = false;
    server.http().Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, std::chrono::seconds(5), [&] { return release; });
        res.set_content("late", "text/plain");
    });
    server.start();
    auto c = client(ca_file_);
    HttpRequest request = get(server.url("/slow"));
    request.timeout = std::chrono::milliseconds(300);
    auto response = c.send(request);
    {
        std::lock_guard lock(mutex);
        release = true;
    }
    cv.notify_all();
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("timed out"), std::string::npos);
}

TEST_F(HttpClientTest, AbortFlagInterruptsALongPollPromptly) {
    TlsTestServer server(pki());
    std::mutex mutex;
    std::condition_variable cv;
    bool release = false;
    std::promise<void> arrived;
    server.http().Post("/lease", [&](const httplib::Request&, httplib::Response& res) {
        arrived.set_value();
        std::unique_lock lock(mutex);
        cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; });
        res.status = 204;
    });
    server.start();

    std::atomic<bool> abort{false};
    auto c = client(ca_file_, &abort);
    HttpRequest request = get(server.url("/lease"));
    request.method = "POST";
    request.body = "{}";
    request.timeout = std::chrono::seconds(30);
    auto pending = std::async(std::launch::async, [&] { return c.send(request); });
    arrived.get_future().wait();
    const auto start = std::chrono::steady_clock::now();
    abort = true;
    auto response = pending.get();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    {
        std::lock_guard lock(mutex);
        release = true;
    }
    cv.notify_all();
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("aborted"), std::string::npos);
    EXPECT_LT(elapsed, std::chrono::seconds(10));  // far below the 30 s request timeout
}

TEST_F(HttpClientTest, OversizedResponseIsAnError) {
    TlsTestServer server(pki());
    server.http().Get("/big", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(64 * 1024, 'x'), "text/plain");
    });
    server.start();
    auto c = client(ca_file_, nullptr, 16 * 1024);
    auto response = c.send(get(server.url("/big")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(response.error().message.find("exceeds 16384 bytes"), std::string::npos);
}

TEST_F(HttpClientTest, AuthorizationComesFromSecretValueAndNeverFromErrors) {
    TlsTestServer server(pki());
    std::string seen;
    server.http().Get("/", [&](const httplib::Request& req, httplib::Response& res) {
        seen = req.get_header_value("Authorization");
        res.set_content("ok", "text/plain");
    });
    std::string token_header;
    server.http().Get("/own", [&](const httplib::Request& req, httplib::Response& res) {
        token_header = req.get_header_value("dapr-api-token");
        seen = req.get_header_value("Authorization");
        res.set_content("ok", "text/plain");
    });
    server.start();
    const auto token = secrets::SecretValue::copy_of("tok-123");
    auto c = client(ca_file_);
    HttpRequest request = get(server.url("/"));
    request.authorization = Authorization::bearer(token);
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(seen, "Bearer tok-123");

    const auto basic = secrets::SecretValue::copy_of("czZCaGRSa3F0Mzo=");
    request.authorization = Authorization::basic(basic);
    ASSERT_TRUE(c.send(request));
    EXPECT_EQ(seen, "Basic czZCaGRSa3F0Mzo=");

    // A token header of the API's own (Dapr, Vault), no Authorization.
    request.url = server.url("/own");
    request.authorization = Authorization::header("dapr-api-token", token);
    ASSERT_TRUE(c.send(request));
    EXPECT_EQ(token_header, "tok-123");
    EXPECT_EQ(seen, "");
    request.authorization = Authorization::header("bad name:", token);
    auto bad_name = c.send(request);
    ASSERT_FALSE(bad_name);
    EXPECT_EQ(bad_name.error().code, ErrorCode::invalid_argument);

    // A failing request carries neither credential in its error.
    request.url = "https://127.0.0.1:1/";
    request.authorization = Authorization::bearer(token);
    auto failed = c.send(request);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().message.find("tok-123"), std::string::npos);
}

// ------------------------------------------------------------ egress policy

// Knows only what the test tells it; counts lookups. Never real DNS.
class FakeResolver final : public Resolver {
  public:
    explicit FakeResolver(std::vector<std::string> addresses) { set(std::move(addresses)); }
    void set(std::vector<std::string> addresses) {
        std::lock_guard lock(mutex_);
        addresses_ = std::move(addresses);
    }
    int calls() const { return calls_.load(); }
    Result<std::vector<IpAddress>> resolve(const std::string& host) override {
        ++calls_;
        std::lock_guard lock(mutex_);
        if (host != "hub.test") return fail(ErrorCode::unavailable, "unknown host");
        std::vector<IpAddress> out;
        for (const auto& a : addresses_) out.push_back(*IpAddress::parse(a));
        return out;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> addresses_;
    std::atomic<int> calls_{0};
};

class HttpPolicyTest : public HttpClientTest {
  protected:
    // One rule for hub.test on the server's port, naming 127.0.0.1.
    AllowRule hub_rule(int port) const {
        AllowRule rule;
        rule.host = "hub.test";
        rule.port = port;
        rule.cidrs = {*Cidr::parse("127.0.0.1/32")};
        rule.origin = "hub.url";
        return rule;
    }
    HttpClient client_with(const EgressPolicy& policy, std::optional<std::string> ca_file) {
        HttpClient::Options options;
        options.ca_file = std::move(ca_file);
        options.connect_timeout = std::chrono::milliseconds(5000);
        options.policy = &policy;
        options.on_connection = [this](const ConnectionRecord& r) { records_.push_back(r); };
        auto made = HttpClient::create(options);
        EXPECT_TRUE(made);
        return std::move(*made);
    }
    static std::string hub_url(const TlsTestServer& server, const std::string& path = "/") {
        return "https://hub.test:" + std::to_string(server.port()) + path;
    }
    static void serve_ok(TlsTestServer& server, std::atomic<int>* hits = nullptr) {
        server.http().Get("/", [hits](const httplib::Request&, httplib::Response& res) {
            if (hits != nullptr) ++*hits;
            res.set_content("hello", "text/plain");
        });
    }

    std::vector<ConnectionRecord> records_;
};

TEST_F(HttpPolicyTest, NameKnownOnlyToTheResolverConnectsToTheCheckedAddress) {
    TlsTestServer server(pki());
    serve_ok(server);
    server.start();
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    // "hub.test" is in no real DNS: success proves libcurl used the checked
    // address, and TLS verified the name hub.test (a SAN of the test cert).
    HttpRequest request = get(hub_url(server));
    request.job_id = "job-7";
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->body, "hello");
    EXPECT_EQ(resolver->calls(), 1);

    ASSERT_EQ(records_.size(), 1u);
    const ConnectionRecord& r = records_[0];
    EXPECT_EQ(r.job_id, "job-7");
    EXPECT_EQ(r.host, "hub.test");
    EXPECT_EQ(r.port, server.port());
    EXPECT_EQ(r.address, "127.0.0.1");
    EXPECT_EQ(r.decision, "allowed");
    EXPECT_EQ(r.rule, "hub.url");
    EXPECT_EQ(r.tls_version.rfind("TLSv1.", 0), 0u) << r.tls_version;
    EXPECT_FALSE(r.cipher.empty());
    EXPECT_EQ(r.pin, "none");
    EXPECT_GT(r.bytes_up, 0);
    EXPECT_GT(r.bytes_down, 5);
    EXPECT_GT(r.unix_ms, 0);
    EXPECT_EQ(r.error, "");

    // Every request is checked again, also on a kept-alive connection.
    resolver->set({"169.254.169.254"});
    auto second = c.send(get(hub_url(server)));
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(resolver->calls(), 2);
}

TEST_F(HttpPolicyTest, MetadataAddressIsRefusedAndNothingIsSent) {
    TlsTestServer server(pki());
    std::atomic<int> hits{0};
    serve_ok(server, &hits);
    server.start();
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"169.254.169.254"});
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    po.allow[0].cidrs.clear();
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    auto response = c.send(get(hub_url(server)));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: hub.test resolves to 169.254.169.254, which is link-local (denied by "
              "egress policy; allow it with a cidr entry)");
    EXPECT_TRUE(server.offered_versions().empty());
    EXPECT_EQ(hits.load(), 0);
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].decision, "denied");
    EXPECT_EQ(records_[0].rule, response.error().message);
    EXPECT_EQ(records_[0].address, "");
}

TEST_F(HttpPolicyTest, HostNotInAllowlistNeverResolves) {
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    PolicyOptions po;
    po.allow = {hub_rule(1)};
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    auto response = c.send(get("https://hub.test:2/x"));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message, "egress: hub.test:2 not in egress allowlist");
    EXPECT_EQ(resolver->calls(), 0);
    // The default port is what gets checked when the URL has none.
    auto default_port = c.send(get("https://other.test/x"));
    ASSERT_FALSE(default_port);
    EXPECT_EQ(default_port.error().message, "egress: other.test:443 not in egress allowlist");
}

TEST_F(HttpPolicyTest, SpkiPinsMatchMismatchAndRotation) {
    TlsTestServer server(pki());
    serve_ok(server);
    server.start();
    const std::string right = testing::spki_sha256(pki().server.cert_pem);
    const std::string wrong = testing::spki_sha256(other_pki().server.cert_pem);
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    const auto run = [&](std::vector<std::string> pins) {
        PolicyOptions po;
        po.allow = {hub_rule(server.port())};
        po.allow[0].spki_pins = std::move(pins);
        EgressPolicy policy(po, resolver);
        auto c = client_with(policy, ca_file_);
        return c.send(get(hub_url(server)));
    };

    auto ok = run({right});
    ASSERT_TRUE(ok) << ok.error().describe();
    EXPECT_EQ(records_.back().pin, "ok");

    auto mismatch = run({wrong});
    ASSERT_FALSE(mismatch);
    EXPECT_EQ(mismatch.error().code, ErrorCode::integrity);
    EXPECT_EQ(mismatch.error().message,
              "egress: hub.test: certificate public key does not match any pinned key "
              "(hub.url pins)");
    EXPECT_EQ(records_.back().pin, "mismatch");
    EXPECT_EQ(records_.back().error, mismatch.error().message);

    auto rotation = run({wrong, right});
    ASSERT_TRUE(rotation) << rotation.error().describe();
    EXPECT_EQ(records_.back().pin, "ok");
}

TEST_F(HttpPolicyTest, MinTls13RefusesATls12OnlyServer) {
    TlsTestServer::Options options;
    options.max_version = TLS1_2_VERSION;
    TlsTestServer server(pki(), options);
    serve_ok(server);
    server.start();
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    po.min_tls = TlsMin::v1_3;
    EgressPolicy policy(po, std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"}));
    auto c = client_with(policy, ca_file_);
    auto response = c.send(get(hub_url(server)));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("TLS handshake with hub.test failed"),
              std::string::npos)
        << response.error().message;
    const auto offered = server.offered_versions();
    ASSERT_FALSE(offered.empty());
    for (const auto& hello : offered) {
        for (int version : hello) EXPECT_GE(version, TLS1_3_VERSION) << std::hex << version;
    }
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].address, "127.0.0.1");
    EXPECT_EQ(records_[0].tls_version, "");
    EXPECT_FALSE(records_[0].error.empty());
}

TEST_F(HttpPolicyTest, RuleCaFileOverridesTheClientCa) {
    TlsTestServer server(pki());
    serve_ok(server);
    server.start();
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    po.allow[0].ca_file = ca_file_;
    EgressPolicy policy(po, std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"}));
    auto c = client_with(policy, other_ca_file_);  // would fail on its own
    auto response = c.send(get(hub_url(server)));
    ASSERT_TRUE(response) << response.error().describe();
}

TEST_F(HttpPolicyTest, IpLiteralRuleNeedsNoResolver) {
    TlsTestServer server(pki());
    server.http().Post("/up", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(std::string(3000, 'd'), "text/plain");
    });
    server.start();
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{});
    PolicyOptions po;
    AllowRule rule;
    rule.host = "127.0.0.1";
    rule.port = server.port();
    rule.origin = "egress.allow[0]";
    po.allow = {rule};
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    const std::string body(2000, 'u');
    HttpRequest request = get(server.url("/up"));
    request.method = "POST";
    request.body = body;
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(resolver->calls(), 0);
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].address, "127.0.0.1");
    EXPECT_EQ(records_[0].rule, "egress.allow[0]");
    // Headers plus bodies, both ways.
    EXPECT_GT(records_[0].bytes_up, 2000);
    EXPECT_LT(records_[0].bytes_up, 3000);
    EXPECT_GT(records_[0].bytes_down, 3000);
    EXPECT_LT(records_[0].bytes_down, 4000);
}

// A kept-alive connection to an address the latest check no longer returned
// must not be reused: the request goes to the checked address (127.0.0.2,
// where nothing listens) and fails instead of silently using 127.0.0.1.
TEST_F(HttpPolicyTest, PooledConnectionToAnUncheckedAddressIsNotReused) {
    TlsTestServer server(pki());
    serve_ok(server);
    server.start();
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    po.allow[0].cidrs = {*Cidr::parse("127.0.0.0/8")};
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    ASSERT_TRUE(c.send(get(hub_url(server))));
    ASSERT_TRUE(c.send(get(hub_url(server))));  // reuses the pooled connection

    resolver->set({"127.0.0.2"});
    auto moved = c.send(get(hub_url(server)));
    ASSERT_FALSE(moved);
    EXPECT_EQ(moved.error().code, ErrorCode::unavailable);
    ASSERT_EQ(records_.size(), 3u);
    EXPECT_EQ(records_[2].address, "127.0.0.2");

    resolver->set({"127.0.0.1"});
    auto back = c.send(get(hub_url(server)));
    ASSERT_TRUE(back) << back.error().describe();
    EXPECT_EQ(records_.back().address, "127.0.0.1");
}

// ------------------------------------------------------------ rate limit

TEST_F(HttpPolicyTest, RateLimitedUploadArrivesIntactAndIsPaced) {
    TlsTestServer server(pki());
    std::string received;
    std::string method;
    server.http().Put("/upload", [&](const httplib::Request& req, httplib::Response& res) {
        received = req.body;
        method = req.method;
        res.set_content(std::to_string(req.body.size()), "text/plain");
    });
    server.start();
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    PolicyOptions po;
    po.allow = {hub_rule(server.port())};
    po.allow[0].max_bytes_per_second = 1024 * 1024;
    po.burst_bytes = 64 * 1024;
    EgressPolicy policy(po, resolver);
    // Built from the caller's options, not the policy's copy: rules are
    // matched by origin, host and port.
    EgressRateLimiter limiter(po);

    HttpClient::Options options;
    options.ca_file = ca_file_;
    options.policy = &policy;
    options.rate_limiter = &limiter;
    options.on_connection = [this](const ConnectionRecord& r) { records_.push_back(r); };
    auto c = HttpClient::create(options);
    ASSERT_TRUE(c);

    // Not a multiple of the 16 KiB block, and every byte value.
    std::string body(256 * 1024 + 123, '\0');
    for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
    HttpRequest request = get(hub_url(server, "/upload"));
    request.method = "PUT";
    request.body = body;
    request.headers = {{"Content-Type", "application/octet-stream"}};
    const auto start = std::chrono::steady_clock::now();
    auto response = c->send(request);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(method, "PUT");
    EXPECT_EQ(received.size(), body.size());
    EXPECT_TRUE(received == body);
    // (256 KiB + 123 - 64 KiB of burst) at 1 MiB/s is at least 187 ms; a
    // lower bound only, so a slow machine cannot make this fail.
    EXPECT_GE(elapsed, std::chrono::milliseconds(180));
    ASSERT_EQ(records_.size(), 1u);
    // Headers plus the body, as without a limiter.
    EXPECT_GE(records_[0].bytes_up, static_cast<int64_t>(body.size()) + 50);
    EXPECT_LT(records_[0].bytes_up, static_cast<int64_t>(body.size()) + 1000);
}

// Waiting for tokens inside libcurl's read callback still honours the
// abort flag: a throttled upload that would take ~16 s stops at once.
TEST_F(HttpClientTest, AbortInterruptsARateLimitedUpload) {
    TlsTestServer server(pki());
    std::atomic<int> hits{0};
    server.http().Put("/upload", [&](const httplib::Request&, httplib::Response& res) {
        ++hits;
        res.set_content("ok", "text/plain");
    });
    server.start();
    PolicyOptions po;
    po.max_bytes_per_second = 64 * 1024;  // global: applies without a policy too
    EgressRateLimiter limiter(po);
    std::atomic<bool> abort{false};
    HttpClient::Options options;
    options.ca_file = ca_file_;
    options.abort = &abort;
    options.rate_limiter = &limiter;
    auto c = HttpClient::create(options);
    ASSERT_TRUE(c);
    const std::string body(1024 * 1024, 'b');
    HttpRequest request = get(server.url("/upload"));
    request.method = "PUT";
    request.body = body;
    auto pending = std::async(std::launch::async, [&] { return c->send(request); });
    // The first 64 KiB (the burst) leave at once; the rest waits.
    ASSERT_EQ(pending.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
    const auto start = std::chrono::steady_clock::now();
    abort = true;
    auto response = pending.get();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("aborted"), std::string::npos)
        << response.error().message;
    EXPECT_EQ(hits.load(), 0);
}

// ------------------------------------------------------------ redirects

// Resolves hub.test and localhost (both in the test certificate) to
// 127.0.0.1; anything else fails.
class TwoNameResolver final : public Resolver {
  public:
    Result<std::vector<IpAddress>> resolve(const std::string& host) override {
        if (host != "hub.test" && host != "localhost") {
            return fail(ErrorCode::unavailable, "unknown host");
        }
        return std::vector<IpAddress>{*IpAddress::parse("127.0.0.1")};
    }
};

class HttpRedirectTest : public HttpPolicyTest {
  protected:
    // hub.test:first (following up to max_redirects) and, when second > 0,
    // localhost:second (following none).
    EgressPolicy policy(int first, int second, int max_redirects) {
        PolicyOptions po;
        po.allow = {hub_rule(first)};
        po.allow[0].max_redirects = max_redirects;
        if (second > 0) {
            AllowRule other;
            other.host = "localhost";
            other.port = second;
            other.cidrs = {*Cidr::parse("127.0.0.1/32")};
            other.origin = "egress.allow[0]";
            po.allow.push_back(other);
        }
        return EgressPolicy(po, std::make_shared<TwoNameResolver>());
    }
    static std::string localhost_url(const TlsTestServer& server, const std::string& path) {
        return "https://localhost:" + std::to_string(server.port()) + path;
    }
};

TEST_F(HttpRedirectTest, FollowedToAnAllowedSecondServerWithoutTheAuthorization) {
    TlsTestServer second(pki());
    std::string second_auth = "unset";
    std::string second_body;
    std::string second_method;
    second.http().Post("/next", [&](const httplib::Request& req, httplib::Response& res) {
        second_auth = req.get_header_value("Authorization");
        second_body = req.body;
        second_method = req.method;
        res.set_content("second", "text/plain");
    });
    second.start();
    TlsTestServer first(pki());
    std::string first_auth;
    first.http().Post("/start", [&](const httplib::Request& req, httplib::Response& res) {
        first_auth = req.get_header_value("Authorization");
        res.set_redirect(localhost_url(second, "/next"), 307);
    });
    first.start();

    auto p = policy(first.port(), second.port(), 2);
    auto c = client_with(p, ca_file_);
    const auto token = secrets::SecretValue::copy_of("tok-redirect");
    HttpRequest request = get(hub_url(first, "/start"));
    request.method = "POST";
    request.body = "payload";
    request.authorization = Authorization::bearer(token);
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "second");
    EXPECT_EQ(first_auth, "Bearer tok-redirect");
    EXPECT_EQ(second_auth, "");        // not forwarded to another host
    EXPECT_EQ(second_method, "POST");  // 307 keeps method and body
    EXPECT_EQ(second_body, "payload");

    ASSERT_EQ(records_.size(), 2u);  // one record per hop
    EXPECT_EQ(records_[0].host, "hub.test");
    EXPECT_EQ(records_[0].port, first.port());
    EXPECT_EQ(records_[0].rule, "hub.url");
    EXPECT_EQ(records_[1].host, "localhost");
    EXPECT_EQ(records_[1].port, second.port());
    EXPECT_EQ(records_[1].decision, "allowed");
    EXPECT_EQ(records_[1].rule, "egress.allow[0]");
    EXPECT_EQ(records_[1].address, "127.0.0.1");
}

TEST_F(HttpRedirectTest, RelativeSameOriginRedirectKeepsAuthorizationAnd303BecomesGet) {
    TlsTestServer server(pki());
    std::string final_auth;
    std::string final_method;
    std::string final_body = "unset";
    std::string final_type = "unset";
    server.http().Post("/start", [](const httplib::Request&, httplib::Response& res) {
        res.status = 303;
        res.set_header("Location", "/final?x=1");
    });
    server.http().Get("/final", [&](const httplib::Request& req, httplib::Response& res) {
        final_auth = req.get_header_value("Authorization");
        final_method = req.method;
        final_body = req.body;
        final_type = req.get_header_value("Content-Type");
        res.set_content(req.get_param_value("x"), "text/plain");
    });
    server.start();
    auto p = policy(server.port(), 0, 1);
    auto c = client_with(p, ca_file_);
    const auto token = secrets::SecretValue::copy_of("tok-same");
    HttpRequest request = get(hub_url(server, "/start"));
    request.method = "POST";
    request.body = "{\"a\":1}";
    request.headers = {{"Content-Type", "application/json"}};
    request.authorization = Authorization::bearer(token);
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "1");
    EXPECT_EQ(final_method, "GET");
    EXPECT_EQ(final_body, "");
    EXPECT_EQ(final_type, "");
    EXPECT_EQ(final_auth, "Bearer tok-same");  // same host and port
    EXPECT_EQ(records_.size(), 2u);
}

TEST_F(HttpRedirectTest, RedirectToANonAllowlistedHostIsRefused) {
    TlsTestServer target(pki());
    std::atomic<int> target_hits{0};
    serve_ok(target, &target_hits);
    target.start();
    TlsTestServer first(pki());
    first.http().Get("/", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect("https://evil.test:" + std::to_string(target.port()) + "/");
    });
    first.start();

    // Only hub.test is allowed; localhost:target is not in the policy.
    auto p = policy(first.port(), 0, 3);
    auto c = client_with(p, ca_file_);
    auto response = c.send(get(hub_url(first)));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    const std::string evil = "evil.test:" + std::to_string(target.port());
    EXPECT_EQ(response.error().message,
              "egress: redirect from hub.test:" + std::to_string(first.port()) + " to " + evil +
                  " refused: " + evil + " not in egress allowlist");
    EXPECT_EQ(target_hits.load(), 0);
    EXPECT_TRUE(target.offered_versions().empty());  // not even a TLS handshake
    ASSERT_EQ(records_.size(), 2u);
    EXPECT_EQ(records_[0].decision, "allowed");
    EXPECT_EQ(records_[1].decision, "denied");
    EXPECT_EQ(records_[1].host, "evil.test");
    EXPECT_EQ(records_[1].error, response.error().message);
}

TEST_F(HttpRedirectTest, RedirectToPlainHttpIsRefused) {
    TlsTestServer first(pki());
    first.http().Get("/", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect("http://hub.test:" + std::to_string(first.port()) + "/");
    });
    first.start();
    auto p = policy(first.port(), 0, 3);
    auto c = client_with(p, ca_file_);
    auto response = c.send(get(hub_url(first)));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: redirect from hub.test:" + std::to_string(first.port()) +
                  " to http://hub.test:" + std::to_string(first.port()) +
                  " refused: only https is allowed");
    ASSERT_EQ(records_.size(), 2u);
    EXPECT_EQ(records_[1].decision, "denied");
    EXPECT_EQ(records_[1].address, "");
    EXPECT_EQ(records_[1].error, response.error().message);
}

TEST_F(HttpRedirectTest, NotFollowedWhenMaxRedirectsIsZero) {
    TlsTestServer server(pki());
    std::atomic<int> target_hits{0};
    server.http().Get("/redirect", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(hub_url(server, "/target"), 301);
    });
    server.http().Get("/target", [&](const httplib::Request&, httplib::Response& res) {
        ++target_hits;
        res.set_content("target", "text/plain");
    });
    server.start();
    auto p = policy(server.port(), 0, 0);
    auto c = client_with(p, ca_file_);
    auto response = c.send(get(hub_url(server, "/redirect")));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 301);
    ASSERT_NE(response->header("location"), nullptr);
    EXPECT_EQ(*response->header("location"), hub_url(server, "/target"));
    EXPECT_EQ(target_hits.load(), 0);
    EXPECT_EQ(records_.size(), 1u);
}

TEST_F(HttpRedirectTest, TheSecondHopsRuleDecidesWhetherToFollowFurther) {
    TlsTestServer second(pki());
    second.http().Get("/", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect("/elsewhere");
    });
    second.start();
    TlsTestServer first(pki());
    first.http().Get("/", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(localhost_url(second, "/"), 308);
    });
    first.start();
    // localhost's rule has max_redirects 0: its 302 goes back to the caller.
    auto p = policy(first.port(), second.port(), 5);
    auto c = client_with(p, ca_file_);
    auto response = c.send(get(hub_url(first)));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 302);
    EXPECT_EQ(records_.size(), 2u);
}

TEST_F(HttpRedirectTest, ALoopFailsOnceTheLimitIsExceeded) {
    TlsTestServer server(pki());
    std::atomic<int> hits{0};
    server.http().Get("/loop", [&](const httplib::Request&, httplib::Response& res) {
        ++hits;
        res.set_redirect("/loop");
    });
    server.start();
    auto p = policy(server.port(), 0, 3);
    auto c = client_with(p, ca_file_);
    auto response = c.send(get(hub_url(server, "/loop")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_NE(response.error().message.find("too many redirects"), std::string::npos)
        << response.error().message;
    EXPECT_NE(response.error().message.find("max_redirects 3 of hub.url"), std::string::npos)
        << response.error().message;
    EXPECT_EQ(hits.load(), 4);  // the first request and 3 redirects followed
    EXPECT_EQ(records_.size(), 4u);
}

TEST_F(HttpClientTest, WithoutAPolicyRedirectsAreNeverFollowed) {
    // The hub's clients have no policy and so no rule allowing redirects;
    // RedirectsAreNotFollowed above covers it, this names the reason.
    TlsTestServer server(pki());
    server.http().Get("/", [&](const httplib::Request&, httplib::Response& res) {
        res.set_redirect(server.url("/x"), 307);
    });
    server.start();
    auto c = client(ca_file_);
    auto response = c.send(get(server.url("/")));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 307);
}

// ------------------------------------------------------------ plaintext http

// A plain HTTP server on 127.0.0.1 (a stand-in for a metadata service or a
// Dapr sidecar), counting the requests it sees.
class PlainServer final {
  public:
    PlainServer() {
        server_.Get("/token", [this](const httplib::Request& req, httplib::Response& res) {
            ++hits;
            res.set_content("plain:" + req.get_header_value("Metadata"), "text/plain");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        // stop() is a no-op until the accept loop runs: wait for it, or a
        // quick test's destructor could join a server that never stops.
        while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~PlainServer() {
        server_.stop();
        thread_.join();
    }
    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/token"; }
    std::atomic<int> hits{0};

  private:
    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
};

AllowRule plaintext_rule(int port) {
    AllowRule rule;
    rule.host = "127.0.0.1";
    rule.port = port;
    rule.plaintext_http = true;
    rule.origin = "egress.allow[0]";
    return rule;
}

TEST_F(HttpPolicyTest, PlaintextRuleAllowsHttpToLoopback) {
    PlainServer server;
    PolicyOptions po;
    po.allow = {plaintext_rule(server.port())};
    EgressPolicy policy(po);
    auto c = client_with(policy, ca_file_);
    HttpRequest request = get(server.url());
    request.headers.emplace_back("Metadata", "true");
    auto response = c.send(request);
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "plain:true");
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].decision, "allowed");
    EXPECT_EQ(records_[0].rule, "egress.allow[0]");
    EXPECT_EQ(records_[0].tls_version, "");
}

TEST_F(HttpPolicyTest, HttpWithoutPlaintextRuleIsRefusedBeforeConnecting) {
    PlainServer server;
    AllowRule rule = plaintext_rule(server.port());
    rule.plaintext_http = false;
    PolicyOptions po;
    po.allow = {rule};
    EgressPolicy policy(po);
    auto c = client_with(policy, ca_file_);
    auto response = c.send(get(server.url()));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_NE(response.error().message.find("only https is allowed (egress.allow[0] does not "
                                            "set plaintext_http)"),
              std::string::npos)
        << response.error().message;
    EXPECT_EQ(server.hits.load(), 0);
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].decision, "denied");
}

TEST_F(HttpPolicyTest, HttpWithoutAPolicyIsRefused) {
    PlainServer server;
    auto c = HttpClient::create(HttpClient::Options{});
    ASSERT_TRUE(c);
    auto response = c->send(get(server.url()));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(server.hits.load(), 0);
}

TEST_F(HttpPolicyTest, PlaintextNameRuleUsesTheCheckedLocalAddress) {
    PlainServer server;
    auto resolver = std::make_shared<FakeResolver>(std::vector<std::string>{"127.0.0.1"});
    AllowRule rule = hub_rule(server.port());  // hub.test, cidr 127.0.0.1/32
    rule.plaintext_http = true;
    ASSERT_TRUE(check_plaintext_rule(rule));
    PolicyOptions po;
    po.allow = {rule};
    EgressPolicy policy(po, resolver);
    auto c = client_with(policy, ca_file_);
    auto response = c.send(get("http://hub.test:" + std::to_string(server.port()) + "/token"));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(server.hits.load(), 1);
}

TEST_F(HttpPolicyTest, PlaintextNeverGoesThroughTheProxy) {
    PlainServer server;
    PolicyOptions po;
    po.allow = {plaintext_rule(server.port())};
    // A proxy that does not exist: were it used, the request would fail.
    po.allow.push_back(AllowRule{.host = "127.0.0.1", .port = 9, .origin = "egress.proxy"});
    EgressPolicy policy(po);
    ProxyConfig proxy;
    proxy.host = "127.0.0.1";
    proxy.port = 9;
    HttpClient::Options options;
    options.policy = &policy;
    options.proxy = &proxy;
    auto c = HttpClient::create(options);
    ASSERT_TRUE(c);
    auto response = c->send(get(server.url()));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(server.hits.load(), 1);
}

}  // namespace
}  // namespace sa::agent::egress
