#include "agent/sandbox/probe.h"

#include "agent/sandbox/sandbox_internal.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

namespace sa::agent::sandbox {
namespace {

constexpr std::array kLayers{Layer::no_new_privs, Layer::capabilities, Layer::rlimits,
                             Layer::landlock_fs,  Layer::landlock_net, Layer::seccomp};

// One line per layer: "NAME APPLIED DETAIL\n" (detail without newlines).
std::string encode(const Report& report) {
    std::string out;
    for (const auto& layer : report.layers) {
        std::string detail = layer.detail;
        for (char& c : detail) {
            if (c == '\n') c = ' ';
        }
        out += std::string(layer_name(layer.layer)) + " " + (layer.applied ? "1" : "0") + " " +
               detail + "\n";
    }
    return out;
}

Result<Report> decode(const std::string& text) {
    Report report;
    size_t start = 0;
    while (start < text.size()) {
        const size_t end = text.find('\n', start);
        if (end == std::string::npos) break;
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        const size_t first = line.find(' ');
        if (first == std::string::npos || first + 2 > line.size()) {
            return fail(ErrorCode::internal, "sandbox probe: malformed report line");
        }
        const std::string name = line.substr(0, first);
        LayerStatus status{Layer::no_new_privs, line[first + 1] == '1',
                           first + 3 <= line.size() ? line.substr(first + 3) : ""};
        bool known = false;
        for (Layer layer : kLayers) {
            if (name == layer_name(layer)) {
                status.layer = layer;
                known = true;
            }
        }
        if (!known) return fail(ErrorCode::internal, "sandbox probe: unknown layer " + name);
        report.layers.push_back(std::move(status));
    }
    if (report.layers.size() != kLayers.size()) {
        return fail(ErrorCode::internal, "sandbox probe: incomplete report");
    }
    return report;
}

void write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        done += static_cast<size_t>(n);
    }
}

}  // namespace

Result<Report> probe(const Spec& spec) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        return fail(ErrorCode::io, std::string("sandbox probe: pipe: ") + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int saved = errno;
        ::close(fds[0]);
        ::close(fds[1]);
        return fail(ErrorCode::io, std::string("sandbox probe: fork: ") + std::strerror(saved));
    }
    if (pid == 0) {
        ::close(fds[0]);
        Spec trial = spec;
        trial.strict = false;
        detail::Environment env = detail::detect_environment();
        env.leak_check_first = false;
        auto report = detail::apply_with(trial, env);
        write_all(fds[1], report ? encode(*report) : "error " + report.error().message + "\n");
        ::_exit(report ? 0 : 1);
    }
    ::close(fds[1]);
    std::string text;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (text.size() < 64 * 1024) text.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (text.rfind("error ", 0) == 0) {
            return fail(ErrorCode::internal,
                        "sandbox probe: " + text.substr(6, text.find('\n') - 6));
        }
        return fail(ErrorCode::internal, WIFSIGNALED(status)
                                             ? "sandbox probe: the child was killed by signal " +
                                                   std::to_string(WTERMSIG(status))
                                             : "sandbox probe: the child exited with " +
                                                   std::to_string(WEXITSTATUS(status)));
    }
    return decode(text);
}

std::string describe_missing(const Report& report) {
    std::string out;
    for (const auto& layer : report.layers) {
        if (layer.applied) continue;
        out += (out.empty() ? "" : ", ") + std::string(layer_name(layer.layer));
        if (!layer.detail.empty()) out += " (" + layer.detail + ")";
    }
    return out;
}

}  // namespace sa::agent::sandbox
