#include "agent/siem/syslog.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/egress/testing/test_pki.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

extern char** environ;

namespace sa::agent::siem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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

// A real rsyslogd receiving RFC 5425 syslog over TLS on 127.0.0.1, writing
// each received message to a file.
class RsyslogTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-rsyslog-" + crypto::random_token(6));
        fs::create_directories(dir_);
        pki_ = testing::TestPki::generate();
        testing::write_test_file((dir_ / "ca.pem").string(), pki_.ca.cert_pem);
        testing::write_test_file((dir_ / "server.pem").string(), pki_.server.cert_pem);
        testing::write_test_file((dir_ / "server.key").string(), pki_.server.key_pem);
        std::string d = dir_.string();
        testing::write_test_file(
            (dir_ / "rsyslog.conf").string(),
            "global(workDirectory=\"" + d +
                "\" DefaultNetstreamDriver=\"ossl\""
                " DefaultNetstreamDriverCAFile=\"" +
                d +
                "/ca.pem\""
                " DefaultNetstreamDriverCertFile=\"" +
                d +
                "/server.pem\""
                " DefaultNetstreamDriverKeyFile=\"" +
                d +
                "/server.key\")\n"
                "module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\""
                " StreamDriver.AuthMode=\"anon\")\n"
                "input(type=\"imtcp\" port=\"0\" address=\"127.0.0.1\" listenPortFileName=\"" +
                d +
                "/port\")\n"
                "template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n"
                "action(type=\"omfile\" file=\"" +
                d + "/received.log\" template=\"raw\")\n");
        start();
    }

    void TearDown() override {
        stop();
        fs::remove_all(dir_);
    }

    void start() {
        fs::remove(dir_ / "port");
        std::string conf = (dir_ / "rsyslog.conf").string();
        std::string pid_file = (dir_ / "rsyslog.pid").string();
        std::vector<std::string> args = {"rsyslogd", "-n", "-f", conf, "-i", pid_file};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ASSERT_EQ(posix_spawnp(&pid_, "rsyslogd", nullptr, nullptr, argv.data(), environ), 0)
            << "rsyslogd is not installed (scripts/setup installs it)";
        for (int i = 0; i < 200 && port_from_file() == 0; ++i) std::this_thread::sleep_for(25ms);
        port_ = port_from_file();
        ASSERT_GT(port_, 0) << "rsyslogd did not start listening";
    }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    int port_from_file() const {
        std::ifstream in(dir_ / "port");
        int port = 0;
        in >> port;
        return port;
    }

    // Waits until the receiver wrote at least n lines; returns what it has.
    std::vector<std::string> received(size_t n) const {
        std::vector<std::string> lines;
        for (int i = 0; i < 400; ++i) {
            lines.clear();
            std::ifstream in(dir_ / "received.log");
            for (std::string line; std::getline(in, line);) lines.push_back(line);
            if (lines.size() >= n) break;
            std::this_thread::sleep_for(25ms);
        }
        return lines;
    }

    egress::StreamConnection::Options options(const std::string& ca) const {
        return {.host = "127.0.0.1", .port = port_, .tls = true, .ca_file = ca};
    }

    fs::path dir_;
    testing::TestPki pki_;
    pid_t pid_ = -1;
    int port_ = 0;
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
