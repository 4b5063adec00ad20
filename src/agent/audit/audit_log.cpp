#include "agent/audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/audit/field_hasher.h"
#include "agent/audit/format.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"
#include "common/util/files.h"
#include "common/util/time.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

std::string errno_text() {
    return std::strerror(errno);
}

// Owning file descriptor.
class Fd final {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_ = -1;
};

Status sync_dir(const std::string& dir) {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0)
        return fail(ErrorCode::io, "cannot sync directory " + dir + ": " + errno_text());
    return {};
}

Result<Fd> open_append(const std::string& path) {
    Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return fail(ErrorCode::io, "cannot open " + path + ": " + errno_text());
    return fd;
}

// Writes all of data; errors name the file. A short write (file size limit,
// disk full) is an error like any other.
Status write_all(int fd, std::string_view data, const std::string& name) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(ErrorCode::io, "cannot write " + name + ": " + errno_text());
        }
        if (n == 0) return fail(ErrorCode::io, "cannot write " + name + ": no progress");
        off += static_cast<size_t>(n);
    }
    return {};
}

Status truncate_file(const std::string& path, uint64_t size) {
    if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0)
        return fail(ErrorCode::io, "cannot truncate " + path + ": " + errno_text());
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0)
        return fail(ErrorCode::io, "cannot sync " + path + ": " + errno_text());
    return {};
}

// One writer per directory: a second agent (or a second open in this process)
// appending to the same segments would fork the hash chain.
Result<Fd> lock_dir(const std::string& dir) {
    const std::string path = (fs::path(dir) / ".lock").string();
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return fail(ErrorCode::io, "cannot open " + path + ": " + errno_text());
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return fail(ErrorCode::conflict,
                        "audit directory " + dir + " is in use by another writer");
        return fail(ErrorCode::io, "cannot lock " + path + ": " + errno_text());
    }
    return fd;
}

struct Pending {
    std::string line;  // with trailing newline
    merkle::Hash leaf;
    uint64_t seq;
};

// State recovered from disk at open.
struct Recovered {
    uint64_t next_seq = 0;
    merkle::Hash prev;  // leaf hash of the last record ("" when none)
    merkle::CompactTree tree;
    uint64_t segment_number = 1;
    uint64_t segment_size = 0;
    uint64_t checkpoint_size = 0;
    std::string checkpoint_root;  // base64, of the last checkpoint
    std::vector<std::string> warnings;
    std::vector<json> recovered_events;  // fields of audit.recovered records to write
};

// Reads every segment, checks the chain and cuts off a torn tail in the last
// one. Only the final line of the last segment may be damaged.
Status recover_segments(const std::string& dir, Recovered& r) {
    auto segments = list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    std::string line;
    for (size_t i = 0; i < segments->size(); ++i) {
        const std::string& name = (*segments)[i];
        const std::string path = (fs::path(dir) / name).string();
        const bool last = i + 1 == segments->size();
        auto reader = LineReader::open(path);
        if (!reader) return std::unexpected(reader.error());
        uint64_t good_end = 0;
        uint64_t line_no = 0;
        bool complete = true;
        std::optional<std::string> problem;
        while (reader->next(line, complete)) {
            ++line_no;
            if (!complete) {
                problem = "incomplete last line";
                break;
            }
            auto rec = parse_record_line(line);
            if (!rec)
                problem = rec.error().message;
            else if (rec->seq != r.next_seq)
                problem = "seq " + std::to_string(rec->seq) + " where " +
                          std::to_string(r.next_seq) + " was expected";
            else if (rec->prev != crypto::base64_encode(r.prev))
                problem = "prev does not match the previous record";
            if (problem) {
                std::string more;
                bool more_complete = true;
                // A record a checkpoint signed was durable: damage there is
                // tampering, never a torn write, so it is left for verify.
                if (reader->next(more, more_complete) || !last || r.next_seq < r.checkpoint_size)
                    return fail(ErrorCode::integrity,
                                "audit log damaged at " + name + ":" + std::to_string(line_no) +
                                    " (" + *problem +
                                    "); run `secure-agent audit verify` and investigate");
                break;
            }
            r.prev = merkle::leaf_hash(line);
            r.tree.append(r.prev);
            ++r.next_seq;
            if (r.tree.size() == r.checkpoint_size &&
                crypto::base64_encode(r.tree.root()) != r.checkpoint_root)
                return fail(ErrorCode::integrity,
                            "audit records up to " + name + ":" + std::to_string(line_no) +
                                " no longer match the last checkpoint; run `secure-agent audit "
                                "verify` and investigate");
            good_end = reader->offset();
        }
        if (problem && !last)
            return fail(ErrorCode::integrity, "audit log damaged at " + name + ":" +
                                                  std::to_string(line_no) + " (" + *problem + ")");
        if (last) {
            r.segment_number = *parse_segment_name(name);
            r.segment_size = good_end;
        }
        if (problem) {
            struct stat sb {};
            uint64_t size =
                ::stat(path.c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_size) : good_end;
            if (auto st = truncate_file(path, good_end); !st) return st;
            uint64_t dropped = size - good_end;
            r.warnings.push_back("audit: dropped " + std::to_string(dropped) +
                                 " bytes of a torn record at " + name + ":" +
                                 std::to_string(line_no) + " (" + *problem + ")");
            r.recovered_events.push_back(json{{"file", name},
                                              {"line", line_no},
                                              {"dropped_bytes", dropped},
                                              {"reason", *problem}});
        }
    }
    return {};
}

