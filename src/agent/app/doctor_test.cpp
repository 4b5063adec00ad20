#include "agent/app/doctor.h"

#include "agent/sandbox/sandbox.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/app/commands.h"
#include "agent/app/test_fake_hub.h"
#include "agent/egress/policy.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "common/crypto/ed25519.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/protocol/protocol.h"
#include "common/util/time.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using agent::testing::other_pki;
using agent::testing::pki;
using agent::testing::TlsTestServer;

constexpr const char* kClientId = "cid_doctor";
constexpr const char* kSecret = "s3cr3t-value-never-printed";

// Answers from a table; every other name fails like an unknown host.
class TableResolver final : public egress::Resolver {
  public:
    explicit TableResolver(std::map<std::string, std::string> table) : table_(std::move(table)) {}
    Result<std::vector<egress::IpAddress>> resolve(const std::string& host) override {
        auto it = table_.find(host);
        if (it == table_.end()) return fail(ErrorCode::unavailable, "unknown host " + host);
        return std::vector{*egress::IpAddress::parse(it->second)};
    }

  private:
    std::map<std::string, std::string> table_;
};

// A CONNECT proxy that refuses every request with one fixed answer (407 or
// 403), which is all the doctor's proxy diagnosis needs to see; the real
// tunnel is tested against squid in the egress tests.
class RefusingProxy final {
  public:
    explicit RefusingProxy(std::string status_line) : status_line_(std::move(status_line)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        auto* raw = reinterpret_cast<sockaddr*>(&addr);
        if (fd_ < 0 || ::bind(fd_, raw, len) != 0 || ::listen(fd_, 8) != 0 ||
            ::getsockname(fd_, raw, &len) != 0) {
            throw std::runtime_error("cannot listen");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~RefusingProxy() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    int port() const { return port_; }

  private:
    void serve() {
        for (;;) {
            const int client = ::accept(fd_, nullptr, nullptr);
            if (client < 0) return;
            std::string request;
            char buf[1024];
            while (request.find("\r\n\r\n") == std::string::npos) {
                const ssize_t n = ::read(client, buf, sizeof buf);
                if (n <= 0) break;
                request.append(buf, static_cast<size_t>(n));
            }
            const std::string answer = status_line_ +
                                       "\r\nProxy-Authenticate: Basic realm=\"test\"\r\n" +
                                       "Content-Length: 0\r\nConnection: close\r\n\r\n";
            (void)!::write(client, answer.data(), answer.size());
            ::close(client);
        }
    }

    std::string status_line_;
    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
};

// One TLS hub for the whole suite (token + ping, as agent-hub answers them).
class DoctorTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        // A proxy from the environment would change what is checked.
        for (const char* name : {"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"}) {
            ::unsetenv(name);
        }
        server_ = new TlsTestServer(pki());
        const std::string expected =
            "Basic " + crypto::base64_encode(std::string(kClientId) + ":" + kSecret);
        server_->http().Post(
            protocol::kTokenPath, [expected](const httplib::Request& req, httplib::Response& res) {
                if (req.get_header_value("Authorization") != expected) {
                    res.status = 401;
                    res.set_content(R"({"error":"invalid_client"})", "application/json");
                    return;
                }
                res.set_content(R"({"access_token":"tok","token_type":"Bearer","expires_in":900})",
                                "application/json");
            });
        server_->http().Get(
            protocol::kPingPath, [](const httplib::Request& req, httplib::Response& res) {
                if (req.get_header_value("Authorization") != "Bearer tok") {
                    res.status = 401;
                    return;
                }
                res.set_content(nlohmann::json{{"agent_id", req.get_param_value("agent_id")},
                                               {"server_time", util::unix_seconds()}}
                                    .dump(),
                                "application/json");
            });
        server_->start();
    }
    static void TearDownTestSuite() { delete server_; }

    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-doctor-" + crypto::random_token(8));
        fs::create_directories(dir_ / "secrets");
        std::ofstream(dir_ / "job.pub.pem")
            << crypto::Ed25519PrivateKey::generate().public_key().pem();
        std::ofstream(dir_ / "ca.pem") << pki().ca.cert_pem;
        std::ofstream(dir_ / "other-ca.pem") << other_pki().ca.cert_pem;
        write_secret(kSecret);
        testing::make_source_db((dir_ / "crm.db").string());
        hub_url_ = "https://127.0.0.1:" + std::to_string(server_->port());
        ca_file_ = (dir_ / "ca.pem").string();
        source_path_ = (dir_ / "crm.db").string();
    }
    void TearDown() override { fs::remove_all(dir_); }

    void write_secret(const std::string& value) {
        std::ofstream(dir_ / "secrets" / "hub") << value;
        fs::permissions(dir_ / "secrets" / "hub", fs::perms::owner_read | fs::perms::owner_write);
    }

    std::string config_path() {
        std::ofstream(dir_ / "agent.yaml")
            << "agent: {id: edge-1, state_dir: " << (dir_ / "state").string() << "}\n"
            << "hub:\n  url: " << hub_url_ << "\n  ca_file: " << ca_file_
            << "\n  job_signing_public_key: " << (dir_ / "job.pub.pem").string()
            << "\n  client_id: " << kClientId << "\n  client_secret: {secret: \"files/hub\"}\n"
            << "secret_stores: {files: {type: file, path: " << (dir_ / "secrets").string()
            << "}}\nsources:\n  - {name: crm, connector: sqlite, path: " << source_path_ << "}\n"
            << extra_yaml_;
        return (dir_ / "agent.yaml").string();
    }

    int run(std::map<std::string, std::string> dns = {}, std::vector<std::string> urls = {},
            bool json = false) {
        DoctorOptions options;
        options.resolver = std::make_shared<TableResolver>(std::move(dns));
        options.extra_urls = std::move(urls);
        options.json = json;
        options.connect_timeout = std::chrono::milliseconds(2000);
        options.request_timeout = std::chrono::milliseconds(5000);
        std::ostringstream out;
        const int code = run_doctor(config_path(), out, options);
        output_ = out.str();
        EXPECT_EQ(output_.find(kSecret), std::string::npos) << "the secret was printed";
        return code;
    }

    bool has(const std::string& text) const { return output_.find(text) != std::string::npos; }

    static TlsTestServer* server_;
    fs::path dir_;
    std::string hub_url_;
    std::string ca_file_;
    std::string source_path_;
    std::string extra_yaml_;
    std::string output_;
};

