#include "agent/egress/proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/egress/stream_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/random.h"

extern char** environ;

namespace sa::agent::egress {
namespace {

namespace fs = std::filesystem;
using testing::other_pki;
using testing::pki;
using testing::TestPki;
using testing::TlsTestServer;

// ---------------------------------------------------------------- parsing

TEST(ParseProxyUrl, HostPortUserAndDefaults) {
    auto full = parse_proxy_url("http://alice@proxy.example.com:8080");
    ASSERT_TRUE(full) << full.error().describe();
    EXPECT_EQ(full->host, "proxy.example.com");
    EXPECT_EQ(full->port, 8080);
    EXPECT_EQ(full->username, "alice");
    EXPECT_FALSE(full->tls);
    EXPECT_EQ(full->password, nullptr);

    auto bare = parse_proxy_url("Proxy.Example.com");
    ASSERT_TRUE(bare) << bare.error().describe();
    EXPECT_EQ(bare->host, "proxy.example.com");
    EXPECT_EQ(bare->port, 3128);
    EXPECT_TRUE(bare->username.empty());

    auto slash = parse_proxy_url("http://10.0.0.5:3129/");
    ASSERT_TRUE(slash) << slash.error().describe();
    EXPECT_EQ(slash->host, "10.0.0.5");
    EXPECT_EQ(slash->port, 3129);
    EXPECT_EQ(slash->where(), "10.0.0.5:3129");

    auto v6 = parse_proxy_url("http://[fd00::1]:3128");
    ASSERT_TRUE(v6) << v6.error().describe();
    EXPECT_EQ(v6->host, "fd00::1");
    EXPECT_EQ(v6->where(), "[fd00::1]:3128");

    auto https = parse_proxy_url("https://proxy:443");
    ASSERT_TRUE(https);
    EXPECT_TRUE(https->tls);
}

TEST(ParseProxyUrl, PasswordInUrlIsRefusedWithoutEchoingIt) {
    auto parsed = parse_proxy_url("http://alice:hunter2@proxy:3128");
    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(parsed.error().message.find("secret store"), std::string::npos);
    EXPECT_EQ(parsed.error().message.find("hunter2"), std::string::npos);
}

TEST(ParseProxyUrl, MalformedUrlsAreRefused) {
    for (const char* bad : {"socks5://proxy:1080", "http://proxy:0", "http://proxy:99999",
                            "http://proxy:12ab", "http://", "http://pro xy:80",
                            "http://proxy:3128/path", "http://@proxy", "http://[::1"}) {
        auto parsed = parse_proxy_url(bad);
        EXPECT_FALSE(parsed) << bad;
        if (!parsed) {
            EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument) << bad;
        }
    }
}

TEST(ParseNoProxy, SplitsTrimsAndLowerCases) {
    EXPECT_EQ(parse_no_proxy(" Example.com, .corp.local,,10.0.0.0/8 ,*"),
              (std::vector<std::string>{"example.com", ".corp.local", "10.0.0.0/8", "*"}));
    EXPECT_TRUE(parse_no_proxy("").empty());
    EXPECT_TRUE(parse_no_proxy(" , ").empty());
}

TEST(BypassesProxy, DomainsIpsCidrsPortsAndStar) {
    ProxyConfig proxy;
    proxy.host = "proxy";
    proxy.no_proxy = parse_no_proxy("example.com,.corp.local,10.0.0.0/8,192.168.1.7,[::1],db:5432");
    EXPECT_TRUE(bypasses_proxy(proxy, "example.com", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "API.Example.com", 443));
    EXPECT_FALSE(bypasses_proxy(proxy, "badexample.com", 443));
    EXPECT_FALSE(bypasses_proxy(proxy, "example.com.evil.net", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "corp.local", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "a.b.corp.local", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "10.20.30.40", 443));
    EXPECT_FALSE(bypasses_proxy(proxy, "11.0.0.1", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "192.168.1.7", 443));
    EXPECT_FALSE(bypasses_proxy(proxy, "192.168.1.8", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "::1", 443));
    EXPECT_TRUE(bypasses_proxy(proxy, "db", 5432));
    EXPECT_FALSE(bypasses_proxy(proxy, "db", 443));
    EXPECT_FALSE(bypasses_proxy(proxy, "hub.example.net", 443));
    proxy.no_proxy = {"*"};
    EXPECT_TRUE(bypasses_proxy(proxy, "anything.example", 443));
    proxy.no_proxy = {};
    EXPECT_FALSE(bypasses_proxy(proxy, "example.com", 443));
}

// Sets environment variables for one test and restores them afterwards.
class EnvGuard final {
  public:
    explicit EnvGuard(std::vector<std::string> names) : names_(std::move(names)) {
        for (const auto& name : names_) {
            const char* value = std::getenv(name.c_str());
            saved_.push_back(value ? std::optional<std::string>(value) : std::nullopt);
            ::unsetenv(name.c_str());
        }
    }
    ~EnvGuard() {
        for (size_t i = 0; i < names_.size(); ++i) {
            if (saved_[i]) {
                ::setenv(names_[i].c_str(), saved_[i]->c_str(), 1);
            } else {
                ::unsetenv(names_[i].c_str());
            }
        }
    }

