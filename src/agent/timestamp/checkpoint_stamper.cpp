#include "agent/timestamp/checkpoint_stamper.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"
#include "common/util/files.h"
#include "common/util/time.h"

namespace sa::agent::timestamp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr size_t kScanBlock = 64 * 1024;
// A token line is a few KiB (a reply is at most 64 KiB); a checkpoint line
// a few hundred bytes. Anything longer at the end of a file is not ours.
constexpr uint64_t kMaxLineScan = 1024 * 1024;
constexpr int64_t kNotFound = -1;   // no '\n' up to the start of the file
constexpr int64_t kScanLimit = -2;  // none within the scan limit

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

  private:
    int fd_;
};

Error io_error(const std::string& what, const std::string& path) {
    return Error{ErrorCode::io, what + " " + path + ": " + std::strerror(errno)};
}

Result<std::string> pread_all(int fd, uint64_t offset, size_t n, const std::string& path) {
    std::string out(n, '\0');
    size_t done = 0;
    while (done < n) {
        ssize_t r = ::pread(fd, out.data() + done, n - done, static_cast<off_t>(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return std::unexpected(io_error("cannot read", path));
        if (r == 0) return fail(ErrorCode::io, "file shrank while reading " + path);
        done += static_cast<size_t>(r);
    }
    return out;
}

// Offset of the last '\n' in [0, end) of fd, scanning back at most max_scan
// bytes: kNotFound when there is none, kScanLimit when the limit was hit.
Result<int64_t> rfind_newline(int fd, uint64_t end, uint64_t max_scan, const std::string& path) {
    uint64_t pos = end;
    while (pos > 0) {
        if (end - pos >= max_scan) return kScanLimit;
        size_t n = static_cast<size_t>(std::min<uint64_t>(pos, kScanBlock));
        auto block = pread_all(fd, pos - n, n, path);
        if (!block) return std::unexpected(block.error());
        if (auto at = block->rfind('\n'); at != std::string::npos)
            return static_cast<int64_t>(pos - n + at);
        pos -= n;
    }
    return kNotFound;
}

// The last complete line of fd (without "\n") that ends at or before `size`;
// nullopt when there is none (or it is absurdly long).
Result<std::optional<std::string>> last_complete_line(int fd, uint64_t size,
                                                      const std::string& path) {
    auto nl = rfind_newline(fd, size, UINT64_MAX, path);
    if (!nl) return std::unexpected(nl.error());
    if (*nl < 0) return std::optional<std::string>();
    auto line_end = static_cast<uint64_t>(*nl);
    auto before = rfind_newline(fd, line_end, kMaxLineScan, path);
    if (!before) return std::unexpected(before.error());
    if (*before == kScanLimit) return std::optional<std::string>();
    uint64_t start = *before == kNotFound ? 0 : static_cast<uint64_t>(*before) + 1;
    auto line = pread_all(fd, start, static_cast<size_t>(line_end - start), path);
    if (!line) return std::unexpected(line.error());
    return std::optional<std::string>(std::move(*line));
}

Status sync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return std::unexpected(io_error("cannot open directory", dir));
    Fd guard(fd);
    if (::fsync(fd) != 0) return std::unexpected(io_error("cannot fsync directory", dir));
    return {};
}

// The log's newest checkpoint line, when it is complete and canonical (a torn
// or odd last line is the audit log's business, not something to stamp).
Result<std::optional<std::string>> newest_checkpoint_line(const std::string& dir) {
    std::string path = (fs::path(dir) / audit::kCheckpointsFile).string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::optional<std::string>();
        return std::unexpected(io_error("cannot open", path));
    }
    Fd guard(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::unexpected(io_error("cannot stat", path));
    auto line = last_complete_line(fd, static_cast<uint64_t>(st.st_size), path);
    if (!line || !*line) return line;
    auto cp = audit::parse_checkpoint_line(**line);
    if (!cp) return std::optional<std::string>();
    auto canonical = audit::canonical_dump(audit::to_json(*cp));
    if (!canonical || *canonical != **line) return std::optional<std::string>();
    return line;
}

}  // namespace

