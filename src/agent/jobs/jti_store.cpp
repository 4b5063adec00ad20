#include "agent/jobs/jti_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "common/util/files.h"

namespace sa::agent::jobs {

namespace {

// Same bound as the verifier's claim limit: a jti is signed by the hub, but a
// bound keeps a compromised hub from growing the file without limit per job.
constexpr size_t kMaxJtiLength = 1024;

// Bounds memory: a lease lives 600 s, so even a very busy agent sees far
// fewer live jtis than this. Past it the entry closest to expiry is dropped
// first, as it is the one whose replay window closes soonest.
constexpr size_t kMaxRememberedJtis = 100'000;

// Compaction: rewrite when the file has more than this many lines AND more
// than twice the live entries, so the rewrite cost stays amortised.
constexpr size_t kCompactMinLines = 1000;

Error errno_error(const std::string& what, const std::string& path) {
    const int err = errno;
    return Error{err == EACCES || err == EPERM ? ErrorCode::permission_denied : ErrorCode::io,
                 what + " " + path + ": " + std::strerror(err)};
}

// A descriptor closed on scope exit unless released.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

Result<std::string> read_all(int fd, const std::string& path) {
    std::string out;
    char buf[65536];
    off_t offset = 0;
    for (;;) {
        const ssize_t n = ::pread(fd, buf, sizeof buf, offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::unexpected(errno_error("cannot read", path));
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
        offset += n;
    }
    return out;
}

void sync_directory_of(const std::string& path) {
    const std::filesystem::path p(path);
    const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

// "EXP JTI" -> (exp, jti); nullopt for anything else.
std::optional<std::pair<int64_t, std::string>> parse_line(std::string_view line) {
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space > 19) return std::nullopt;
    int64_t exp = 0;
    const char* begin = line.data();
    const auto [end, ec] = std::from_chars(begin, begin + space, exp);
    if (ec != std::errc() || end != begin + space || exp < 0) return std::nullopt;
    const std::string_view jti = line.substr(space + 1);
    if (!JtiStore::valid_jti(jti)) return std::nullopt;
    return std::pair{exp, std::string(jti)};
}

std::string format_line(const std::string& jti, int64_t exp) {
    return std::to_string(exp) + " " + jti + "\n";
}

}  // namespace

JtiStore::JtiStore(int64_t grace_seconds) : grace_seconds_(grace_seconds) {}

JtiStore::JtiStore(JtiStore&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      grace_seconds_(other.grace_seconds_),
      broken_(other.broken_),
      file_lines_(other.file_lines_),
      stats_(other.stats_),
      by_jti_(std::move(other.by_jti_)),
      by_exp_(std::move(other.by_exp_)) {
    other.path_.clear();
}

JtiStore& JtiStore::operator=(JtiStore&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        path_ = std::move(other.path_);
        other.path_.clear();
        fd_ = std::exchange(other.fd_, -1);
        grace_seconds_ = other.grace_seconds_;
        broken_ = other.broken_;
        file_lines_ = other.file_lines_;
        stats_ = other.stats_;
        by_jti_ = std::move(other.by_jti_);
        by_exp_ = std::move(other.by_exp_);
    }
    return *this;
}

JtiStore::~JtiStore() {
    if (fd_ >= 0) ::close(fd_);
}

bool JtiStore::valid_jti(std::string_view jti) {
    if (jti.empty() || jti.size() > kMaxJtiLength) return false;
    // Space and below are whitespace or control characters, 0x7f is DEL;
    // bytes from 0x80 (UTF-8) are allowed.
    for (const char c : jti) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return false;
    }
    return true;
}

Result<JtiStore> JtiStore::open(const std::string& path, int64_t now, int64_t grace_seconds) {
    if (path.empty()) return fail(ErrorCode::invalid_argument, "replay file path is empty");
    const std::filesystem::path p(path);
    if (p.has_parent_path()) {
        if (auto st = util::make_dirs(p.parent_path().string(), 0700); !st) {
            return std::unexpected(st.error());
        }
    }
    // O_NOFOLLOW: the file lives in the agent's state directory; a symlink
    // there is not ours.
    FdGuard fd{::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600)};
    if (fd.fd < 0) return std::unexpected(errno_error("cannot open replay file", path));
    struct stat st {};
    if (::fstat(fd.fd, &st) != 0) return std::unexpected(errno_error("cannot stat", path));
    if (!S_ISREG(st.st_mode)) {
        return fail(ErrorCode::io, "replay file " + path + " is not a regular file");
    }
    auto content = read_all(fd.fd, path);
    if (!content) return std::unexpected(content.error());