  private:
    std::vector<std::string> names_;
    std::vector<std::optional<std::string>> saved_;
};

TEST(ProxyFromEnvironment, ReadsUpperThenLowerCaseAndNoProxy) {
    EnvGuard guard({"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"});
    EXPECT_FALSE(proxy_from_environment());

    ::setenv("https_proxy", "http://lower:3128", 1);
    ::setenv("no_proxy", "internal", 1);
    auto lower = proxy_from_environment();
    ASSERT_TRUE(lower);
    EXPECT_EQ(lower->host, "lower");
    EXPECT_EQ(lower->no_proxy, std::vector<std::string>{"internal"});

    ::setenv("HTTPS_PROXY", "http://bob@upper:8080", 1);
    ::setenv("NO_PROXY", "a.example, 10.0.0.0/8", 1);
    auto upper = proxy_from_environment();
    ASSERT_TRUE(upper);
    EXPECT_EQ(upper->host, "upper");
    EXPECT_EQ(upper->port, 8080);
    EXPECT_EQ(upper->username, "bob");
    EXPECT_EQ(upper->no_proxy, (std::vector<std::string>{"a.example", "10.0.0.0/8"}));

    // A password in the environment is not used (and not half-used).
    ::setenv("HTTPS_PROXY", "http://bob:pw@upper:8080", 1);
    EXPECT_FALSE(proxy_from_environment());

    ::unsetenv("HTTPS_PROXY");
    ::unsetenv("https_proxy");
    EXPECT_FALSE(proxy_from_environment());
}

// ---------------------------------------------------------------- real squid

std::string find_program(const std::vector<std::string>& candidates) {
    for (const auto& path : candidates) {
        if (::access(path.c_str(), X_OK) == 0) return path;
    }
    return "";
}

// A port that was free a moment ago (bind 127.0.0.1:0, read, close).
int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    int port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
}

bool accepts(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& output) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
    return pid;
}