// Cuts off a torn last checkpoint line; returns the last checkpoint's size.
Status recover_checkpoints(const std::string& dir, Recovered& r) {
    const std::string path = (fs::path(dir) / kCheckpointsFile).string();
    auto reader = LineReader::open(path);
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return {};
        return std::unexpected(reader.error());
    }
    std::string line;
    bool complete = true;
    uint64_t line_no = 0;
    uint64_t good_end = 0;
    while (reader->next(line, complete)) {
        ++line_no;
        auto cp = parse_checkpoint_line(line);
        std::string more;
        bool more_complete = true;
        if (!complete || !cp) {
            if (reader->next(more, more_complete))
                return fail(ErrorCode::integrity,
                            std::string("audit checkpoints damaged at ") + kCheckpointsFile + ":" +
                                std::to_string(line_no) +
                                "; run `secure-agent audit verify` and investigate");
            uint64_t size = reader->offset();
            if (auto st = truncate_file(path, good_end); !st) return st;
            std::string why = complete ? cp.error().message : "incomplete last line";
            r.warnings.push_back("audit: dropped " + std::to_string(size - good_end) +
                                 " bytes of a torn checkpoint at " + kCheckpointsFile + ":" +
                                 std::to_string(line_no) + " (" + why + ")");
            r.recovered_events.push_back(json{{"file", kCheckpointsFile},
                                              {"line", line_no},
                                              {"dropped_bytes", size - good_end},
                                              {"reason", why}});
            break;
        }
        r.checkpoint_size = cp->tree_size;
        r.checkpoint_root = cp->root;
        good_end = reader->offset();
    }
    return {};
}

Status check_covered(const Recovered& r) {
    if (r.checkpoint_size > r.tree.size())
        return fail(ErrorCode::integrity,
                    "the last audit checkpoint covers " + std::to_string(r.checkpoint_size) +
                        " records but the log holds " + std::to_string(r.tree.size()) +
                        "; run `secure-agent audit verify` and investigate");
    return {};
}

}  // namespace

int64_t SystemClock::now_millis() const {
    return util::unix_millis();
}

struct AuditLog::Impl {
    Impl(std::string d, Options o, const identity::AgentKey& k, const Clock& c, FieldHasher h)
        : dir(std::move(d)), options(std::move(o)), key(k), clock(c), hasher(std::move(h)) {}

    const std::string dir;
    const Options options;
    const identity::AgentKey& key;
    const Clock& clock;
    const FieldHasher hasher;
    const std::string default_actor = "agent:" + options.agent_id;
    Fd dir_lock;  // held for the lifetime of the log