TlsTestServer* DoctorTest::server_ = nullptr;

TEST_F(DoctorTest, GoodConfigPassesEveryCheck) {
    EXPECT_EQ(run(), kExitOk) << output_;
    EXPECT_FALSE(has("[FAIL]")) << output_;
    EXPECT_FALSE(has("[skip]")) << output_;
    for (const char* check :
         {"config", "policy", "sandbox", "dns", "tcp", "tls", "token", "hub-api", "source"}) {
        EXPECT_TRUE(has(std::string("[ ok ] ") + check)) << check << "\n" << output_;
    }
    EXPECT_TRUE(has("127.0.0.1 -> 127.0.0.1 (allowed by hub.url)")) << output_;
    EXPECT_TRUE(has("TLSv1.")) << output_;
    EXPECT_TRUE(has("doctor: all ")) << output_;
    EXPECT_FALSE(fs::exists(dir_ / "state"));  // the doctor changes nothing
}

TEST_F(DoctorTest, JsonIsAnArrayOfChecks) {
    EXPECT_EQ(run({}, {}, true), kExitOk) << output_;
    const auto doc = nlohmann::json::parse(output_);
    ASSERT_TRUE(doc.is_array());
    ASSERT_GE(doc.size(), 7u);
    EXPECT_EQ(doc[0]["check"], "config");
    for (const auto& item : doc) EXPECT_EQ(item["status"], "ok") << item.dump();
}