    JtiStore store(grace_seconds);
    store.path_ = path;

    const size_t complete =
        content->rfind('\n') == std::string::npos ? 0 : content->rfind('\n') + 1;
    if (complete < content->size()) {
        // A crash mid-append left a cut-short last line: drop it, so the
        // next append does not glue a good entry onto it.
        ++store.stats_.bad_lines;
        if (::ftruncate(fd.fd, static_cast<off_t>(complete)) != 0 || ::fsync(fd.fd) != 0) {
            return std::unexpected(errno_error("cannot repair replay file", path));
        }
    }
    std::string_view rest(content->data(), complete);
    while (!rest.empty()) {
        const size_t nl = rest.find('\n');
        const std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl + 1);
        ++store.file_lines_;
        auto entry = parse_line(line);
        if (!entry) {
            ++store.stats_.bad_lines;
        } else if (entry->first >= now - grace_seconds) {
            // EXP + grace >= now, written so a huge EXP cannot overflow.
            store.insert(entry->second, entry->first);
        } else {
            ++store.stats_.expired;
        }
    }
    store.stats_.loaded = store.by_jti_.size();
    // The file (or its truncation) must survive a crash before we rely on it.
    sync_directory_of(path);
    store.fd_ = fd.release();
    // Best effort: a failed rewrite leaves the old, valid file in place.
    (void)store.compact_if_needed();
    if (store.broken_) return fail(ErrorCode::io, "cannot reopen replay file " + path);
    return store;
}

void JtiStore::forget_expired(int64_t now) {
    while (!by_exp_.empty() && by_exp_.begin()->first < now - grace_seconds_) {
        by_jti_.erase(by_exp_.begin()->second);
        by_exp_.erase(by_exp_.begin());
    }
}

void JtiStore::insert(const std::string& jti, int64_t exp) {
    auto existing = by_jti_.find(jti);
    if (existing != by_jti_.end()) {
        if (existing->second >= exp) return;
        by_exp_.erase({existing->second, jti});
        by_jti_.erase(existing);
    }
    while (by_jti_.size() >= kMaxRememberedJtis && !by_exp_.empty()) {
        by_jti_.erase(by_exp_.begin()->second);
        by_exp_.erase(by_exp_.begin());
    }
    by_jti_.emplace(jti, exp);
    by_exp_.emplace(exp, jti);
}

Status JtiStore::remember(const std::string& jti, int64_t exp) {
    if (!valid_jti(jti)) {
        return fail(ErrorCode::invalid_argument,
                    "jti is empty, too long or contains whitespace or control characters");
    }
    if (exp < 0) return fail(ErrorCode::invalid_argument, "jti expiry is negative");
    if (persistent()) {
        if (broken_) return fail(ErrorCode::io, "replay file " + path_ + " is unusable");
        if (auto st = append_line(format_line(jti, exp)); !st) return st;
        ++file_lines_;
    }
    insert(jti, exp);
    if (persistent()) {
        // The entry is durable already; a failed rewrite keeps the old file.
        (void)compact_if_needed();
    }
    return {};
}

Status JtiStore::append_line(const std::string& line) {
    size_t off = 0;
    while (off < line.size()) {
        const ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            broken_ = true;
            return std::unexpected(errno_error("cannot append to replay file", path_));
        }
        off += static_cast<size_t>(n);
    }
    // fdatasync covers the data and the new file size, which is all an
    // append changes.
    if (::fdatasync(fd_) != 0) {
        broken_ = true;
        return std::unexpected(errno_error("cannot sync replay file", path_));
    }
    return {};
}

Status JtiStore::compact_if_needed() {
    if (!persistent() || broken_) return {};
    if (file_lines_ <= kCompactMinLines || file_lines_ <= 2 * by_jti_.size()) return {};
    std::string content;
    for (const auto& [exp, jti] : by_exp_) content += format_line(jti, exp);
    if (auto st = util::write_file_atomic(path_, content, 0600); !st) return st;
    // The old descriptor points at the replaced file: appends must go to the
    // new one.
    const int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        broken_ = true;
        return std::unexpected(errno_error("cannot reopen replay file", path_));
    }
    ::close(fd_);
    fd_ = fd;
    file_lines_ = by_jti_.size();
    return {};
}

}  // namespace sa::agent::jobs