    mutable std::mutex mu;
    std::condition_variable work_cv;     // writer waits for records / stop
    std::condition_variable durable_cv;  // appenders wait for durability
    // Guarded by mu.
    uint64_t next_seq = 0;
    merkle::Hash prev;
    std::vector<Pending> queue;
    uint64_t durable = 0;
    bool failed = false;
    std::string failure_reason;
    bool stopping = false;
    bool closed = false;

    // Owned by the writer thread (and by open() before it starts).
    Fd segment;
    uint64_t segment_number = 1;
    uint64_t segment_size = 0;
    Fd checkpoints;
    merkle::CompactTree tree;
    uint64_t checkpoint_size = 0;
    SteadyClock::time_point checkpoint_time = SteadyClock::now();

    std::thread writer;

    std::string segment_path(uint64_t n) const {
        return (fs::path(dir) / segment_name(n)).string();
    }

    void fail_closed(const std::string& reason) {
        {
            std::lock_guard lk(mu);
            if (failed) return;
            failed = true;
            failure_reason = reason;
            queue.clear();
        }
        durable_cv.notify_all();
        if (options.on_failure) options.on_failure(reason);
    }

    Status open_segment(uint64_t n, bool fresh) {
        auto fd = open_append(segment_path(n));
        if (!fd) return std::unexpected(fd.error());
        segment = std::move(*fd);
        segment_number = n;
        if (fresh) {
            segment_size = 0;
            if (auto st = sync_dir(dir); !st) return st;
        }
        return {};
    }

    // Writes buffered lines to the current segment and syncs it; on error cuts
    // the file back to where it was so nothing half-written remains.
    Status write_and_sync(const std::string& buf) {
        if (buf.empty()) return {};
        const std::string name = segment_name(segment_number);
        Status st = write_all(segment.get(), buf, name);
        if (st && ::fdatasync(segment.get()) != 0)
            st = fail(ErrorCode::io, "cannot sync " + name + ": " + errno_text());
        if (!st) {
            // Best effort: the log is failed from here on either way, and
            // open() would cut a torn tail that this could not remove.
            if (::ftruncate(segment.get(), static_cast<off_t>(segment_size)) != 0)
                st.error().message += " (and the partial batch could not be cut off)";
            return st;
        }
        segment_size += buf.size();
        return {};
    }

    Status commit(const std::vector<Pending>& batch) {
        std::string buf;
        for (const auto& p : batch) {
            if (segment_size + buf.size() > 0 &&
                segment_size + buf.size() + p.line.size() > options.segment_max_bytes) {
                if (auto st = write_and_sync(buf); !st) return st;
                buf.clear();
                if (auto st = open_segment(segment_number + 1, true); !st) return st;
            }
            buf += p.line;
        }
        if (auto st = write_and_sync(buf); !st) return st;
        for (const auto& p : batch) tree.append(p.leaf);
        {
            std::lock_guard lk(mu);
            durable = batch.back().seq + 1;
        }
        durable_cv.notify_all();
        return {};
    }

    Status write_checkpoint() {
        Checkpoint cp;
        cp.agent_id = options.agent_id;
        cp.tree_size = tree.size();
        cp.root = crypto::base64_encode(tree.root());
        cp.ts = util::rfc3339_millis(clock.now_millis());
        cp.key_id = key.key_id();
        cp.signature = crypto::base64_encode(
            key.sign(checkpoint_note(cp.agent_id, cp.tree_size, cp.root, cp.ts)));
        std::string line = to_json(cp).dump() + "\n";
        struct stat sb {};
        off_t before = ::fstat(checkpoints.get(), &sb) == 0 ? sb.st_size : 0;
        Status st = write_all(checkpoints.get(), line, kCheckpointsFile);
        if (st && ::fsync(checkpoints.get()) != 0)
            st = fail(ErrorCode::io,
                      std::string("cannot sync ") + kCheckpointsFile + ": " + errno_text());
        if (!st) {
            if (::ftruncate(checkpoints.get(), before) != 0)
                st.error().message += " (and the partial checkpoint could not be cut off)";
            return st;
        }
        checkpoint_size = cp.tree_size;
        checkpoint_time = SteadyClock::now();
        if (options.on_checkpoint) options.on_checkpoint(cp);
        return {};
    }