TEST_F(DoctorTest, ABadJobPolicyFileFails) {
    std::ofstream(dir_ / "policy.yaml") << "version: 1\nrules:\n  - name: a\n    sources: [crm]\n"
                                           "    operations: [drop_everything]\n";
    fs::permissions(dir_ / "policy.yaml", fs::perms::owner_read | fs::perms::owner_write);
    extra_yaml_ = "jobs:\n  policy_file: " + (dir_ / "policy.yaml").string() + "\n";
    EXPECT_EQ(run(), kExitFailure) << output_;
    EXPECT_TRUE(has("[FAIL] policy")) << output_;
    EXPECT_TRUE(has("rules[0].operations[0]")) << output_;
    // The rest is still checked.
    EXPECT_TRUE(has("[ ok ] hub-api")) << output_;
}

TEST_F(DoctorTest, ReportsTheWorkerSandboxLayers) {
    EXPECT_EQ(run(), kExitOk) << output_;
    const bool all = sandbox::landlock_abi_version() >= 4;
    EXPECT_TRUE(has(all ? "[ ok ] sandbox    every layer available"
                        : "[ ok ] sandbox    best_effort: job workers run without"))
        << output_;
}

TEST_F(DoctorTest, DatabaseSourcesAreCheckedAgainstTheEgressPolicy) {
    extra_yaml_ = "";
    std::ofstream(dir_ / "secrets" / "db") << R"({"user":"u","password":"p"})";
    source_path_ = source_path_ +
                   "}\n  - {name: shop, connector: postgres, host: db.example.com, "
                   "database: shop, user: {secret: \"files/db#user\"}, password: "
                   "{secret: \"files/db#password\"}";
    EXPECT_EQ(run({{"db.example.com", "203.0.113.9"}}), kExitOk) << output_;
    EXPECT_TRUE(has("shop (postgres): db.example.com:5432 -> 203.0.113.9 allowed by sources[1]"))
        << output_;
    // A name that resolves to a private address needs an allow entry with cidrs.
    EXPECT_EQ(run({{"db.example.com", "10.1.2.3"}}), kExitFailure) << output_;
    EXPECT_TRUE(has("[FAIL] source     shop (postgres): egress: db.example.com")) << output_;
}

TEST_F(DoctorTest, DestinationNotInAllowlist) {
    EXPECT_EQ(run({{"other.example.com", "203.0.113.7"}}, {"https://other.example.com"}),
              kExitFailure);
    EXPECT_TRUE(has(
        "[FAIL] dns        --url https://other.example.com: egress: other.example.com:443 not in "
        "egress allowlist"))
        << output_;
    EXPECT_TRUE(has("fix: add an egress.allow entry {host: other.example.com, port: 443}"))
        << output_;
    EXPECT_TRUE(has("[skip] tcp")) << output_;
}

TEST_F(DoctorTest, NameResolvingToTheMetadataAddress) {
    hub_url_ = "https://hub.test:" + std::to_string(server_->port());
    EXPECT_EQ(run({{"hub.test", "169.254.169.254"}}), kExitFailure);
    EXPECT_TRUE(has("[FAIL] dns")) << output_;
    EXPECT_TRUE(has("169.254.169.254, which is link-local")) << output_;
    EXPECT_TRUE(has("cidr: [169.254.169.254/32]")) << output_;
    EXPECT_TRUE(has("cloud metadata service")) << output_;
    EXPECT_TRUE(has("[skip] token")) << output_;
}

TEST_F(DoctorTest, DnsFailure) {
    hub_url_ = "https://nowhere.test:" + std::to_string(server_->port());
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[FAIL] dns        unknown host nowhere.test")) << output_;
    EXPECT_TRUE(has("getent hosts nowhere.test")) << output_;
}

TEST_F(DoctorTest, WrongCa) {
    ca_file_ = (dir_ / "other-ca.pem").string();
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[ ok ] tcp")) << output_;
    EXPECT_TRUE(has("[FAIL] tls")) << output_;
    EXPECT_TRUE(has("not issued by a trusted CA: set hub.ca_file")) << output_;
    EXPECT_TRUE(has("[skip] token")) << output_;
}