// Waits up to timeout for pid; true when it exited with status 0.
bool wait_for(pid_t pid, std::chrono::milliseconds timeout, bool* exited = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (exited) *exited = true;
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        }
        if (r < 0 || std::chrono::steady_clock::now() > deadline) {
            if (exited) *exited = r < 0;
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

std::string read_all(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
}

constexpr const char* kUser = "agent";
constexpr const char* kPassword = "proxy-test-pw";
constexpr int kBlockedPort = 9;  // squid refuses CONNECT to this port

// One squid for the whole suite (start-up is the slow part): basic auth from
// an htpasswd file, CONNECT only to 127.0.0.1, and never to kBlockedPort.
class Squid final {
  public:
    static Squid& get() {
        static Squid instance;
        return instance;
    }
    bool running() const { return pid_ > 0; }
    const std::string& why_not() const { return why_not_; }
    int port() const { return port_; }
    std::string access_log() const { return read_all(dir_ / "access.log"); }
    // squid logs a CONNECT when the tunnel closes; wait until an entry for
    // needle shows up (or the deadline passes).
    bool access_log_contains(const std::string& needle) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < deadline) {
            if (access_log().find(needle) != std::string::npos) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }

    ~Squid() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            bool exited = false;
            wait_for(pid_, std::chrono::seconds(5), &exited);
            if (!exited) {
                ::kill(pid_, SIGKILL);
                wait_for(pid_, std::chrono::seconds(5));
            }
        }
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }

  private:
    Squid() {
        const std::string squid = find_program({"/usr/sbin/squid", "/usr/bin/squid"});
        const std::string htpasswd = find_program({"/usr/bin/htpasswd", "/usr/sbin/htpasswd"});
        const std::string helper =
            find_program({"/usr/lib/squid/basic_ncsa_auth", "/usr/lib64/squid/basic_ncsa_auth"});
        if (squid.empty() || htpasswd.empty() || helper.empty()) {
            why_not_ =
                "squid, basic_ncsa_auth or htpasswd not installed (apt: squid apache2-utils)";
            return;
        }
        dir_ = fs::temp_directory_path() / ("sa-squid-" + crypto::random_token(8));
        fs::create_directories(dir_);
        // squid drops privileges to cache_effective_user when started as root.
        ::chmod(dir_.c_str(), 0777);
        const std::string output = (dir_ / "output.log").string();
        const std::string passwd = (dir_ / "passwd").string();
        const pid_t hp = spawn({htpasswd, "-bc", passwd, kUser, kPassword}, output);
        if (hp < 0 || !wait_for(hp, std::chrono::seconds(10))) {
            why_not_ = "htpasswd failed: " + read_all(output);
            return;
        }
        ::chmod(passwd.c_str(), 0644);
        // The port is picked by binding port 0 first; another process could
        // take it in between, so a few attempts.
        for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) start(squid, helper, passwd);
    }

    void start(const std::string& squid, const std::string& helper, const std::string& passwd) {
        port_ = free_port();
        const fs::path conf = dir_ / "squid.conf";
        std::ofstream out(conf);
        out << "http_port 127.0.0.1:" << port_ << "\n"
            << "pid_filename " << (dir_ / "squid.pid").string() << "\n"
            << "cache_log " << (dir_ / "cache.log").string() << "\n"
            << "access_log stdio:" << (dir_ / "access.log").string() << "\n"
            << "coredump_dir " << dir_.string() << "\n"
            << "cache deny all\n"
            << "cache_mem 8 MB\n"
            << "cache_effective_user nobody\n"
            << "shutdown_lifetime 0 seconds\n"
            << "pinger_enable off\n"
            << "auth_param basic program " << helper << " " << passwd << "\n"
            << "auth_param basic children 2\n"
            << "acl local_dst dst 127.0.0.1/32\n"
            << "acl blocked_port port " << kBlockedPort << "\n"
            << "acl authed proxy_auth REQUIRED\n"
            << "http_access deny !local_dst\n"
            << "http_access deny !authed\n"
            << "http_access deny CONNECT blocked_port\n"
            << "http_access allow CONNECT authed\n"
            << "http_access deny all\n";
        out.close();
        const pid_t pid = spawn({squid, "-N", "-f", conf.string()}, (dir_ / "output.log").string());
        if (pid < 0) {
            why_not_ = "cannot start squid";
            return;
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        while (std::chrono::steady_clock::now() < deadline) {
            if (accepts(port_)) {
                pid_ = pid;
                return;
            }
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) break;  // exited: port taken?
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ::kill(pid, SIGKILL);
        wait_for(pid, std::chrono::seconds(5));
        why_not_ =
            "squid did not start: " + read_all(dir_ / "output.log") + read_all(dir_ / "cache.log");
    }

    fs::path dir_;
    pid_t pid_ = -1;
    int port_ = 0;
    std::string why_not_;
};

