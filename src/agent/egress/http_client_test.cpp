#include "agent/egress/http_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <set>

#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"

namespace sa::agent::egress {
namespace {

namespace fs = std::filesystem;
using testing::TestPki;
using testing::TlsTestServer;

// One PKI for the whole binary: key generation is the slow part.
const TestPki& pki() {
    static const TestPki value = TestPki::generate();
    return value;
}
const TestPki& other_pki() {
    static const TestPki value = TestPki::generate("some other CA");
    return value;
}

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

    // A failing request carries neither credential in its error.
    request.url = "https://127.0.0.1:1/";
    request.authorization = Authorization::bearer(token);
    auto failed = c.send(request);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().message.find("tok-123"), std::string::npos);
}

}  // namespace
}  // namespace sa::agent::egress