TEST_F(DoctorTest, WrongHostName) {
    const std::string port = std::to_string(server_->port());
    hub_url_ = "https://wrong.test:" + port;
    extra_yaml_ =
        "egress:\n  allow:\n    - {host: wrong.test, port: " + port + ", cidr: 127.0.0.1/32}\n";
    EXPECT_EQ(run({{"wrong.test", "127.0.0.1"}}), kExitFailure);
    EXPECT_TRUE(has("[ ok ] dns        wrong.test -> 127.0.0.1 (allowed by egress.allow[0])"))
        << output_;
    EXPECT_TRUE(has("[FAIL] tls")) << output_;
    EXPECT_TRUE(has("(wrong.test) must be in the server certificate's subject alternative names"))
        << output_;
}

TEST_F(DoctorTest, ServerBelowTheTlsFloor) {
    TlsTestServer old_server(pki(), {.min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION});
    old_server.start();
    hub_url_ = old_server.url();
    extra_yaml_ = "egress: {min_tls: \"1.3\"}\n";
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[FAIL] tls")) << output_;
    EXPECT_TRUE(has("does not speak TLS 1.3 or newer (egress.min_tls)")) << output_;
}

TEST_F(DoctorTest, PinMismatch) {
    const std::string pin =
        "sha256/" + crypto::base64_encode(agent::testing::spki_sha256(other_pki().server.cert_pem));
    extra_yaml_ =
        "egress:\n  allow:\n    - {host: 127.0.0.1, port: " + std::to_string(server_->port()) +
        ", pins: [\"" + pin + "\"]}\n";
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[ ok ] tls")) << output_;
    EXPECT_TRUE(has("[FAIL] pins")) << output_;
    EXPECT_TRUE(has("does not match any pinned key")) << output_;
    EXPECT_TRUE(has("egress.allow[0].pins")) << output_;

    // The right pin passes.
    const std::string good =
        "sha256/" + crypto::base64_encode(agent::testing::spki_sha256(pki().server.cert_pem));
    extra_yaml_ =
        "egress:\n  allow:\n    - {host: 127.0.0.1, port: " + std::to_string(server_->port()) +
        ", pins: [\"" + good + "\"]}\n";
    EXPECT_EQ(run(), kExitOk) << output_;
    EXPECT_TRUE(has("[ ok ] pins")) << output_;
}

TEST_F(DoctorTest, WrongClientSecret) {
    write_secret("not-the-secret");
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[ ok ] tls")) << output_;
    EXPECT_TRUE(has("[FAIL] token      hub rejected client credentials for client_id cid_doctor"))
        << output_;
    EXPECT_TRUE(has("check hub.client_id and the value stored at that reference")) << output_;
    EXPECT_TRUE(has("[skip] hub-api")) << output_;
    EXPECT_FALSE(has("not-the-secret")) << output_;
}

TEST_F(DoctorTest, HubDown) {
    int port = 0;
    {
        TlsTestServer stopped(pki());
        stopped.start();
        port = stopped.port();
    }
    hub_url_ = "https://127.0.0.1:" + std::to_string(port);
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[ ok ] dns")) << output_;
    EXPECT_TRUE(has("[FAIL] tcp")) << output_;
    EXPECT_TRUE(has("nothing accepts connections at 127.0.0.1:" + std::to_string(port))) << output_;
    EXPECT_TRUE(has("[skip] tls")) << output_;
    EXPECT_TRUE(has("[skip] token")) << output_;
}

