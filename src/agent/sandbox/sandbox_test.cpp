#include "agent/sandbox/sandbox.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "agent/sandbox/sandbox_internal.h"
#include "common/sqlite/database.h"
#include "common/util/files.h"

namespace sa::agent::sandbox {
namespace {

namespace fs = std::filesystem;

// What a sandboxed child reports: "key=value" lines written to a pipe,
// then how it ended.
struct ChildOutcome {
    int wait_status = 0;
    std::map<std::string, std::string> values;

    bool exited_ok() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }
    bool killed_by(int sig) const {
        return WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == sig;
    }
    std::string describe() const {
        if (WIFEXITED(wait_status)) return "exited " + std::to_string(WEXITSTATUS(wait_status));
        if (WIFSIGNALED(wait_status)) return "signal " + std::to_string(WTERMSIG(wait_status));
        return "status " + std::to_string(wait_status);
    }
};

// The child side of the pipe. Plain write(): the sandbox allows it on a
// descriptor opened before the drop.
class Reporter final {
  public:
    explicit Reporter(int fd) : fd_(fd) {}
    void put(const std::string& key, const std::string& value) {
        const std::string line = key + "=" + value + "\n";
        size_t off = 0;
        while (off < line.size()) {
            ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
            if (n <= 0) return;
            off += static_cast<size_t>(n);
        }
    }

  private:
    int fd_;
};

// Runs body in a forked child so the test process itself stays
// unrestricted; the child leaves with _exit (no atexit handlers, which
// could need calls the sandbox forbids).
ChildOutcome run_child(const std::function<void(Reporter&)>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        ADD_FAILURE() << "pipe2: " << std::strerror(errno);
        return {};
    }
    std::fflush(nullptr);  // nothing buffered twice if the child calls exit()
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        Reporter reporter(fds[1]);
        body(reporter);
        ::_exit(0);
    }
    ::close(fds[1]);
    ChildOutcome outcome;
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        if (n > 0) text.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    while (::waitpid(pid, &outcome.wait_status, 0) < 0 && errno == EINTR) {
    }
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        const size_t eq = line.find('=');
        if (eq != std::string::npos) outcome.values[line.substr(0, eq)] = line.substr(eq + 1);
        start = end + 1;
    }
    return outcome;
}

std::string errno_name(int err) {
    switch (err) {
        case 0:
            return "0";
        case EACCES:
            return "EACCES";
        case EPERM:
            return "EPERM";
        case ENOENT:
            return "ENOENT";
        case ECONNREFUSED:
            return "ECONNREFUSED";
        default:
            return "errno " + std::to_string(err);
    }
}

// A loopback TCP listener on an ephemeral port, owned by the test process.
class Listener final {
  public:
    Listener() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(fd_, 8) != 0) {
            ADD_FAILURE() << "listener: " << std::strerror(errno);
            return;
        }
        socklen_t len = sizeof addr;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
    }
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    ~Listener() {
        if (fd_ >= 0) ::close(fd_);
    }
    uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

// 0 on success, else errno.
int try_connect(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int err = rc == 0 ? 0 : errno;
    ::close(fd);
    return err;
}

// 0 if the file opens for reading, else errno.
int try_open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
}

bool has_effective_setpcap() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    return ::syscall(SYS_capget, &header, data) == 0 &&
           (data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP)) != 0;
}

// A spool directory (read-write in the sandbox) and a "secret" directory
// next to it that no rule covers.
class SandboxTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "sa-sandbox-test-XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        base_ = tmpl;
        spool_ = base_ / "spool";
        secret_ = base_ / "secret";
        fs::create_directories(spool_);
        fs::create_directories(secret_);
        std::ofstream(secret_ / "key") << "not for the worker\n";
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(base_, ec);
    }

    Spec spec() const {
        Spec s;
        s.read_write_paths = {spool_.string()};
        s.limits.address_space_bytes = 2ull << 30;
        s.limits.cpu_seconds = 60;
        s.limits.open_files = 64;
        s.limits.file_size_bytes = 16ull << 20;
        s.limits.processes = 0;
        return s;
    }

    fs::path base_, spool_, secret_;
};