Result<CheckpointStamper::Opened> CheckpointStamper::open(Timestamper& timestamper,
                                                          const std::string& audit_dir,
                                                          Options options) {
    if (auto st = util::make_dirs(audit_dir, 0700); !st) return std::unexpected(st.error());
    Opened opened;
    std::string path = (fs::path(audit_dir) / kTimestampsFile).string();
    std::error_code ec;
    bool existed = fs::exists(path, ec);
    int raw = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (raw < 0) return std::unexpected(io_error("cannot open", path));
    Fd fd(raw);
    if (!existed) {
        if (auto st = sync_dir(audit_dir); !st) return std::unexpected(st.error());
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return std::unexpected(io_error("cannot stat", path));
    auto size = static_cast<uint64_t>(st.st_size);

    // A crash mid-append leaves a last line without its newline: cut it off,
    // so the next line starts on a line of its own.
    if (size > 0) {
        auto last = pread_all(fd.get(), size - 1, 1, path);
        if (!last) return std::unexpected(last.error());
        if ((*last)[0] != '\n') {
            auto nl = rfind_newline(fd.get(), size, UINT64_MAX, path);
            if (!nl) return std::unexpected(nl.error());
            uint64_t keep = *nl < 0 ? 0 : static_cast<uint64_t>(*nl) + 1;
            if (::ftruncate(fd.get(), static_cast<off_t>(keep)) != 0 ||
                ::fdatasync(fd.get()) != 0) {
                return std::unexpected(io_error("cannot cut the torn tail off", path));
            }
            opened.warnings.push_back(std::string(kTimestampsFile) +
                                      ": cut off a torn last line (" + std::to_string(size - keep) +
                                      " bytes) left by an interrupted write");
            size = keep;
        }
    }

    uint64_t last_stamped = 0;
    auto last_line = last_complete_line(fd.get(), size, path);
    if (!last_line) return std::unexpected(last_line.error());
    if (*last_line) {
        json j = json::parse(**last_line, nullptr, /*allow_exceptions=*/false);
        auto it = j.is_object() ? j.find("tree_size") : j.end();
        if (it != j.end() && it->is_number_unsigned()) {
            last_stamped = it->get<uint64_t>();
        } else {
            opened.warnings.push_back(std::string(kTimestampsFile) +
                                      ": the last line does not parse (`audit verify` names it); "
                                      "appending after it");
        }
    }

    auto newest = newest_checkpoint_line(audit_dir);
    if (!newest) return std::unexpected(newest.error());

    std::unique_ptr<CheckpointStamper> stamper(new CheckpointStamper(
        timestamper, audit_dir, std::move(options), fd.release(), size, last_stamped));
    if (*newest) {
        // Stamped at the next start when the last run stopped before it could.
        auto cp = audit::parse_checkpoint_line(**newest);
        if (cp && cp->tree_size > last_stamped) {
            std::lock_guard lock(stamper->mutex_);
            stamper->pending_ = Pending{cp->tree_size, std::move(**newest)};
        }
    }
    stamper->thread_ = std::thread([s = stamper.get()] { s->run(); });
    opened.stamper = std::move(stamper);
    return opened;
}

CheckpointStamper::CheckpointStamper(Timestamper& timestamper, std::string dir, Options options,
                                     int fd, uint64_t file_size, uint64_t last_stamped)
    : timestamper_(timestamper),
      dir_(std::move(dir)),
      options_(std::move(options)),
      fd_(fd),
      file_size_(file_size) {
    stats_.last_stamped_tree_size = last_stamped;
    std::string seed = crypto::random_bytes(8);
    uint64_t s = 0;
    std::memcpy(&s, seed.data(), sizeof s);
    rng_.seed(s);
}

CheckpointStamper::~CheckpointStamper() {
    close(std::chrono::milliseconds(0));
}

void CheckpointStamper::submit(const audit::Checkpoint& cp) {
    auto line = audit::canonical_dump(audit::to_json(cp));
    std::lock_guard lock(mutex_);
    if (closing_) return;
    if (!line) {
        // Cannot happen for a checkpoint the log wrote; count it, do not throw
        // on the audit writer thread.
        ++stats_.failures;
        stats_.last_error = "cannot serialize checkpoint: " + line.error().message;
        return;
    }
    if (cp.tree_size <= stats_.last_stamped_tree_size) return;
    if (in_flight_ && cp.tree_size <= *in_flight_) return;
    if (pending_) {
        if (cp.tree_size <= pending_->tree_size) return;
        ++stats_.coalesced;
    }
    pending_ = Pending{cp.tree_size, std::move(*line)};
    changed_.notify_all();
}

void CheckpointStamper::close(std::chrono::milliseconds grace) {
    std::lock_guard close_lock(close_mutex_);
    {
        std::lock_guard lock(mutex_);
        if (!closing_) {
            closing_ = true;
            deadline_ = SteadyClock::now() + grace;
            // Pending work gets one more try now, whatever the backoff said.
            next_attempt_ = SteadyClock::now();
        }
        changed_.notify_all();
    }
    if (thread_.joinable()) {
        {
            std::unique_lock lock(mutex_);
            changed_.wait_until(lock, deadline_, [&] { return finished_; });
            if (!finished_ && options_.abort != nullptr) options_.abort->store(true);
        }
        thread_.join();
    }
    if (fd_ >= 0) {
        ::close(fd_);
        fd_ = -1;
    }
}

CheckpointStamper::Stats CheckpointStamper::stats() const {
    std::lock_guard lock(mutex_);
    Stats out = stats_;
    out.pending = pending_.has_value() || in_flight_.has_value();
    return out;
}

bool CheckpointStamper::wait_for(const std::function<bool(const Stats&)>& pred,
                                 std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
        Stats s = stats_;
        s.pending = pending_.has_value() || in_flight_.has_value();
        return pred(s);
    });
}

