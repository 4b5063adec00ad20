// sa-test-worker: the real worker (run_worker) plus faults selected by the
// source's name, applied right after ready (inside the sandbox). Built with
// the tests only; never part of the product binary.
//
//   crash-*              raise(SIGSEGV)
//   hang-*               ignore SIGTERM, log that, sleep forever (SIGKILL escalation)
//   slow-*               progress every 200 ms forever (SIGTERM ends it)
//   fds-*                result {"fds":[...]}: the descriptors open at exec time
//   env-*                result {"env":[...]}: the environment
//   dump-*               result {"dumpable":N,"core_limit":N}: could a crash leave a core?
//   forge-*              a chunk frame naming "../../etc/passwd"
//   impostor-*           a job frame (only the supervisor may send one)
//   escape-<what>-*      attempt <what>, result {"attempt","blocked","errno"}:
//       secretdir  open the file named by source.database
//       shadow     open /etc/shadow
//       exec       execve /bin/sh
//       connect    TCP connect to 127.0.0.1, port = source.database
//       ptrace     PTRACE_TRACEME
//   anything else        the real worker
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/worker/messages.h"
#include "agent/worker/worker_main.h"

namespace {

using nlohmann::json;
using sa::agent::worker::Channel;
using sa::agent::worker::FrameType;
using sa::agent::worker::WorkerJob;

// Probed with fcntl (allowed in the sandbox) at startup, before the worker
// opens anything of its own: exactly what the supervisor let through exec.
std::vector<int> inherited_fds() {
    std::vector<int> fds;
    for (int fd = 0; fd < 1024; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1) fds.push_back(fd);
    }
    return fds;
}

int send_result(Channel& channel, json result) {
    auto payload = sa::agent::worker::encode_finished({{}, std::move(result)});
    if (!payload) return 1;
    return channel.send(static_cast<uint8_t>(FrameType::result), *payload) ? 0 : 4;
}

int attempt_result(Channel& channel, const std::string& what, int rc, int error) {
    json result{{"attempt", what}, {"blocked", rc < 0}, {"errno", ""}};
    if (rc < 0) {
        const char* name = strerrorname_np(error);
        result["errno"] = name != nullptr ? name : std::to_string(error);
    }
    return send_result(channel, std::move(result));
}

void sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

int escape(const std::string& what, const WorkerJob& job, Channel& channel) {
    int rc = -1;
    int error = 0;
    if (what == "secretdir" || what == "shadow") {
        const std::string path = what == "shadow" ? "/etc/shadow" : job.source.database;
        rc = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        error = errno;
        if (rc >= 0) ::close(rc);
    } else if (what == "exec") {
        char sh[] = "/bin/sh";
        char dash_c[] = "-c";
        char exit0[] = "exit 0";
        char* argv[] = {sh, dash_c, exit0, nullptr};
        char* envp[] = {nullptr};
        rc = ::execve(sh, argv, envp);
        error = errno;
    } else if (what == "connect") {
        int port = 0;
        const std::string& p = job.source.database;
        std::from_chars(p.data(), p.data() + p.size(), port);
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            error = errno;
        } else {
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(static_cast<uint16_t>(port));
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            rc = ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
            error = errno;
            ::close(s);
        }
    } else if (what == "ptrace") {
        rc = static_cast<int>(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
        error = errno;
    } else {
        return send_result(channel, {{"attempt", what}, {"error", "unknown escape"}});
    }
    return attempt_result(channel, what, rc, error);
}

std::optional<int> fault(const std::vector<int>& fds, const WorkerJob& job, Channel& channel) {
    const std::string& name = job.source.name;
    if (name.starts_with("crash-")) {
        // The default action, also in a sanitizer build (whose handler would
        // turn the signal into "exit 1").
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(SIGSEGV, &dfl, nullptr);
        ::raise(SIGSEGV);
        return 1;
    }
    if (name.starts_with("hang-")) {
        ::signal(SIGTERM, SIG_IGN);
        // Tells the test that SIGTERM is ignored from now on.
        (void)channel.send(static_cast<uint8_t>(FrameType::log),
                           sa::agent::worker::encode_log({"info", "ignoring SIGTERM", {}}));
        for (;;) sleep_ms(1000);
    }
    if (name.starts_with("slow-")) {
        for (int64_t n = 1;; ++n) {
            sa::agent::worker::Progress progress{n, 0, 0};
            if (!channel.send(static_cast<uint8_t>(FrameType::progress),
                              sa::agent::worker::encode_progress(progress))) {
                return 4;
            }
            sleep_ms(200);
        }
    }
    if (name.starts_with("fds-")) return send_result(channel, {{"fds", fds}});
    if (name.starts_with("dump-")) {
        rlimit core{};
        ::getrlimit(RLIMIT_CORE, &core);
        return send_result(channel, {{"dumpable", ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)},
                                     {"core_limit", core.rlim_cur}});
    }
    if (name.starts_with("env-")) {
        json env = json::array();
        for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
        return send_result(channel, {{"env", env}});
    }
    if (name.starts_with("forge-")) {
        const sa::agent::worker::ChunkMessage forged{0, std::string(64, 'a'), 1,
                                                     "../../etc/passwd"};
        return channel.send(static_cast<uint8_t>(FrameType::chunk),
                            sa::agent::worker::encode_chunk(forged))
                   ? 0
                   : 4;
    }
    if (name.starts_with("impostor-")) {
        return channel.send(static_cast<uint8_t>(FrameType::job), "{}") ? 0 : 4;
    }
    if (name.starts_with("escape-")) {
        const std::string_view rest = std::string_view(name).substr(7);
        return escape(std::string(rest.substr(0, rest.find('-'))), job, channel);
    }
    return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<int> fds = inherited_fds();
    if (argc != 2 || std::string_view(argv[1]) != "worker") {
        std::fprintf(stderr, "usage: sa-test-worker worker (started by WorkerSession)\n");
        return 64;
    }
    return sa::agent::worker::run_worker(
        3, [&](const WorkerJob& job, Channel& channel) { return fault(fds, job, channel); });
}