// Applies the real sandbox in a child, then runs attempt; the child must die
// by SIGSYS before it reports "survived".
ChildOutcome attempt_after_sandbox(const Spec& spec, const std::function<void()>& attempt) {
    return run_child([&](Reporter& out) {
        auto report = apply(spec);
        if (!report) {
            out.put("error", report.error().describe());
            ::_exit(3);
        }
        out.put("applied", "1");
        attempt();
        out.put("survived", "1");
    });
}

TEST(SandboxNames, LayerNamesAreTheWireNames) {
    EXPECT_STREQ(layer_name(Layer::no_new_privs), "no_new_privs");
    EXPECT_STREQ(layer_name(Layer::capabilities), "capabilities");
    EXPECT_STREQ(layer_name(Layer::rlimits), "rlimits");
    EXPECT_STREQ(layer_name(Layer::landlock_fs), "landlock_fs");
    EXPECT_STREQ(layer_name(Layer::landlock_net), "landlock_net");
    EXPECT_STREQ(layer_name(Layer::seccomp), "seccomp");
}

TEST(SandboxReport, AllAppliedNeedsEveryLayer) {
    Report r;
    EXPECT_FALSE(r.all_applied());
    r.layers.push_back({Layer::no_new_privs, true, ""});
    r.layers.push_back({Layer::seccomp, true, ""});
    EXPECT_TRUE(r.all_applied());
    r.layers.push_back({Layer::landlock_net, false, "ABI 3"});
    EXPECT_FALSE(r.all_applied());
}

TEST(SandboxDefaults, ReadOnlyPathsLeaveOutEtcAndProc) {
    const auto paths = default_read_only_paths();
    EXPECT_NE(std::find(paths.begin(), paths.end(), "/usr"), paths.end());
    EXPECT_NE(std::find(paths.begin(), paths.end(), "/etc/ssl/certs"), paths.end());
    for (const auto& p : paths) {
        EXPECT_NE(p, "/etc");
        EXPECT_NE(p, "/");
        EXPECT_NE(p.rfind("/proc", 0), 0u) << p;
        EXPECT_NE(p, "/etc/shadow");
    }
}