    bool checkpoint_due() const {
        if (tree.size() <= checkpoint_size) return false;
        return tree.size() - checkpoint_size >= options.checkpoint_every_records ||
               SteadyClock::now() >= checkpoint_deadline();
    }
    SteadyClock::time_point checkpoint_deadline() const {
        return checkpoint_time + std::chrono::milliseconds(options.checkpoint_interval_ms);
    }

    void run_writer() {
        std::vector<Pending> batch;
        std::unique_lock lk(mu);
        for (;;) {
            if (tree.size() > checkpoint_size)
                work_cv.wait_until(lk, checkpoint_deadline(),
                                   [&] { return stopping || failed || !queue.empty(); });
            else
                work_cv.wait(lk, [&] { return stopping || failed || !queue.empty(); });
            if (failed) return;
            if (!queue.empty()) {
                batch.swap(queue);
                lk.unlock();
                Status st = commit(batch);
                batch.clear();
                if (st && checkpoint_due()) st = write_checkpoint();
                if (!st) {
                    fail_closed(st.error().message);
                    return;
                }
                lk.lock();
                // Group commit: at most one fdatasync per batch interval.
                work_cv.wait_for(lk, std::chrono::milliseconds(options.batch_interval_ms),
                                 [&] { return stopping || failed; });
                continue;
            }
            if (stopping) break;
            lk.unlock();
            if (checkpoint_due()) {
                if (auto st = write_checkpoint(); !st) {
                    fail_closed(st.error().message);
                    return;
                }
            }
            lk.lock();
        }
        lk.unlock();
        if (tree.size() > checkpoint_size) {
            if (auto st = write_checkpoint(); !st) fail_closed(st.error().message);
        }
    }

    Result<uint64_t> enqueue(std::string_view type, json fields, const AppendContext& ctx) {
        if (type.empty()) return fail(ErrorCode::invalid_argument, "audit record type is empty");
        if (fields.is_null()) fields = json::object();
        if (!fields.is_object())
            return fail(ErrorCode::invalid_argument, "audit record fields must be a JSON object");
        if (auto st = check_no_floats(fields, "/fields"); !st) return std::unexpected(st.error());
        json rec{{"type", type},
                 {"actor", ctx.actor.empty() ? default_actor : ctx.actor},
                 {"agent_id", options.agent_id},
                 {"fields", std::move(fields)},
                 {"ts", util::rfc3339_millis(clock.now_millis())}};
        if (!ctx.job_id.empty()) rec["job_id"] = ctx.job_id;
        if (!ctx.trace_id.empty()) rec["trace_id"] = ctx.trace_id;
        std::unique_lock lk(mu);
        if (failed) return fail(ErrorCode::io, "audit log failed: " + failure_reason);
        if (closed || stopping) return fail(ErrorCode::conflict, "audit log is closed");
        rec["seq"] = next_seq;
        rec["prev"] = crypto::base64_encode(prev);
        std::string line;
        try {
            line = rec.dump();
        } catch (const json::exception& e) {
            return fail(ErrorCode::invalid_argument,
                        std::string("audit record is not valid UTF-8: ") + e.what());
        }
        merkle::Hash leaf = merkle::leaf_hash(line);
        line += '\n';
        uint64_t seq = next_seq++;
        prev = leaf;
        queue.push_back(Pending{std::move(line), std::move(leaf), seq});
        lk.unlock();
        work_cv.notify_one();
        return seq;
    }

