#include "agent/siem/syslog.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "agent/egress/testing/test_pki.h"
#include "agent/siem/rsyslog_harness.h"

namespace sa::agent::siem {
namespace {

namespace fs = std::filesystem;

// 2003-10-11T22:14:15.003Z, the time of RFC 5424's examples.
constexpr int64_t kRfcTime = 1065910455003;

// RFC 5424 §6.5, example 1.
TEST(Rfc5424, Example1WithoutStructuredData) {
    SyslogMessage m{.facility = 4,
                    .severity = 2,
                    .unix_ms = kRfcTime,
                    .hostname = "mymachine.example.com",
                    .app_name = "su",
                    .msgid = "ID47",
                    .msg = "'su root' failed for lonvick on /dev/pts/8"};
    EXPECT_EQ(format_rfc5424(m),
              "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
              "\xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8");
}

// RFC 5424 §6.5, example 3.
TEST(Rfc5424, Example3WithStructuredData) {
    SyslogMessage m{
        .facility = 20,
        .severity = 5,
        .unix_ms = kRfcTime,
        .hostname = "mymachine.example.com",
        .app_name = "evntslog",
        .msgid = "ID47",
        .structured_data = {{"exampleSDID@32473",
                             {{"iut", "3"}, {"eventSource", "Application"}, {"eventID", "1011"}}}},
        .msg = "An application event log entry..."};
    EXPECT_EQ(format_rfc5424(m),
              "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
              "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] "
              "\xEF\xBB\xBF"
              "An application event log entry...");
}

TEST(Rfc5424, SanitisesFieldsAndEscapesValues) {
    SyslogMessage m{.facility = 99,
                    .severity = -3,
                    .hostname = "bad host\n",
                    .app_name = std::string(60, 'a'),
                    .msgid = "job.finished",
                    .structured_data = {{"a=b c", {{"v", "x\"y\\z]"}}}}};
    std::string s = format_rfc5424(m);
    EXPECT_EQ(s, "<184>1 - bad?host? " + std::string(48, 'a') +
                     " - job.finished [a_b_c v=\"x\\\"y\\\\z\\]\"]");
}

TEST(Rfc5425, OctetCountingFraming) {
    EXPECT_EQ(frame_octet_counting("<14>1 - - - - -"), "15 <14>1 - - - - -");
    EXPECT_EQ(frame_octet_counting("\xEF\xBB\xBF"), "3 \xEF\xBB\xBF");  // bytes, not characters
}

// A real rsyslogd receiving RFC 5425 syslog over TLS on 127.0.0.1.
class RsyslogTest : public ::testing::Test {
  protected:
    void SetUp() override { rsyslog_.start(); }

    void start() { rsyslog_.start(); }
    void stop() { rsyslog_.stop(); }
    std::vector<std::string> received(size_t n) const { return rsyslog_.received(n); }

    egress::StreamConnection::Options options(const std::string& ca) const {
        auto o = rsyslog_.options();
        o.ca_file = ca;
        return o;
    }

    harness::Rsyslog rsyslog_;
    const fs::path& dir_ = rsyslog_.dir();
};

SyslogMessage record(int i) {
    return {.unix_ms = 1764403200000 + i,
            .hostname = "edge-1",
            .app_name = "secure-agent",
            .procid = "42",
            .msgid = "job.finished",
            .structured_data = {{"audit@32473", {{"seq", std::to_string(i)}}}},
            .msg = R"({"seq":)" + std::to_string(i) + R"(,"type":"job.finished"})"};
}

TEST_F(RsyslogTest, DeliversEveryMessageInOrderOverTls) {
    SyslogSink sink(options((dir_ / "ca.pem").string()));
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(sink.send(record(i))) << i;
    auto lines = received(200);
    ASSERT_EQ(lines.size(), 200u);
    for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(lines[static_cast<size_t>(i)], format_rfc5424(record(i))) << i;
    }
}

TEST_F(RsyslogTest, UntrustedReceiverIsRefused) {
    auto other = testing::TestPki::generate("not the SIEM's CA");
    std::string other_ca =
        testing::write_test_file((dir_ / "other-ca.pem").string(), other.ca.cert_pem);
    SyslogSink sink(options(other_ca));
    auto sent = sink.send(record(1));
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
    EXPECT_NE(sent.error().message.find("TLS handshake with 127.0.0.1"), std::string::npos)
        << sent.error().message;
    EXPECT_TRUE(received(0).empty());
}

TEST_F(RsyslogTest, ReceiverDownIsUnavailableAndAReturningReceiverIsReconnected) {
    SyslogSink sink(options((dir_ / "ca.pem").string()));
    ASSERT_TRUE(sink.send(record(0)));
    ASSERT_EQ(received(1).size(), 1u);
    stop();
    auto sent = sink.send(record(1));
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
    start();  // a new port: point the sink at it, as a restarted SIEM behind a name would be
    SyslogSink again(options((dir_ / "ca.pem").string()));
    ASSERT_TRUE(again.send(record(2)));
    auto lines = received(2);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[1], format_rfc5424(record(2)));
}

}  // namespace
}  // namespace sa::agent::siem