TEST_F(SandboxTest, ConfinesFilesNetworkAndPrivileges) {
    Listener allowed;
    Listener other;
    ASSERT_NE(allowed.port(), 0);
    ASSERT_NE(other.port(), 0);
    Spec s = spec();
    s.connect_ports = {allowed.port()};
    const std::string spool_file = (spool_ / "chunk.ndjson").string();
    const std::string secret_file = (secret_ / "key").string();

    auto child = run_child([&](Reporter& out) {
        auto report = apply(s);
        if (!report) {
            out.put("error", report.error().describe());
            return;
        }
        out.put("all_applied", report->all_applied() ? "1" : "0");
        for (const auto& l : report->layers) {
            out.put(std::string("layer.") + layer_name(l.layer), l.applied ? "1" : "0");
            out.put(std::string("detail.") + layer_name(l.layer), l.detail);
        }
        // The spool: create, write, read back, rename, remove.
        {
            const int fd = ::open(spool_file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
            const bool wrote = fd >= 0 && ::write(fd, "{}\n", 3) == 3 && ::close(fd) == 0;
            char buf[8] = {};
            const int rfd = ::open(spool_file.c_str(), O_RDONLY | O_CLOEXEC);
            const bool read_back =
                rfd >= 0 && ::read(rfd, buf, sizeof buf) == 3 && std::string(buf, 3) == "{}\n";
            if (rfd >= 0) ::close(rfd);
            const std::string renamed = spool_file + ".done";
            const bool moved = ::rename(spool_file.c_str(), renamed.c_str()) == 0 &&
                               ::unlink(renamed.c_str()) == 0;
            out.put("spool", wrote && read_back && moved ? "ok" : errno_name(errno));
        }
        out.put("secret", errno_name(try_open(secret_file)));
        out.put(
            "secret_create",
            errno_name(::open((secret_file + ".new").c_str(), O_CREAT | O_WRONLY, 0600) < 0 ? errno
                                                                                            : 0));
        if (::access("/etc/shadow", F_OK) == 0)
            out.put("shadow", errno_name(try_open("/etc/shadow")));
        out.put("usr", errno_name(try_open("/usr/lib/os-release")));
        out.put("connect_allowed", errno_name(try_connect(allowed.port())));
        out.put("connect_other", errno_name(try_connect(other.port())));
        // UDP and UNIX sockets are refused softly, not killed.
        const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
        out.put("udp", errno_name(udp < 0 ? errno : 0));
        const int unix_sock = ::socket(AF_UNIX, SOCK_STREAM, 0);
        out.put("unix", errno_name(unix_sock < 0 ? errno : 0));
        out.put("nnp", std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2]{};
        const bool got = ::syscall(SYS_capget, &header, data) == 0;
        bool empty = got;
        for (const auto& d : data) empty = empty && !d.effective && !d.permitted && !d.inheritable;
        out.put("caps_empty", empty ? "1" : "0");
        out.put("bounding_net_admin",
                std::to_string(::prctl(PR_CAPBSET_READ, CAP_NET_ADMIN, 0, 0, 0)));
        for (auto [name, res] : {std::pair{"as", RLIMIT_AS},
                                 {"cpu", RLIMIT_CPU},
                                 {"nofile", RLIMIT_NOFILE},
                                 {"fsize", RLIMIT_FSIZE},
                                 {"nproc", RLIMIT_NPROC}}) {
            rlimit rl{};
            ::getrlimit(res, &rl);
            out.put(std::string("rlimit.") + name,
                    std::to_string(rl.rlim_cur) + "/" + std::to_string(rl.rlim_max));
        }
        out.put("done", "1");
    });

    ASSERT_TRUE(child.exited_ok()) << child.describe();
    ASSERT_EQ(child.values.count("error"), 0u) << child.values["error"];
    ASSERT_EQ(child.values["done"], "1");
    const int abi = landlock_abi_version();
    for (const char* layer : {"no_new_privs", "capabilities", "rlimits", "seccomp"}) {
        EXPECT_EQ(child.values[std::string("layer.") + layer], "1") << layer;
    }
    EXPECT_EQ(child.values["spool"], "ok");
    EXPECT_EQ(child.values["nnp"], "1");
    EXPECT_EQ(child.values["caps_empty"], "1");
    if (has_effective_setpcap()) {
        EXPECT_EQ(child.values["bounding_net_admin"], "0");
    } else {  // not root: the bounding set cannot be changed, and is reported so
        EXPECT_NE(child.values["detail.capabilities"].find("no CAP_SETPCAP"), std::string::npos)
            << child.values["detail.capabilities"];
    }
    EXPECT_EQ(child.values["connect_allowed"], "0");
    EXPECT_EQ(child.values["udp"], "EACCES");
    EXPECT_EQ(child.values["unix"], "EACCES");
    EXPECT_EQ(child.values["usr"], "0");

    const auto& l = s.limits;
#if !defined(__SANITIZE_ADDRESS__)
    EXPECT_EQ(child.values["rlimit.as"],
              std::to_string(l.address_space_bytes) + "/" + std::to_string(l.address_space_bytes));
#endif
    EXPECT_EQ(child.values["rlimit.cpu"],
              std::to_string(l.cpu_seconds) + "/" + std::to_string(l.cpu_seconds));
    EXPECT_EQ(child.values["rlimit.nofile"],
              std::to_string(l.open_files) + "/" + std::to_string(l.open_files));
    EXPECT_EQ(child.values["rlimit.fsize"],
              std::to_string(l.file_size_bytes) + "/" + std::to_string(l.file_size_bytes));
    EXPECT_EQ(child.values["rlimit.nproc"], "0/0");

    if (abi < 1) GTEST_SKIP() << "no Landlock on this kernel: file and TCP rules not checked";
    EXPECT_EQ(child.values["layer.landlock_fs"], "1");
    EXPECT_EQ(child.values["secret"], "EACCES");
    EXPECT_EQ(child.values["secret_create"], "EACCES");
    if (child.values.count("shadow")) {
        EXPECT_EQ(child.values["shadow"], "EACCES");
    }
    if (abi < 4) GTEST_SKIP() << "Landlock ABI " << abi << " < 4: TCP connect rules not checked";
    EXPECT_EQ(child.values["layer.landlock_net"], "1");
    EXPECT_EQ(child.values["all_applied"], "1");
    EXPECT_EQ(child.values["connect_other"], "EACCES");
}

TEST_F(SandboxTest, NormalExitAndAbortStillWork) {
    auto ok = attempt_after_sandbox(spec(), [] {});
    EXPECT_TRUE(ok.exited_ok()) << ok.describe() << " " << ok.values["error"];
    EXPECT_EQ(ok.values["survived"], "1");
    // raise()/abort() signal the process itself: allowed, so it dies by
    // SIGABRT and not by SIGSYS.
    auto aborted = attempt_after_sandbox(spec(), [] { std::abort(); });
    EXPECT_TRUE(aborted.killed_by(SIGABRT)) << aborted.describe();
    EXPECT_EQ(aborted.values["applied"], "1");
    // exit() runs atexit handlers and flushes stdio (and in the sanitizer
    // build, would run the leak check): a worker returning from main.
    auto exited = attempt_after_sandbox(spec(), [] { std::exit(0); });
    EXPECT_TRUE(exited.exited_ok()) << exited.describe();
    EXPECT_EQ(exited.values.count("survived"), 0u);
}

// What a worker really does after the drop: read a SQLite source opened
// read-only (a file rule, not its directory) and write a chunk atomically
// into the spool.
TEST_F(SandboxTest, WorkerStyleSqliteReadAndSpoolWriteArePermitted) {
    const std::string db_path = (base_ / "source.db").string();
    {
        auto db = sqlite::Database::open(db_path, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db) << db.error().describe();
        ASSERT_TRUE(
            db->exec("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); CREATE VIEW v AS "
                     "SELECT b FROM t;"));
    }
    Spec s = spec();
    s.read_only_paths = default_read_only_paths();
    s.read_only_paths.push_back(db_path);
    s.read_only_paths.push_back(db_path + "-journal");  // absent: skipped
    const std::string chunk = (spool_ / "chunk-000000.ndjson").string();
    auto child = run_child([&](Reporter& out) {
        auto report = apply(s);
        if (!report) {
            out.put("error", report.error().describe());
            return;
        }
        auto db = sqlite::Database::open(db_path, sqlite::Database::Mode::read_only);
        if (!db) {
            out.put("error", db.error().describe());
            return;
        }
        auto stmt = db->prepare("SELECT count(*) FROM sqlite_schema");
        if (!stmt || !stmt->step()) {
            out.put("error", "query failed");
            return;
        }
        out.put("objects", std::to_string(stmt->integer(0)));
        auto written = util::write_file_atomic(chunk, "{\"table\":\"t\"}\n", 0600);
        out.put("chunk", written ? "ok" : written.error().describe());
        // The database's directory is not readable, only the file itself.
        out.put(
            "sibling",
            errno_name(try_open((fs::path(db_path).parent_path() / "secret" / "key").string())));
    });
    ASSERT_TRUE(child.exited_ok()) << child.describe();
    ASSERT_EQ(child.values.count("error"), 0u) << child.values["error"];
    EXPECT_EQ(child.values["objects"], "2");
    EXPECT_EQ(child.values["chunk"], "ok");
    EXPECT_TRUE(fs::exists(chunk));
    if (landlock_abi_version() >= 1) {
        EXPECT_EQ(child.values["sibling"], "EACCES");
    }
}

struct ForbiddenCase {
    const char* name;
    std::function<void()> attempt;
};

TEST_F(SandboxTest, ForbiddenCallsKillWithSigsys) {
    const ForbiddenCase cases[] = {
        {"execve /bin/sh",
         [] {
             char sh[] = "/bin/sh";
             char* argv[] = {sh, nullptr};
             char* envp[] = {nullptr};
             ::execve(sh, argv, envp);
         }},
        {"ptrace(PTRACE_TRACEME)", [] { ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr); }},
        {"clone (fork)", [] { ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); }},
        {"socket(AF_NETLINK)", [] { ::socket(AF_NETLINK, SOCK_RAW, 0); }},
        {"bind",
         [] {
             const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
             sockaddr_in addr{};
             addr.sin_family = AF_INET;
             addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
             ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
         }},
        {"kill(1)", [] { ::kill(1, 0); }},
        {"setrlimit",
         [] {
             rlimit rl{1, 1};
             ::setrlimit(RLIMIT_CORE, &rl);
         }},
        {"prctl(PR_SET_DUMPABLE)", [] { ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }},
    };
    for (const auto& c : cases) {
        auto outcome = attempt_after_sandbox(spec(), c.attempt);
        EXPECT_EQ(outcome.values["applied"], "1") << c.name << ": " << outcome.values["error"];
        EXPECT_TRUE(outcome.killed_by(SIGSYS)) << c.name << ": " << outcome.describe();
        EXPECT_EQ(outcome.values.count("survived"), 0u) << c.name;
    }
}