class ProxyTest : public ::testing::Test {
  protected:
    void SetUp() override {
        // A missing squid fails (not skips) the test, so CI notices.
        ASSERT_TRUE(Squid::get().running()) << Squid::get().why_not();
        dir_ = fs::temp_directory_path() / ("sa-proxy-" + crypto::random_token(8));
        ca_file_ = testing::write_test_file((dir_ / "ca.pem").string(), pki().ca.cert_pem);
        proxy_.host = "127.0.0.1";
        proxy_.port = Squid::get().port();
        proxy_.username = kUser;
        proxy_.password = &password_;
    }
    void TearDown() override { fs::remove_all(dir_); }

    // Allows the server (with pins, if given) and the proxy.
    EgressPolicy policy(int server_port, std::vector<std::string> pins = {}) const {
        PolicyOptions po;
        AllowRule server;
        server.host = "127.0.0.1";
        server.port = server_port;
        server.spki_pins = std::move(pins);
        server.origin = "egress.allow[0]";
        AllowRule proxy;
        proxy.host = "127.0.0.1";
        proxy.port = Squid::get().port();
        proxy.origin = "egress.proxy";
        po.allow = {server, proxy};
        return EgressPolicy(po);
    }

    HttpClient client(const EgressPolicy* policy, const ProxyConfig* proxy,
                      std::vector<ConnectionRecord>* records) {
        HttpClient::Options options;
        options.ca_file = ca_file_;
        options.connect_timeout = std::chrono::milliseconds(5000);
        options.policy = policy;
        options.proxy = proxy;
        options.on_connection = [records](const ConnectionRecord& r) { records->push_back(r); };
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

    static void serve_ok(TlsTestServer& server) {
        server.http().Get("/", [](const httplib::Request&, httplib::Response& res) {
            res.set_content("through", "text/plain");
        });
        server.start();
    }

    secrets::SecretValue password_ = secrets::SecretValue::copy_of(kPassword);
    ProxyConfig proxy_;
    fs::path dir_;
    std::string ca_file_;
};

TEST_F(ProxyTest, ConnectWithBasicAuthReachesTheServerAndChecksItsPin) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy pinned =
        policy(server.port(), {testing::spki_sha256(pki().server.cert_pem)});
    std::vector<ConnectionRecord> records;
    auto c = client(&pinned, &proxy_, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "through");
    EXPECT_EQ(response->header("proxy-agent"), nullptr);  // CONNECT headers are not the server's
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].via_proxy, "127.0.0.1:" + std::to_string(Squid::get().port()));
    EXPECT_EQ(records[0].decision, "allowed");
    EXPECT_EQ(records[0].rule, "egress.allow[0]");
    EXPECT_EQ(records[0].pin, "ok");
    EXPECT_FALSE(records[0].tls_version.empty());  // TLS end to end with the server
    EXPECT_EQ(records[0].error, "");
    EXPECT_TRUE(Squid::get().access_log_contains(
        "CONNECT 127.0.0.1:" + std::to_string(server.port()) + " " + kUser));
}