TEST_F(DoctorTest, TsaAndSiemDestinationsAreCheckedToo) {
    int down = 0;
    {
        TlsTestServer stopped(pki());
        stopped.start();
        down = stopped.port();
    }
    const std::string ca = (dir_ / "ca.pem").string();
    extra_yaml_ = "audit:\n  tsa: {url: \"" + hub_url_ + "/tsr\", ca_file: " + ca +
                  ", tls_ca_file: " + ca +
                  "}\n  siem:\n    - {name: soc, type: syslog, host: 127.0.0.1, port: " +
                  std::to_string(server_->port()) + ", ca_file: " + ca +
                  "}\n    - {name: old, type: syslog, transport: tcp, host: 127.0.0.1, port: " +
                  std::to_string(down) + "}\n    - {name: file, type: json_lines, path: \"-\"}\n";
    EXPECT_EQ(run({}, {}, true), kExitFailure) << output_;
    const auto doc = nlohmann::json::parse(output_);
    std::map<std::string, std::vector<std::string>> by_target;  // "tls ok", ...
    for (const auto& item : doc) {
        by_target[item["target"].get<std::string>()].push_back(
            item["check"].get<std::string>() + " " + item["status"].get<std::string>());
    }
    const std::string port = std::to_string(server_->port());
    using V = std::vector<std::string>;
    EXPECT_EQ(by_target["hub.url 127.0.0.1:" + port], (V{"dns ok", "tcp ok", "tls ok"}));
    EXPECT_EQ(by_target["audit.tsa.url 127.0.0.1:" + port], (V{"dns ok", "tcp ok", "tls ok"}));
    EXPECT_EQ(by_target["audit.siem[0] 127.0.0.1:" + port], (V{"dns ok", "tcp ok", "tls ok"}));
    // Plain TCP has no TLS step; the refused connection names the export.
    EXPECT_EQ(by_target["audit.siem[1] 127.0.0.1:" + std::to_string(down)],
              (V{"dns ok", "tcp fail"}));
    EXPECT_EQ(by_target.count("audit.siem[2]"), 0u);  // a file export is no destination
    for (const auto& item : doc) {
        if (item["status"] == "fail") {
            EXPECT_EQ(item["detail"].get<std::string>().rfind("audit.siem[1]: ", 0), 0u)
                << item.dump();
            EXPECT_NE(item["fix"].get<std::string>().find("nothing accepts connections"),
                      std::string::npos);
        }
    }
}

TEST_F(DoctorTest, SiemClientKeyMustResolveAndMatchTheCertificate) {
    std::ofstream(dir_ / "client.pem") << pki().client.cert_pem;
    std::ofstream(dir_ / "secrets" / "siem-key") << pki().client.key_pem;
    extra_yaml_ = "audit:\n  siem:\n    - {name: soc, type: syslog, host: 127.0.0.1, port: " +
                  std::to_string(server_->port()) + ", ca_file: " + ca_file_ +
                  ", client_cert: " + (dir_ / "client.pem").string() +
                  ", client_key: {secret: files/siem-key}}\n";
    EXPECT_EQ(run(), kExitOk) << output_;
    EXPECT_TRUE(has("[ ok ] secret")) << output_;
    EXPECT_TRUE(has("files/siem-key is the private key of " + (dir_ / "client.pem").string()))
        << output_;

    // The key of another certificate: a clear failure that never quotes it.
    std::ofstream(dir_ / "secrets" / "siem-key", std::ios::trunc) << pki().server.key_pem;
    EXPECT_EQ(run(), kExitFailure) << output_;
    EXPECT_TRUE(has("[FAIL] secret")) << output_;
    EXPECT_TRUE(has("client_key: the private key does not match the certificate in")) << output_;
    EXPECT_FALSE(has("PRIVATE KEY")) << output_;

    fs::remove(dir_ / "secrets" / "siem-key");
    EXPECT_EQ(run(), kExitFailure) << output_;
    EXPECT_TRUE(has("create the secret files/siem-key or fix audit.siem[0].client_key")) << output_;
}

