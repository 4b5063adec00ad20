#pragma once
// Test-only: a real rsyslogd receiving RFC 5425 syslog over TLS (ossl driver)
// or plain TCP on 127.0.0.1, writing each received message (%rawmsg%) as one
// line to received.log in its own temp directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/egress/stream_client.h"
#include "agent/egress/testing/test_pki.h"
#include "common/crypto/random.h"

extern char** environ;

namespace sa::agent::siem::harness {

namespace fs = std::filesystem;

// Polls cond every 10 ms until it holds or `limit` passes; returns the last value.
inline bool wait_until(const std::function<bool()>& cond,
                       std::chrono::milliseconds limit = std::chrono::seconds(15)) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
        if (std::chrono::steady_clock::now() >= end) return cond();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

// True when rsyslogd can be started for a test: it is on PATH and we are
// root (its ossl driver and work directory handling assume it). Tests that
// need it skip otherwise: GTEST_SKIP() << harness::kNoRsyslog.
inline bool rsyslog_available() {
    if (::geteuid() != 0) return false;
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
    dirs += ":/usr/sbin:/sbin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        if (end > start &&
            ::access((dirs.substr(start, end - start) + "/rsyslogd").c_str(), X_OK) == 0) {
            return true;
        }
        start = end + 1;
    }
    return false;
}
inline constexpr const char* kNoRsyslog = "rsyslogd is not installed or we are not root";

// How the receiver authenticates senders over TLS.
enum class ClientAuth {
    anon,       // StreamDriver.AuthMode="anon": any client
    certvalid,  // "x509/certvalid": a client certificate issued by client_ca_file()
};

class Rsyslog {
  public:
    explicit Rsyslog(bool tls = true, ClientAuth client_auth = ClientAuth::anon)
        : tls_(tls),
          client_auth_(client_auth),
          dir_(fs::temp_directory_path() / ("sa-rsyslog-" + crypto::random_token(6))) {
        fs::create_directories(dir_);
        pki_ = ::sa::agent::testing::TestPki::generate();
        ::sa::agent::testing::write_test_file((dir_ / "ca.pem").string(), pki_.ca.cert_pem);
        ::sa::agent::testing::write_test_file((dir_ / "server.pem").string(), pki_.server.cert_pem);
        ::sa::agent::testing::write_test_file((dir_ / "server.key").string(), pki_.server.key_pem);
        // Senders' certificates are checked against the same test CA, which
        // also issued pki().client.
        ::sa::agent::testing::write_test_file(client_ca_file(), pki_.ca.cert_pem);
    }
    ~Rsyslog() {
        stop();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    Rsyslog(const Rsyslog&) = delete;
    Rsyslog& operator=(const Rsyslog&) = delete;

    // Starts rsyslogd on `port` (0: any free port; read it back with port()).
    // Fails the test when it does not listen within 10 s.
    void start(int port = 0) {
        write_config(port);
        fs::remove(dir_ / "port");
        std::string conf = (dir_ / "rsyslog.conf").string();
        std::string pid_file = (dir_ / "rsyslog.pid").string();
        std::vector<std::string> args = {"rsyslogd", "-n", "-f", conf, "-i", pid_file};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ASSERT_EQ(posix_spawnp(&pid_, "rsyslogd", nullptr, nullptr, argv.data(), environ), 0)
            << "rsyslogd is not installed (scripts/setup installs it)";
        if (port == 0) {
            // listenPortFileName is written once the listener is bound.
            ASSERT_TRUE(wait_until([&] { return port_from_file() > 0; }, std::chrono::seconds(10)))
                << "rsyslogd did not start listening";
            port_ = port_from_file();
        } else {
            // rsyslog writes the port file only for port 0; look for the
            // listening socket instead (connecting would disturb the receiver).
            ASSERT_TRUE(wait_until([&] { return listening(port); }, std::chrono::seconds(10)))
                << "rsyslogd did not start listening on port " << port;
            port_ = port;
        }
    }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    int port() const { return port_; }
    const fs::path& dir() const { return dir_; }
    std::string ca_file() const { return (dir_ / "ca.pem").string(); }
    // The CA that must have issued a sender's certificate (ClientAuth::certvalid).
    std::string client_ca_file() const { return (dir_ / "client-ca.pem").string(); }
    const ::sa::agent::testing::TestPki& pki() const { return pki_; }

    egress::StreamConnection::Options options() const {
        egress::StreamConnection::Options o{.host = "127.0.0.1", .port = port_, .tls = tls_};
        if (tls_) o.ca_file = ca_file();
        return o;
    }

    // Everything received so far, one message per line.
    std::vector<std::string> lines() const {
        std::vector<std::string> out;
        std::ifstream in(dir_ / "received.log");
        for (std::string line; std::getline(in, line);) out.push_back(line);
        return out;
    }

    // Waits (up to 10 s) until at least n lines arrived; returns what there is.
    std::vector<std::string> received(size_t n) const {
        std::vector<std::string> out;
        wait_until(
            [&] {
                out = lines();
                return out.size() >= n;
            },
            std::chrono::seconds(10));
        return out;
    }

  private:
    // A TCP socket in LISTEN state on 127.0.0.1:port (from /proc/net/tcp).
    static bool listening(int port) {
        std::ifstream in("/proc/net/tcp");
        char want[32];
        std::snprintf(want, sizeof want, "0100007F:%04X", port);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state;
            fields >> slot >> local >> remote >> state;
            if (local == want && state == "0A") return true;
        }
        return false;
    }

    int port_from_file() const {
        std::ifstream in(dir_ / "port");
        int port = 0;
        in >> port;
        return port;
    }

    void write_config(int port) {
        std::string d = dir_.string();
        std::string conf = "global(workDirectory=\"" + d + "\"";
        if (tls_) {
            conf += " DefaultNetstreamDriver=\"ossl\" DefaultNetstreamDriverCAFile=\"" + d +
                    "/ca.pem\" DefaultNetstreamDriverCertFile=\"" + d +
                    "/server.pem\" DefaultNetstreamDriverKeyFile=\"" + d + "/server.key\"";
        }
        conf += ")\n";
        const bool certvalid = client_auth_ == ClientAuth::certvalid;
        conf += tls_ ? std::string(
                           "module(load=\"imtcp\" StreamDriver.Name=\"ossl\""
                           " StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"") +
                           (certvalid ? "x509/certvalid" : "anon") + "\")\n"
                     : "module(load=\"imtcp\")\n";
        conf += "input(type=\"imtcp\" port=\"" + std::to_string(port) +
                "\" address=\"127.0.0.1\" listenPortFileName=\"" + d + "/port\"";
        // The CA a sender's certificate must chain to (rsyslog >= 8.2108).
        if (tls_ && certvalid) conf += " streamDriver.CAFile=\"" + client_ca_file() + "\"";
        conf += ")\n";
        conf += "template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n";
        conf += "action(type=\"omfile\" file=\"" + d + "/received.log\" template=\"raw\")\n";
        ::sa::agent::testing::write_test_file((dir_ / "rsyslog.conf").string(), conf);
    }

    bool tls_;
    ClientAuth client_auth_;
    fs::path dir_;
    ::sa::agent::testing::TestPki pki_;
    pid_t pid_ = -1;
    int port_ = 0;
};

}  // namespace sa::agent::siem::harness