void CheckpointStamper::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        // Wait for work that is due, or for the end.
        for (;;) {
            auto now = SteadyClock::now();
            if (closing_ && (!pending_ || now >= deadline_)) {
                finished_ = true;
                changed_.notify_all();
                return;
            }
            if (pending_ && now >= next_attempt_) break;
            if (closing_) {
                changed_.wait_until(lock, std::min(next_attempt_, deadline_));
            } else if (pending_) {
                changed_.wait_until(lock, next_attempt_);
            } else {
                changed_.wait(lock);
            }
        }
        Pending work = std::move(*pending_);
        pending_.reset();
        in_flight_ = work.tree_size;
        changed_.notify_all();

        lock.unlock();
        Status result = stamp(work);
        lock.lock();

        in_flight_.reset();
        bool report_failure = false;
        bool report_recovery = false;
        std::string message;
        if (result) {
            ++stats_.stamped;
            stats_.last_stamped_tree_size = std::max(stats_.last_stamped_tree_size, work.tree_size);
            report_recovery = stats_.failing;
            stats_.failing = false;
            failure_streak_ = 0;
        } else {
            ++stats_.failures;
            message = "cannot time-stamp audit checkpoint " + std::to_string(work.tree_size) +
                      ": " + result.error().describe();
            stats_.last_error = message;
            report_failure = !stats_.failing;
            stats_.failing = true;
            if (pending_) {
                ++stats_.coalesced;  // a newer checkpoint arrived meanwhile: it covers this one
            } else {
                pending_ = std::move(work);
            }
            next_attempt_ = SteadyClock::now() + next_backoff();
        }
        changed_.notify_all();
        if (report_failure && options_.on_failure) {
            lock.unlock();
            options_.on_failure(message);
            lock.lock();
        }
        if (report_recovery && options_.on_recovered) {
            lock.unlock();
            options_.on_recovered();
            lock.lock();
        }
    }
}

Status CheckpointStamper::stamp(const Pending& work) {
    std::string digest = crypto::sha256(work.line);
    auto token = timestamper_.timestamp(digest);
    if (!token) return std::unexpected(token.error());
    // The Timestamper checked the reply; check again what is about to be
    // stored, so that no implementation can store a token for another hash.
    auto claims = read_token_claims(token->der);
    if (!claims) return fail(ErrorCode::integrity, "token not stored: " + claims.error().message);
    if (!crypto::equal_constant_time(claims->imprint, digest))
        return fail(ErrorCode::integrity, "token not stored: it time-stamps another hash");
    json j{{"tree_size", work.tree_size},
           {"checkpoint_sha256", crypto::base64_encode(digest)},
           {"token", crypto::base64_encode(token->der)},
           {"gen_time", util::rfc3339_millis(claims->gen_time_unix * 1000)},
           {"tsa", options_.tsa_url}};
    auto line = audit::canonical_dump(j);
    if (!line) return std::unexpected(line.error());
    return append_line(*line + "\n");
}

Status CheckpointStamper::append_line(const std::string& line) {
    std::string path = (fs::path(dir_) / kTimestampsFile).string();
    if (cut_needed_) {
        if (::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0)
            return std::unexpected(io_error("cannot cut a failed write off", path));
        cut_needed_ = false;
    }
    size_t done = 0;
    while (done < line.size()) {
        ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            Error err = io_error("cannot write", path);
            // Leave no half line behind: the next one must start cleanly.
            cut_needed_ = ::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0;
            return std::unexpected(err);
        }
        done += static_cast<size_t>(n);
    }
    if (::fdatasync(fd_) != 0) {
        Error err = io_error("cannot fdatasync", path);
        cut_needed_ = ::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0;
        return std::unexpected(err);
    }
    file_size_ += line.size();
    return {};
}

std::chrono::milliseconds CheckpointStamper::next_backoff() {
    ++failure_streak_;
    int64_t lo = std::max<int64_t>(1, options_.retry_min.count());
    int64_t hi = std::max<int64_t>(lo, options_.retry_max.count());
    uint32_t shift = std::min<uint32_t>(failure_streak_ - 1, 30);
    int64_t base = lo > (hi >> shift) ? hi : std::min<int64_t>(hi, lo << shift);
    // Full jitter over the upper half: agents that lost the TSA together do
    // not all come back at the same instant.
    std::uniform_int_distribution<int64_t> pick(base / 2, base);
    return std::chrono::milliseconds(std::max<int64_t>(1, pick(rng_)));
}

}  // namespace sa::agent::timestamp