// The proxy credentials go only into the CONNECT request (CURLOPT_PROXYHEADER
// with CURLHEADER_SEPARATE): the server behind the tunnel never sees them,
// while the request's own headers do reach it. A second request reuses the
// authenticated tunnel.
TEST_F(ProxyTest, ServerNeverReceivesTheProxyCredentials) {
    TlsTestServer server(pki());
    std::mutex mutex;
    std::vector<std::map<std::string, std::string>> seen;  // lower-cased name -> value
    server.http().Get("/", [&](const httplib::Request& req, httplib::Response& res) {
        std::map<std::string, std::string> headers;
        for (const auto& [name, value] : req.headers) {
            std::string lower = name;
            for (char& c : lower)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            headers[lower] = value;
        }
        std::lock_guard lock(mutex);
        seen.push_back(std::move(headers));
        res.set_content("through", "text/plain");
    });
    server.start();
    const EgressPolicy p = policy(server.port());
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy_, &records);
    const secrets::SecretValue token = secrets::SecretValue::copy_of("server-token");
    for (int i = 0; i < 2; ++i) {
        HttpRequest request = get(server.url("/"));
        request.headers.emplace_back("X-Request", std::to_string(i));
        request.authorization = Authorization::bearer(token);
        auto response = c.send(request);
        ASSERT_TRUE(response) << response.error().describe();
        EXPECT_EQ(response->status, 200);
    }
    std::lock_guard lock(mutex);
    ASSERT_EQ(seen.size(), 2u);
    for (size_t i = 0; i < seen.size(); ++i) {
        EXPECT_EQ(seen[i].count("proxy-authorization"), 0u) << "request " << i;
        EXPECT_EQ(seen[i].count("proxy-connection"), 0u) << "request " << i;
        EXPECT_EQ(seen[i]["authorization"], "Bearer server-token") << "request " << i;
        EXPECT_EQ(seen[i]["x-request"], std::to_string(i));
    }
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[1].error, "");
    EXPECT_TRUE(Squid::get().access_log_contains(
        "CONNECT 127.0.0.1:" + std::to_string(server.port()) + " " + kUser));
}

TEST_F(ProxyTest, WrongPinStillFailsThroughTheProxy) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy pinned =
        policy(server.port(), {testing::spki_sha256(other_pki().server.cert_pem)});
    std::vector<ConnectionRecord> records;
    auto c = client(&pinned, &proxy_, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::integrity);
    EXPECT_NE(response.error().message.find("does not match any pinned key"), std::string::npos)
        << response.error().message;
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].pin, "mismatch");
}

TEST_F(ProxyTest, WrongCaFailsThroughTheProxy) {
    // TLS is end to end: the proxy cannot vouch for the server.
    TlsTestServer server(other_pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port());
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy_, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_EQ(response.error().message.rfind("TLS handshake with 127.0.0.1 failed", 0), 0u)
        << response.error().message;
}

TEST_F(ProxyTest, WrongPasswordGivesThe407Error) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port());
    const secrets::SecretValue wrong = secrets::SecretValue::copy_of("not-the-password");
    ProxyConfig proxy = proxy_;
    proxy.password = &wrong;
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: proxy 127.0.0.1:" + std::to_string(Squid::get().port()) +
                  " refused the credentials (HTTP 407)");
    EXPECT_EQ(response.error().message.find("not-the-password"), std::string::npos);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].error, response.error().message);
    EXPECT_TRUE(server.offered_versions().empty());  // nothing reached the server
}

TEST_F(ProxyTest, NoCredentialsGivesThe407Error) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port());
    ProxyConfig proxy = proxy_;
    proxy.username.clear();
    proxy.password = nullptr;
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: proxy 127.0.0.1:" + std::to_string(Squid::get().port()) +
                  " refused the credentials (HTTP 407)");
}

TEST_F(ProxyTest, RefusedConnectNamesTheDestinationAndCode) {
    const EgressPolicy p = policy(kBlockedPort);
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy_, &records);
    auto response = c.send(get("https://127.0.0.1:" + std::to_string(kBlockedPort) + "/"));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: proxy 127.0.0.1:" + std::to_string(Squid::get().port()) +
                  " refused CONNECT to 127.0.0.1:" + std::to_string(kBlockedPort) + " (HTTP 403)");
}

TEST_F(ProxyTest, NoProxyListingTheDestinationConnectsDirectly) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port());
    // No credentials: a request that went through squid would get a 407.
    ProxyConfig proxy = proxy_;
    proxy.username.clear();
    proxy.password = nullptr;
    proxy.no_proxy = parse_no_proxy("internal.example, 127.0.0.0/8");
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_TRUE(response) << response.error().describe();
    EXPECT_EQ(response->body, "through");
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].via_proxy, "");
    EXPECT_EQ(records[0].address, "127.0.0.1");
    EXPECT_EQ(Squid::get().access_log().find("127.0.0.1:" + std::to_string(server.port())),
              std::string::npos);
}

