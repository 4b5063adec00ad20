#include "common/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/crypto/random.h"

namespace sa::util {
namespace {

Error errno_error(const std::string& what, const std::string& path) {
    return Error{ErrorCode::io, what + " " + path + ": " + std::strerror(errno)};
}

}  // namespace

Result<std::string> read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return fail(ErrorCode::not_found, "no such file: " + path);
        if (errno == EACCES)
            return fail(ErrorCode::permission_denied,
                        "cannot read " + path + ": permission denied");
        return std::unexpected(errno_error("cannot open", path));
    }
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            Error e = errno_error("cannot read", path);
            ::close(fd);
            return std::unexpected(e);
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
}

Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode) {
    std::filesystem::path target(path);
    std::filesystem::path dir =
        target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    std::string tmp =
        (dir / ("." + target.filename().string() + "." + crypto::random_token(6) + ".tmp"))
            .string();
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return std::unexpected(errno_error("cannot create", tmp));
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            Error e = errno_error("cannot write", tmp);
            ::close(fd);
            ::unlink(tmp.c_str());
            return std::unexpected(e);
        }
        off += static_cast<size_t>(n);
    }
    if (::fchmod(fd, mode) != 0 || ::fsync(fd) != 0) {
        Error e = errno_error("cannot sync", tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return std::unexpected(e);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        Error e = errno_error("cannot rename onto", path);
        ::unlink(tmp.c_str());
        return std::unexpected(e);
    }
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    return {};
}

Status make_dirs(const std::string& path, unsigned mode) {
    std::error_code ec;
    std::filesystem::path p(path);
    std::filesystem::path acc;
    for (const auto& part : p) {
        acc /= part;
        if (acc.empty() || std::filesystem::exists(acc, ec)) continue;
        if (::mkdir(acc.c_str(), mode) != 0 && errno != EEXIST)
            return std::unexpected(errno_error("cannot create directory", acc.string()));
    }
    if (!std::filesystem::is_directory(p, ec))
        return fail(ErrorCode::io, "not a directory: " + path);
    return {};
}

}  // namespace sa::util