    Status wait_durable(uint64_t count) {
        std::unique_lock lk(mu);
        durable_cv.wait(lk, [&] { return durable >= count || failed; });
        if (durable >= count) return {};
        return fail(ErrorCode::io, "audit log failed: " + failure_reason);
    }
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AuditLog::~AuditLog() {
    (void)close();
}

Result<AuditLog::Opened> AuditLog::open(const std::string& dir, Options options,
                                        const identity::AgentKey& key, const Clock* clock) {
    static const SystemClock system_clock;
    if (options.agent_id.empty())
        return fail(ErrorCode::invalid_argument, "audit log needs an agent_id");
    if (options.segment_max_bytes == 0 || options.checkpoint_every_records == 0)
        return fail(ErrorCode::invalid_argument,
                    "segment_max_bytes and checkpoint_every_records must be positive");
    if (auto st = util::make_dirs(dir, 0700); !st) return std::unexpected(st.error());
    auto dir_lock = lock_dir(dir);
    if (!dir_lock) return std::unexpected(dir_lock.error());
    auto hasher = FieldHasher::load_or_create(dir);
    if (!hasher) return std::unexpected(hasher.error());

    Recovered r;
    // Checkpoints first: a record they cover is never cut off as a torn tail.
    if (auto st = recover_checkpoints(dir, r); !st) return std::unexpected(st.error());
    if (auto st = recover_segments(dir, r); !st) return std::unexpected(st.error());
    if (auto st = check_covered(r); !st) return std::unexpected(st.error());

    auto impl = std::make_unique<Impl>(dir, std::move(options), key,
                                       clock ? *clock : static_cast<const Clock&>(system_clock),
                                       std::move(*hasher));
    impl->dir_lock = std::move(*dir_lock);
    impl->next_seq = r.next_seq;
    impl->durable = r.next_seq;
    impl->prev = r.prev;
    impl->tree = r.tree;
    impl->checkpoint_size = r.checkpoint_size;
    bool fresh = !fs::exists(impl->segment_path(r.segment_number));
    if (auto st = impl->open_segment(r.segment_number, fresh); !st)
        return std::unexpected(st.error());
    impl->segment_size = r.segment_size;
    auto cps = open_append((fs::path(dir) / kCheckpointsFile).string());
    if (!cps) return std::unexpected(cps.error());
    impl->checkpoints = std::move(*cps);

    Impl* raw = impl.get();
    raw->writer = std::thread([raw] { raw->run_writer(); });
    Opened opened{std::unique_ptr<AuditLog>(new AuditLog(std::move(impl))), std::move(r.warnings)};
    for (auto& event : r.recovered_events) {
        auto seq = opened.log->append_durable("audit.recovered", std::move(event));
        if (!seq) return std::unexpected(seq.error());
    }
    return opened;
}

Result<uint64_t> AuditLog::append(std::string_view type, json fields,
                                  const AppendContext& context) {
    return impl_->enqueue(type, std::move(fields), context);
}

Result<uint64_t> AuditLog::append_durable(std::string_view type, json fields,
                                          const AppendContext& context) {
    auto seq = impl_->enqueue(type, std::move(fields), context);
    if (!seq) return seq;
    if (auto st = impl_->wait_durable(*seq + 1); !st) return std::unexpected(st.error());
    return seq;
}

Status AuditLog::flush() {
    uint64_t target;
    {
        std::lock_guard lk(impl_->mu);
        target = impl_->next_seq;
    }
    return impl_->wait_durable(target);
}

Status AuditLog::close() {
    {
        std::lock_guard lk(impl_->mu);
        if (impl_->closed) {
            if (impl_->failed)
                return fail(ErrorCode::io, "audit log failed: " + impl_->failure_reason);
            return {};
        }
        impl_->stopping = true;
    }
    impl_->work_cv.notify_all();
    if (impl_->writer.joinable()) impl_->writer.join();
    std::lock_guard lk(impl_->mu);
    impl_->closed = true;
    impl_->segment.reset();
    impl_->checkpoints.reset();
    impl_->dir_lock.reset();
    if (impl_->failed) return fail(ErrorCode::io, "audit log failed: " + impl_->failure_reason);
    return {};
}

std::string AuditLog::hmac(std::string_view value) const {
    return impl_->hasher.hash(value);
}

bool AuditLog::failed() const {
    std::lock_guard lk(impl_->mu);
    return impl_->failed;
}

std::string AuditLog::failure_reason() const {
    std::lock_guard lk(impl_->mu);
    return impl_->failure_reason;
}

uint64_t AuditLog::durable_size() const {
    std::lock_guard lk(impl_->mu);
    return impl_->durable;
}

const std::string& AuditLog::dir() const {
    return impl_->dir;
}

}  // namespace sa::agent::audit