TEST_F(SandboxTest, StrictModeRefusesAMissingLayer) {
    Spec s = spec();
    s.strict = true;
    auto child = run_child([&](Reporter& out) {
        auto report = detail::apply_with(s, detail::Environment{0, true});
        if (report) {
            out.put("result", "applied");
            return;
        }
        out.put("code", to_string(report.error().code));
        out.put("message", report.error().message);
        // Refused before anything changed.
        out.put("nnp", std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
    });
    ASSERT_TRUE(child.exited_ok()) << child.describe();
    EXPECT_EQ(child.values["code"], "permission_denied");
    EXPECT_NE(child.values["message"].find("landlock_fs"), std::string::npos)
        << child.values["message"];
    EXPECT_EQ(child.values["nnp"], "0");

    // ABI 3: file rules exist, TCP rules do not.
    auto old_abi = run_child([&](Reporter& out) {
        auto report = detail::apply_with(s, detail::Environment{3, true});
        out.put("message", report ? std::string("applied") : report.error().message);
    });
    EXPECT_NE(old_abi.values["message"].find("landlock_net"), std::string::npos)
        << old_abi.values["message"];

    auto no_seccomp = run_child([&](Reporter& out) {
        auto report = detail::apply_with(s, detail::Environment{7, false});
        out.put("message", report ? std::string("applied") : report.error().message);
    });
    EXPECT_NE(no_seccomp.values["message"].find("seccomp"), std::string::npos)
        << no_seccomp.values["message"];
}

TEST_F(SandboxTest, DefaultModeRunsWithoutAMissingLayerAndReportsIt) {
    auto child = run_child([&](Reporter& out) {
        auto report = detail::apply_with(spec(), detail::Environment{0, true});
        if (!report) {
            out.put("error", report.error().describe());
            return;
        }
        out.put("all_applied", report->all_applied() ? "1" : "0");
        out.put("count", std::to_string(report->layers.size()));
        for (size_t i = 0; i < report->layers.size(); ++i) {
            const auto& l = report->layers[i];
            const std::string key = std::to_string(i) + "." + layer_name(l.layer);
            out.put(key, l.applied ? "1" : "0");
            out.put(key + ".detail", l.detail);
        }
    });
    ASSERT_TRUE(child.exited_ok()) << child.describe();
    ASSERT_EQ(child.values.count("error"), 0u) << child.values["error"];
    EXPECT_EQ(child.values["all_applied"], "0");
    ASSERT_EQ(child.values["count"], "6");
    EXPECT_EQ(child.values["0.no_new_privs"], "1");
    EXPECT_EQ(child.values["1.capabilities"], "1");
    EXPECT_EQ(child.values["2.rlimits"], "1");
    EXPECT_EQ(child.values["3.landlock_fs"], "0");
    EXPECT_FALSE(child.values["3.landlock_fs.detail"].empty());
    EXPECT_EQ(child.values["4.landlock_net"], "0");
    EXPECT_FALSE(child.values["4.landlock_net.detail"].empty());
    EXPECT_EQ(child.values["5.seccomp"], "1");
}

TEST_F(SandboxTest, OlderLandlockAbiStillConfinesFiles) {
    if (landlock_abi_version() < 3) GTEST_SKIP() << "needs a kernel with Landlock ABI >= 3";
    const std::string secret_file = (secret_ / "key").string();
    const std::string spool_file = (spool_ / "f").string();
    for (int abi : {1, 3}) {
        auto child = run_child([&](Reporter& out) {
            auto report = detail::apply_with(spec(), detail::Environment{abi, true});
            if (!report) {
                out.put("error", report.error().describe());
                return;
            }
            out.put("fs", report->layers[3].applied ? "1" : "0");
            out.put("fs.detail", report->layers[3].detail);
            out.put("net", report->layers[4].applied ? "1" : "0");
            out.put("net.detail", report->layers[4].detail);
            out.put("secret", errno_name(try_open(secret_file)));
            const int fd =
                ::open(spool_file.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
            out.put("spool", errno_name(fd < 0 ? errno : 0));
        });
        ASSERT_TRUE(child.exited_ok()) << "ABI " << abi << ": " << child.describe();
        ASSERT_EQ(child.values.count("error"), 0u) << child.values["error"];
        EXPECT_EQ(child.values["fs"], "1") << abi;
        EXPECT_NE(child.values["fs.detail"].find("landlock ABI " + std::to_string(abi)),
                  std::string::npos)
            << child.values["fs.detail"];
        EXPECT_EQ(child.values["net"], "0") << abi;
        EXPECT_NE(child.values["net.detail"].find("needs ABI 4"), std::string::npos)
            << child.values["net.detail"];
        EXPECT_EQ(child.values["secret"], "EACCES") << abi;
        EXPECT_EQ(child.values["spool"], "0") << abi;
    }
}

TEST_F(SandboxTest, RefusesAMultiThreadedProcess) {
    auto child = run_child([&](Reporter& out) {
        int fds[2];
        if (::pipe(fds) != 0) return;
        // A second thread that waits until the check is done.
        std::thread waiter([&] {
            char c;
            (void)!::read(fds[0], &c, 1);
        });
        auto report = apply(spec());
        out.put("code", report ? std::string("applied") : to_string(report.error().code));
        out.put("nnp", std::to_string(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
        (void)!::write(fds[1], "x", 1);
        waiter.join();
    });
    ASSERT_TRUE(child.exited_ok()) << child.describe();
    EXPECT_EQ(child.values["code"], "invalid_argument");
    EXPECT_EQ(child.values["nnp"], "0");
}

TEST(SandboxProbe, LandlockAbiIsNeverNegative) {
    EXPECT_GE(landlock_abi_version(), 0);
}

}  // namespace
}  // namespace sa::agent::sandbox
