#include "agent/secrets/file_secret_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sa::agent::secrets {
namespace {

// Owns a file descriptor.
class Fd final {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

Status check_relative_path(std::string_view path) {
    if (path.empty() || path.front() == '/') {
        return fail(ErrorCode::invalid_argument, "path must be relative to the store directory");
    }
    if (path.find('\0') != std::string_view::npos) {
        return fail(ErrorCode::invalid_argument, "path contains a NUL byte");
    }
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        std::string_view part = path.substr(start, end - start);
        if (part == "..") {
            return fail(ErrorCode::invalid_argument, "path must not contain '..' components");
        }
        start = end + 1;
    }
    return {};
}

ErrorCode errno_code(int err) {
    if (err == ENOENT || err == ENOTDIR) return ErrorCode::not_found;
    if (err == EACCES || err == EPERM) return ErrorCode::permission_denied;
    return ErrorCode::io;
}

}  // namespace

FileSecretStore::FileSecretStore(std::string name, std::string dir)
    : name_(std::move(name)), dir_(std::move(dir)) {}

Result<SecretValue> FileSecretStore::read(const SecretRef& ref) {
    const std::string where = "secret store \"" + name_ + "\" path \"" + ref.path + "\"";
    if (auto ok = check_relative_path(ref.path); !ok) {
        return fail(ErrorCode::invalid_argument, where + ": " + ok.error().message);
    }

    char dir_real[PATH_MAX];
    if (::realpath(dir_.c_str(), dir_real) == nullptr) {
        const int err = errno;
        return fail(errno_code(err), "secret store \"" + name_ + "\": cannot open directory " +
                                         dir_ + ": " + std::strerror(err));
    }
    const std::string joined = dir_ + "/" + ref.path;

    // The kubelet may swap ..data between realpath() and open(), removing the
    // directory we resolved to; one retry then sees the new target.
    for (int attempt = 0;; ++attempt) {
        char file_real[PATH_MAX];
        if (::realpath(joined.c_str(), file_real) == nullptr) {
            const int err = errno;
            if (err == ENOENT) return fail(ErrorCode::not_found, where + ": no such secret");
            return fail(errno_code(err), where + ": " + std::strerror(err));
        }
        const std::string_view root(dir_real);
        const std::string_view file(file_real);
        const bool inside = file.size() > root.size() && file.substr(0, root.size()) == root &&
                            (root == "/" || file[root.size()] == '/');
        if (!inside) {
            return fail(ErrorCode::permission_denied,
                        where + ": resolves outside the store directory");
        }

        Fd fd(::open(file_real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (fd.get() < 0) {
            const int err = errno;
            if (err == ENOENT && attempt == 0) continue;
            if (err == ENOENT) return fail(ErrorCode::not_found, where + ": no such secret");
            if (err == ELOOP) return fail(ErrorCode::permission_denied, where + ": is a symlink");
            return fail(errno_code(err), where + ": " + std::strerror(err));
        }
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            return fail(ErrorCode::io, where + ": " + std::strerror(errno));
        }
        if (!S_ISREG(st.st_mode)) {
            return fail(ErrorCode::invalid_argument, where + ": not a regular file");
        }
        if (static_cast<size_t>(st.st_size) > kMaxSecretBytes) {
            return fail(ErrorCode::invalid_argument, where + ": larger than 1 MiB");
        }

        // Reserve once so the buffer is never reallocated (which would leave
        // an unwiped copy behind); the file may still change under us, so
        // reading stops at the reserved capacity.
        std::string content;
        content.reserve(static_cast<size_t>(st.st_size) + 1);
        const size_t limit = content.capacity();
        content.resize(limit);
        size_t used = 0;
        while (used < limit) {
            const ssize_t n = ::read(fd.get(), content.data() + used, limit - used);
            if (n < 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                wipe(content);
                return fail(errno_code(err), where + ": " + std::strerror(err));
            }
            if (n == 0) break;
            used += static_cast<size_t>(n);
        }
        if (used == limit && used > static_cast<size_t>(st.st_size)) {
            wipe(content);
            return fail(ErrorCode::io, where + ": changed while being read");
        }
        content.resize(used);
        if (!content.empty() && content.back() == '\n') content.pop_back();

        return select_secret(std::move(content), ref, where);
    }
}

}  // namespace sa::agent::secrets