TEST_F(ProxyTest, ProxyNotInAllowlistIsRefusedBeforeConnecting) {
    TlsTestServer server(pki());
    serve_ok(server);
    PolicyOptions po;
    AllowRule rule;
    rule.host = "127.0.0.1";
    rule.port = server.port();
    po.allow = {rule};
    const EgressPolicy p(po);
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy_, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message, "egress: 127.0.0.1:" + std::to_string(Squid::get().port()) +
                                            " not in egress allowlist");
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].decision, "denied");
    EXPECT_TRUE(server.offered_versions().empty());
}

TEST_F(ProxyTest, DestinationNotInAllowlistIsRefusedEvenThroughTheProxy) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port() == 1 ? 2 : 1);  // server port not allowed
    std::vector<ConnectionRecord> records;
    auto c = client(&p, &proxy_, &records);
    auto response = c.send(get(server.url("/")));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(response.error().message,
              "egress: 127.0.0.1:" + std::to_string(server.port()) + " not in egress allowlist");
}

TEST_F(ProxyTest, UnreachableProxyIsUnavailableAndNamesIt) {
    const int dead = free_port();
    ProxyConfig proxy = proxy_;
    proxy.port = dead;
    std::vector<ConnectionRecord> records;
    auto c = client(nullptr, &proxy, &records);
    auto response = c.send(get("https://127.0.0.1:1/"));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, ErrorCode::unavailable);
    EXPECT_EQ(response.error().message.rfind(
                  "egress: proxy 127.0.0.1:" + std::to_string(dead) + " unreachable", 0),
              0u)
        << response.error().message;
}

TEST_F(ProxyTest, StreamConnectionThroughTheProxy) {
    TlsTestServer server(pki());
    serve_ok(server);
    const EgressPolicy p = policy(server.port(), {testing::spki_sha256(pki().server.cert_pem)});
    std::vector<ConnectionRecord> records;
    {
        StreamConnection::Options options;
        options.host = "127.0.0.1";
        options.port = server.port();
        options.ca_file = ca_file_;
        options.policy = &p;
        options.proxy = &proxy_;
        options.connect_timeout = std::chrono::milliseconds(5000);
        options.on_connection = [&](const ConnectionRecord& r) { records.push_back(r); };
        auto opened = StreamConnection::open(options);
        ASSERT_TRUE(opened) << opened.error().describe();
        auto sent = opened->send_all("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        ASSERT_TRUE(sent) << sent.error().describe();
    }
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].via_proxy, "127.0.0.1:" + std::to_string(Squid::get().port()));
    EXPECT_EQ(records[0].pin, "ok");
    EXPECT_FALSE(records[0].tls_version.empty());
    EXPECT_EQ(server.offered_versions().size(), 1u);  // the handshake reached the server
}

TEST_F(ProxyTest, StreamConnectionWithWrongPasswordGivesThe407Error) {
    const EgressPolicy p = policy(4444);
    const secrets::SecretValue wrong = secrets::SecretValue::copy_of("nope");
    ProxyConfig proxy = proxy_;
    proxy.password = &wrong;
    StreamConnection::Options options;
    options.host = "127.0.0.1";
    options.port = 4444;
    options.ca_file = ca_file_;
    options.policy = &p;
    options.proxy = &proxy;
    auto opened = StreamConnection::open(options);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, ErrorCode::permission_denied);
    EXPECT_EQ(opened.error().message,
              "egress: proxy 127.0.0.1:" + std::to_string(Squid::get().port()) +
                  " refused the credentials (HTTP 407)");
}

}  // namespace
}  // namespace sa::agent::egress