TEST_F(DoctorTest, AuditSaltFromTheStoreIsChecked) {
    std::ofstream(dir_ / "secrets" / "salt") << crypto::base64_encode(std::string(40, 'q') + "!");
    extra_yaml_ = "audit:\n  hmac_salt: {secret: files/salt}\n";
    EXPECT_EQ(run(), kExitOk) << output_;
    EXPECT_TRUE(has("[ ok ] secret")) << output_;
    EXPECT_TRUE(has("files/salt holds a usable salt")) << output_;

    std::ofstream(dir_ / "secrets" / "salt", std::ios::trunc) << crypto::base64_encode("short");
    EXPECT_EQ(run(), kExitFailure) << output_;
    EXPECT_TRUE(has("the salt must decode to at least 32 bytes")) << output_;
    EXPECT_TRUE(has("openssl rand -base64 32")) << output_;
}

TEST_F(DoctorTest, ProxyRefusingTheCredentials) {
    RefusingProxy proxy("HTTP/1.1 407 Proxy Authentication Required");
    std::ofstream(dir_ / "secrets" / "proxy") << "proxy-password";
    extra_yaml_ = "egress:\n  proxy: {url: \"http://127.0.0.1:" + std::to_string(proxy.port()) +
                  "\", username: agent, password: {secret: files/proxy}}\n";
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("proxy 127.0.0.1:" + std::to_string(proxy.port()) + " from egress.proxy"))
        << output_;
    EXPECT_TRUE(has("[ ok ] dns        127.0.0.1 -> 127.0.0.1 (allowed by hub.url)")) << output_;
    EXPECT_TRUE(has("[FAIL] proxy")) << output_;
    EXPECT_TRUE(has("refused the credentials (HTTP 407)")) << output_;
    EXPECT_TRUE(has("check egress.proxy.username")) << output_;
    EXPECT_TRUE(has("[skip] tcp")) << output_;
    EXPECT_FALSE(has("proxy-password")) << output_;
}

TEST_F(DoctorTest, ProxyRefusingTheDestination) {
    RefusingProxy proxy("HTTP/1.1 403 Forbidden");
    extra_yaml_ =
        "egress:\n  proxy: {url: \"http://127.0.0.1:" + std::to_string(proxy.port()) + "\"}\n";
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[FAIL] proxy")) << output_;
    EXPECT_TRUE(
        has("refused CONNECT to 127.0.0.1:" + std::to_string(server_->port()) + " (HTTP 403)"))
        << output_;
    EXPECT_TRUE(has("the proxy's policy refuses CONNECT")) << output_;
}

TEST_F(DoctorTest, MissingSqliteSource) {
    source_path_ = (dir_ / "missing.db").string();
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[ ok ] hub-api")) << output_;
    EXPECT_TRUE(has("[FAIL] source")) << output_;
    EXPECT_TRUE(has("missing.db does not exist")) << output_;
    EXPECT_TRUE(has("fix: sources[0].path")) << output_;
    EXPECT_FALSE(fs::exists(dir_ / "missing.db"));  // opened read-only, never created
}

TEST_F(DoctorTest, SourceThatIsNotADatabase) {
    std::ofstream(dir_ / "notes.txt") << "this is not a database, just some text\n";
    source_path_ = (dir_ / "notes.txt").string();
    EXPECT_EQ(run(), kExitFailure);
    EXPECT_TRUE(has("[FAIL] source")) << output_;
    EXPECT_TRUE(has("cannot be read")) << output_;
}

TEST_F(DoctorTest, BadConfigKeyExits2AndNamesIt) {
    extra_yaml_ = "egress: {min_tsl: \"1.3\"}\n";
    EXPECT_EQ(run(), kExitConfig);
    EXPECT_TRUE(has("[FAIL] config")) << output_;
    EXPECT_TRUE(has("egress.min_tsl")) << output_;
    EXPECT_TRUE(has("fix: change egress.min_tsl in")) << output_;
    EXPECT_FALSE(has("[ ok ]")) << output_;
}

TEST_F(DoctorTest, MissingConfigFileExits2) {
    std::ostringstream out;
    EXPECT_EQ(run_doctor((dir_ / "nope.yaml").string(), out), kExitConfig);
    EXPECT_NE(out.str().find("[FAIL] config"), std::string::npos) << out.str();
    EXPECT_NE(out.str().find("fix: --config must name"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace sa::agent::app
