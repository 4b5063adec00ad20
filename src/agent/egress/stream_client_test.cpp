#include "agent/egress/stream_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>

#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"

namespace sa::agent::egress {
namespace {

namespace fs = std::filesystem;

class CountingResolver final : public Resolver {
  public:
    std::atomic<int> calls{0};
    Result<std::vector<IpAddress>> resolve(const std::string&) override {
        ++calls;
        return std::vector<IpAddress>{*IpAddress::parse("127.0.0.1")};
    }
};

using testing::pki;

class StreamPolicyTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-stream-" + crypto::random_token(8));
        ca_file_ = testing::write_test_file((dir_ / "ca.pem").string(), pki().ca.cert_pem);
    }
    void TearDown() override { fs::remove_all(dir_); }

    fs::path dir_;
    std::string ca_file_;
};

TEST_F(StreamPolicyTest, HostNotInAllowlistIsRefusedBeforeConnecting) {
    testing::TlsTestServer server(pki());
    server.start();
    auto resolver = std::make_shared<CountingResolver>();
    PolicyOptions po;
    AllowRule other;
    other.host = "hub.test";
    other.port = server.port() == 1 ? 2 : 1;  // a different port
    other.cidrs = {*Cidr::parse("127.0.0.1")};
    po.allow = {other};
    EgressPolicy policy(po, resolver);

    std::vector<ConnectionRecord> records;
    StreamConnection::Options options;
    options.host = "hub.test";
    options.port = server.port();
    options.ca_file = ca_file_;
    options.policy = &policy;
    options.on_connection = [&](const ConnectionRecord& r) { records.push_back(r); };
    auto opened = StreamConnection::open(options);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(opened.error().message,
              "egress: hub.test:" + std::to_string(server.port()) + " not in egress allowlist");
    EXPECT_EQ(resolver->calls.load(), 0);
    EXPECT_TRUE(server.offered_versions().empty());  // no ClientHello reached the server
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].decision, "denied");
    EXPECT_EQ(records[0].address, "");
}

TEST_F(StreamPolicyTest, PinnedNameConnectsAndMismatchFails) {
    testing::TlsTestServer server(pki());
    server.start();
    PolicyOptions po;
    AllowRule rule;
    rule.host = "hub.test";
    rule.port = server.port();
    rule.cidrs = {*Cidr::parse("127.0.0.1")};
    rule.origin = "siem.allow";
    rule.spki_pins = {testing::spki_sha256(pki().server.cert_pem)};
    po.allow = {rule};
    EgressPolicy good(po, std::make_shared<CountingResolver>());
    po.allow[0].spki_pins = {std::string(32, 'x')};
    EgressPolicy bad(po, std::make_shared<CountingResolver>());

    std::vector<ConnectionRecord> records;
    StreamConnection::Options options;
    options.host = "hub.test";
    options.port = server.port();
    options.ca_file = ca_file_;
    options.on_connection = [&](const ConnectionRecord& r) { records.push_back(r); };

    options.policy = &good;
    {
        auto opened = StreamConnection::open(options);
        ASSERT_TRUE(opened) << opened.error().describe();
        ASSERT_TRUE(opened->send_all("GET / HTTP/1.1\r\n"));
        EXPECT_TRUE(records.empty());  // reported when the connection closes
    }
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].pin, "ok");
    EXPECT_EQ(records[0].address, "127.0.0.1");
    EXPECT_EQ(records[0].rule, "siem.allow");
    EXPECT_EQ(records[0].bytes_up, 16);
    EXPECT_FALSE(records[0].tls_version.empty());

    options.policy = &bad;
    auto refused = StreamConnection::open(options);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::integrity);
    EXPECT_EQ(refused.error().message,
              "egress: hub.test: certificate public key does not match any pinned key "
              "(siem.allow pins)");
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].pin, "mismatch");
    EXPECT_EQ(records[1].error, refused.error().message);
}

TEST_F(StreamPolicyTest, RateLimitedSendArrivesIntactAndIsPaced) {
    testing::TlsTestServer server(pki());
    std::promise<std::string> received;
    server.http().Put("/in", [&](const httplib::Request& req, httplib::Response& res) {
        received.set_value(req.body);
        res.set_content("ok", "text/plain");
    });
    server.start();
    PolicyOptions po;
    AllowRule rule;
    rule.host = "hub.test";
    rule.port = server.port();
    rule.cidrs = {*Cidr::parse("127.0.0.1")};
    rule.origin = "siem.allow";
    rule.max_bytes_per_second = 1024 * 1024;
    po.allow = {rule};
    po.burst_bytes = 64 * 1024;
    EgressPolicy policy(po, std::make_shared<CountingResolver>());
    EgressRateLimiter limiter(po);

    std::vector<ConnectionRecord> records;
    StreamConnection::Options options;
    options.host = "hub.test";
    options.port = server.port();
    options.ca_file = ca_file_;
    options.policy = &policy;
    options.rate_limiter = &limiter;
    options.on_connection = [&](const ConnectionRecord& r) { records.push_back(r); };

    std::string body(200 * 1024 + 7, '\0');
    for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 31 + i / 5) & 0xff);
    const std::string message =
        "PUT /in HTTP/1.1\r\nHost: hub.test\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    const auto start = std::chrono::steady_clock::now();
    {
        auto opened = StreamConnection::open(options);
        ASSERT_TRUE(opened) << opened.error().describe();
        ASSERT_TRUE(opened->send_all(message));
        const auto elapsed = std::chrono::steady_clock::now() - start;
        // (200 KiB - 64 KiB of burst) at 1 MiB/s: at least ~133 ms.
        EXPECT_GE(elapsed, std::chrono::milliseconds(125));
        auto future = received.get_future();
        ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
        EXPECT_TRUE(future.get() == body);
    }
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].bytes_up, static_cast<int64_t>(message.size()));
}

}  // namespace
}  // namespace sa::agent::egress
