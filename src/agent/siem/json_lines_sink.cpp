#include "agent/siem/json_lines_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sa::agent::siem {
namespace {

Status write_all(int fd, std::string_view data, const std::string& path) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(ErrorCode::io, "cannot write " + path + ": " + std::strerror(errno));
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<JsonLinesSink>> JsonLinesSink::open(const std::string& path) {
    if (path.empty()) return fail(ErrorCode::invalid_argument, "empty JSON-lines output path");
    if (path == "-") return std::unique_ptr<JsonLinesSink>(new JsonLinesSink(-1, "stdout"));
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return fail(e == EACCES ? ErrorCode::permission_denied : ErrorCode::io,
                    "cannot open " + path + ": " + std::strerror(e));
    }
    return std::unique_ptr<JsonLinesSink>(new JsonLinesSink(fd, path));
}

JsonLinesSink::JsonLinesSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

JsonLinesSink::~JsonLinesSink() {
    if (fd_ >= 0) ::close(fd_);
}

Status JsonLinesSink::send(std::span<const std::string_view> record_lines) {
    std::string buf;
    if (torn_) buf += '\n';
    for (auto line : record_lines) {
        buf.append(line);
        buf += '\n';
    }
    if (fd_ < 0) {
        if (std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size()) {
            torn_ = true;
            return fail(ErrorCode::io, "cannot write to stdout");
        }
        torn_ = false;
        return {};
    }
    auto written = write_all(fd_, buf, path_);
    torn_ = !written;
    return written;
}

Status JsonLinesSink::confirm() {
    if (fd_ < 0) {
        if (std::fflush(stdout) != 0) return fail(ErrorCode::io, "cannot flush stdout");
        return {};
    }
    if (::fdatasync(fd_) != 0)
        return fail(ErrorCode::io, "cannot fdatasync " + path_ + ": " + std::strerror(errno));
    return {};
}

std::string JsonLinesSink::describe() const {
    return "JSON lines to " + path_;
}

}  // namespace sa::agent::siem
