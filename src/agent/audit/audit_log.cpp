#include "agent/audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "agent/audit/field_hasher.h"
#include "agent/audit/format.h"
#include "agent/audit/retention.h"
#include "agent/audit/tree_hasher.h"
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
    int64_t ts_millis;
};

constexpr int64_t kDayMillis = 86400000;

int64_t utc_day(int64_t millis) {
    return millis >= 0 ? millis / kDayMillis : -((-millis + kDayMillis - 1) / kDayMillis);
}

Digest to_digest(std::string_view raw) {
    Digest d{};
    std::memcpy(d.data(), raw.data(), std::min(raw.size(), d.size()));
    return d;
}

std::string from_digest(const Digest& d) {
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

// What the writer knows about each segment on disk: enough to prune it and
// anchor the records after it without reading it again.
struct SegmentInfo {
    uint64_t number = 0;
    uint64_t first_seq = 0;  // seq of its first record (next seq while empty)
    uint64_t end_seq = 0;    // one past its last record
    std::optional<int64_t> oldest_millis;
    std::optional<int64_t> newest_millis;
    std::vector<Digest> frontier;  // Merkle tree peaks at size first_seq
    Digest prev_at_first{};        // leaf hash of record first_seq - 1

    bool empty() const { return end_seq == first_seq; }
    void add(uint64_t seq, std::optional<int64_t> ts_millis) {
        if (empty()) first_seq = seq;
        end_seq = seq + 1;
        if (!ts_millis) return;
        if (!oldest_millis || *ts_millis < *oldest_millis) oldest_millis = ts_millis;
        if (!newest_millis || *ts_millis > *newest_millis) newest_millis = ts_millis;
    }
};

SegmentInfo start_segment_info(uint64_t number, const DigestTree& tree, const Digest& last_leaf) {
    SegmentInfo info;
    info.number = number;
    info.first_seq = info.end_seq = tree.size();
    info.frontier.assign(tree.peaks().begin(), tree.peaks().end());
    info.prev_at_first = last_leaf;
    return info;
}

// State recovered from disk at open.
struct Recovered {
    uint64_t next_seq = 0;
    merkle::Hash prev;  // leaf hash of the last record ("" when none)
    TreeHasher hasher;
    DigestTree tree;
    std::vector<SegmentInfo> segs;
    std::vector<RetentionAnchor> anchors;
    std::set<std::pair<uint64_t, uint64_t>>
        pruned;  // [first_seq, last_seq] of audit.pruned records
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
        SegmentInfo info = start_segment_info(*parse_segment_name(name), r.tree, to_digest(r.prev));
        while (reader->next(line, complete)) {
            ++line_no;
            if (!complete) {
                problem = "incomplete last line";
                break;
            }
            auto rec = parse_record_line(line);
            if (rec && rec->seq > r.next_seq) {
                // Records removed by retention: continue the tree from the
                // anchor of the kept run that starts here.
                for (const auto& a : r.anchors) {
                    if (a.first_seq != rec->seq) continue;
                    std::vector<Digest> peaks;
                    for (const auto& f : a.frontier)
                        peaks.push_back(to_digest(*crypto::base64_decode(f)));
                    auto seeded = DigestTree::from_peaks(a.first_seq, peaks);
                    if (!seeded) break;
                    r.tree = *seeded;
                    r.prev = *crypto::base64_decode(a.prev);
                    r.next_seq = a.first_seq;
                    if (info.empty())
                        info = start_segment_info(info.number, r.tree, to_digest(r.prev));
                    break;
                }
            }
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
            if (rec->type == kPrunedEventType) {
                const auto& f = rec->fields;
                if (f.contains("first_seq") && f["first_seq"].is_number_unsigned() &&
                    f.contains("last_seq") && f["last_seq"].is_number_unsigned())
                    r.pruned.emplace(f["first_seq"].get<uint64_t>(), f["last_seq"].get<uint64_t>());
            }
            info.add(rec->seq, parse_rfc3339_millis(rec->ts));
            r.prev = merkle::leaf_hash(line);
            r.tree.append(to_digest(r.prev), r.hasher);
            ++r.next_seq;
            if (r.tree.size() == r.checkpoint_size &&
                crypto::base64_encode(from_digest(r.tree.root(r.hasher))) != r.checkpoint_root)
                return fail(ErrorCode::integrity,
                            "audit records up to " + name + ":" + std::to_string(line_no) +
                                " no longer match the last checkpoint; run `secure-agent audit "
                                "verify` and investigate");
            good_end = reader->offset();
        }
        if (problem && !last)
            return fail(ErrorCode::integrity, "audit log damaged at " + name + ":" +
                                                  std::to_string(line_no) + " (" + *problem + ")");
        r.segs.push_back(std::move(info));
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

// A torn last line that recover_line_file() cut off.
struct CutTail {
    uint64_t line = 0;  // 1-based
    uint64_t dropped_bytes = 0;
    std::string reason;
};

// Reads dir/file (absent = empty) and hands every complete line to accept().
// A bad or incomplete LAST line is a crash mid-write: it is cut off and
// returned. A bad line anywhere else is tampering: an integrity error naming
// `what` and the position, for `audit verify` to investigate.
Result<std::optional<CutTail>> recover_line_file(
    const std::string& dir, const char* file, const char* what,
    const std::function<Status(std::string_view line)>& accept) {
    const std::string path = (fs::path(dir) / file).string();
    auto reader = LineReader::open(path);
    if (!reader) {
        if (reader.error().code == ErrorCode::not_found) return std::nullopt;
        return std::unexpected(reader.error());
    }
    std::string line;
    bool complete = true;
    uint64_t line_no = 0;
    uint64_t good_end = 0;
    while (reader->next(line, complete)) {
        ++line_no;
        Status accepted = complete ? accept(line) : Status{};
        if (complete && accepted) {
            good_end = reader->offset();
            continue;
        }
        std::string more;
        bool more_complete = true;
        if (reader->next(more, more_complete))
            return fail(ErrorCode::integrity,
                        std::string(what) + " damaged at " + file + ":" + std::to_string(line_no) +
                            "; run `secure-agent audit verify` and investigate");
        const uint64_t size = reader->offset();
        if (auto st = truncate_file(path, good_end); !st) return std::unexpected(st.error());
        return CutTail{line_no, size - good_end,
                       complete ? accepted.error().message : "incomplete last line"};
    }
    return std::nullopt;
}

// Cuts off a torn last checkpoint line; remembers the last checkpoint.
Status recover_checkpoints(const std::string& dir, Recovered& r) {
    auto cut = recover_line_file(dir, kCheckpointsFile, "audit checkpoints",
                                 [&](std::string_view line) -> Status {
                                     auto cp = parse_checkpoint_line(line);
                                     if (!cp) return std::unexpected(cp.error());
                                     r.checkpoint_size = cp->tree_size;
                                     r.checkpoint_root = cp->root;
                                     return {};
                                 });
    if (!cut) return std::unexpected(cut.error());
    if (*cut) {
        const CutTail& c = **cut;
        r.warnings.push_back("audit: dropped " + std::to_string(c.dropped_bytes) +
                             " bytes of a torn checkpoint at " + kCheckpointsFile + ":" +
                             std::to_string(c.line) + " (" + c.reason + ")");
        r.recovered_events.push_back(json{{"file", kCheckpointsFile},
                                          {"line", c.line},
                                          {"dropped_bytes", c.dropped_bytes},
                                          {"reason", c.reason}});
    }
    return {};
}

// Reads retention.jsonl; cuts off a torn last line (a crash while step (a)
// of a pruning wrote it: nothing was removed on its strength yet).
Status recover_anchors(const std::string& dir, Recovered& r) {
    auto cut = recover_line_file(dir, kRetentionFile, "audit retention anchors",
                                 [&](std::string_view line) -> Status {
                                     auto a = parse_anchor_line(line);
                                     if (!a) return std::unexpected(a.error());
                                     r.anchors.push_back(std::move(*a));
                                     return {};
                                 });
    if (!cut) return std::unexpected(cut.error());
    if (*cut) {
        r.warnings.push_back("audit: dropped " + std::to_string((*cut)->dropped_bytes) +
                             " bytes of a torn retention anchor at " + kRetentionFile + ":" +
                             std::to_string((*cut)->line));
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
    Impl(std::string d, Options o, const identity::AgentKey& k, const Clock& c,
         std::shared_ptr<const FieldHasher> h)
        : dir(std::move(d)), options(std::move(o)), key(k), clock(c), hasher(std::move(h)) {}

    const std::string dir;
    const Options options;
    const identity::AgentKey& key;
    const Clock& clock;
    const std::shared_ptr<const FieldHasher> hasher;  // never null
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
    bool writer_done = false;
    uint64_t prune_requested = 0;  // prune_now() tickets
    uint64_t prune_done = 0;
    Result<PruneResult> prune_result = PruneResult{};

    // Owned by the writer thread (and by open() before it starts).
    Fd segment;
    uint64_t segment_number = 1;
    uint64_t segment_size = 0;
    Fd checkpoints;
    TreeHasher tree_hasher;
    DigestTree tree;
    Digest last_leaf{};
    std::vector<SegmentInfo> segs;  // segments on disk, oldest first; back() is active
    uint64_t checkpoint_size = 0;
    SteadyClock::time_point checkpoint_time = SteadyClock::now();
    SteadyClock::time_point prune_deadline =
        SteadyClock::now() + std::chrono::milliseconds(options.prune_first_delay_ms);

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

    // The tree and segment bookkeeping advance while the batch is laid out
    // (a segment's frontier is the tree at its first record); on an error
    // the log fails closed, so running ahead of the disk is harmless.
    Status commit(const std::vector<Pending>& batch) {
        std::string buf;
        for (const auto& p : batch) {
            const bool has_data = segment_size + buf.size() > 0;
            const bool full =
                has_data && segment_size + buf.size() + p.line.size() > options.segment_max_bytes;
            const auto& newest = segs.back().newest_millis;
            const bool new_day = has_data && options.rotate_daily && newest &&
                                 utc_day(*newest) != utc_day(p.ts_millis);
            if (full || new_day) {
                if (auto st = write_and_sync(buf); !st) return st;
                buf.clear();
                if (auto st = open_segment(segment_number + 1, true); !st) return st;
                segs.push_back(start_segment_info(segment_number, tree, last_leaf));
            }
            buf += p.line;
            last_leaf = to_digest(p.leaf);
            tree.append(last_leaf, tree_hasher);
            segs.back().add(p.seq, p.ts_millis);
        }
        if (auto st = write_and_sync(buf); !st) return st;
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
        cp.root = crypto::base64_encode(from_digest(tree.root(tree_hasher)));
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

    bool prune_due() const {
        return options.retention_days > 0 && SteadyClock::now() >= prune_deadline;
    }

    void run_writer() {
        std::vector<Pending> batch;
        std::unique_lock lk(mu);
        for (;;) {
            auto ready = [&] {
                return stopping || failed || !queue.empty() || prune_requested > prune_done;
            };
            std::optional<SteadyClock::time_point> deadline;
            if (tree.size() > checkpoint_size) deadline = checkpoint_deadline();
            if (options.retention_days > 0)
                deadline = deadline ? std::min(*deadline, prune_deadline) : prune_deadline;
            if (deadline)
                work_cv.wait_until(lk, *deadline, ready);
            else
                work_cv.wait(lk, ready);
            if (failed) break;
            if (!stopping && (prune_requested > prune_done || prune_due())) {
                const uint64_t ticket = prune_requested;
                lk.unlock();
                auto result = prune();
                prune_deadline =
                    SteadyClock::now() + std::chrono::milliseconds(options.prune_interval_ms);
                // Fail first: whoever waits in prune_now() must find the log
                // already failed when it sees the error.
                if (!result) fail_closed("audit retention failed: " + result.error().message);
                lk.lock();
                prune_result = result;
                prune_done = ticket;
                lk.unlock();
                durable_cv.notify_all();
                lk.lock();
                if (!result) break;
                continue;
            }
            if (!queue.empty()) {
                batch.swap(queue);
                lk.unlock();
                Status st = commit(batch);
                batch.clear();
                if (st && checkpoint_due()) st = write_checkpoint();
                if (!st) {
                    fail_closed(st.error().message);
                    lk.lock();
                    break;
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
                    lk.lock();
                    break;
                }
            }
            lk.lock();
        }
        const bool ok = !failed;
        lk.unlock();
        if (ok && tree.size() > checkpoint_size) {
            if (auto st = write_checkpoint(); !st) fail_closed(st.error().message);
        }
        lk.lock();
        writer_done = true;
        lk.unlock();
        durable_cv.notify_all();
    }

    // Appends lines to retention.jsonl and makes them durable; cuts a partial
    // write off again.
    Status append_anchors(const std::string& lines) {
        const std::string path = (fs::path(dir) / kRetentionFile).string();
        const bool fresh = !fs::exists(path);
        auto fd = open_append(path);
        if (!fd) return std::unexpected(fd.error());
        struct stat sb {};
        off_t before = ::fstat(fd->get(), &sb) == 0 ? sb.st_size : 0;
        Status st = write_all(fd->get(), lines, kRetentionFile);
        if (st && ::fdatasync(fd->get()) != 0)
            st = fail(ErrorCode::io,
                      std::string("cannot sync ") + kRetentionFile + ": " + errno_text());
        if (!st) {
            if (::ftruncate(fd->get(), before) != 0)
                st.error().message += " (and the partial anchor could not be cut off)";
            return st;
        }
        if (fresh) return sync_dir(dir);
        return {};
    }

    // The audit.pruned record for segs[first..last] (indices), whose gap ends
    // at seq `last_seq`, sealed into `out`; mu must be held.
    Status seal_pruned_locked(const std::vector<const SegmentInfo*>& removed, uint64_t gap_first,
                              uint64_t gap_last, int64_t now, std::vector<Pending>& out) {
        json names = json::array();
        uint64_t count = 0;
        std::optional<int64_t> oldest;
        std::optional<int64_t> newest;
        for (const SegmentInfo* info : removed) {
            names.push_back(segment_name(info->number));
            count += info->end_seq - info->first_seq;
            if (info->oldest_millis && (!oldest || *info->oldest_millis < *oldest))
                oldest = info->oldest_millis;
            if (info->newest_millis && (!newest || *info->newest_millis > *newest))
                newest = info->newest_millis;
        }
        json fields{{"segments", std::move(names)},
                    {"first_seq", gap_first},
                    {"last_seq", gap_last},
                    {"count", count},
                    {"oldest_ts", oldest ? util::rfc3339_millis(*oldest) : std::string()},
                    {"newest_ts", newest ? util::rfc3339_millis(*newest) : std::string()},
                    {"retention_days", options.retention_days}};
        auto p = seal_locked(kPrunedEventType, std::move(fields), {}, now);
        if (!p) return std::unexpected(p.error());
        out.push_back(std::move(*p));
        return {};
    }

    // Step (c): unlinks the segments (newest first, so a crash midway leaves
    // the kept prefix of the run contiguous with what precedes it).
    // A segment preserved meanwhile stops the unlinking there: the ones
    // before it stay too, or their records would leave a gap no anchor
    // bridges. Returns the numbers removed.
    Result<std::vector<uint64_t>> unlink_segments(const std::vector<uint64_t>& numbers) {
        std::vector<uint64_t> removed;
        for (auto it = numbers.rbegin(); it != numbers.rend(); ++it) {
            if (is_preserved(dir, segment_name(*it))) break;
            if (::unlink(segment_path(*it).c_str()) != 0 && errno != ENOENT)
                return fail(ErrorCode::io,
                            "cannot remove " + segment_name(*it) + ": " + errno_text());
            removed.insert(removed.begin(), *it);
        }
        std::erase_if(segs, [&](const SegmentInfo& s) {
            return std::find(removed.begin(), removed.end(), s.number) != removed.end();
        });
        if (auto st = sync_dir(dir); !st) return std::unexpected(st.error());
        return removed;
    }

    // One pruning, on the writer thread (or in open() before it starts).
    Result<PruneResult> prune() {
        PruneResult result;
        if (options.retention_days == 0 || segs.size() < 2) return result;
        const int64_t now = clock.now_millis();
        const int64_t cutoff = now - static_cast<int64_t>(options.retention_days) * kDayMillis;
        std::vector<bool> remove(segs.size(), false);
        for (size_t i = 0; i + 1 < segs.size(); ++i) {
            const SegmentInfo& info = segs[i];
            remove[i] = !info.empty() && info.newest_millis && *info.newest_millis < cutoff &&
                        !is_preserved(dir, segment_name(info.number));
        }
        struct Run {
            size_t first;
            size_t last;
        };
        std::vector<Run> runs;
        for (size_t i = 0; i < segs.size(); ++i) {
            if (!remove[i]) continue;
            if (!runs.empty() && runs.back().last + 1 == i)
                runs.back().last = i;
            else
                runs.push_back(Run{i, i});
        }
        if (runs.empty()) return result;

        // (a) one anchor per kept run that follows removed segments.
        const std::string ts = util::rfc3339_millis(now);
        std::string lines;
        std::vector<std::pair<uint64_t, uint64_t>> gaps;
        for (const Run& run : runs) {
            const SegmentInfo& kept = segs[run.last + 1];  // exists: the last is never removed
            RetentionAnchor a;
            a.first_seq = kept.first_seq;
            a.prev = crypto::base64_encode(from_digest(kept.prev_at_first));
            for (const Digest& d : kept.frontier)
                a.frontier.push_back(crypto::base64_encode(from_digest(d)));
            for (size_t i = run.first; i <= run.last; ++i)
                a.removed.push_back(segment_name(segs[i].number));
            // The gap also covers records an earlier pruning removed right
            // before this run, so one anchor bridges it.
            a.removed_first_seq = run.first == 0 ? 0 : segs[run.first - 1].end_seq;
            a.removed_last_seq = kept.first_seq - 1;
            a.ts = ts;
            gaps.emplace_back(a.removed_first_seq, a.removed_last_seq);
            auto text = canonical_dump(to_json(a));
            if (!text) return std::unexpected(text.error());
            lines += *text + "\n";
        }
        if (auto st = append_anchors(lines); !st) return std::unexpected(st.error());
        if (options.prune_stop_after_step == 1) return result;

        // (b) the audit.pruned records, with whatever was queued before them.
        std::vector<Pending> batch;
        {
            std::lock_guard lk(mu);
            if (failed) return fail(ErrorCode::io, "audit log failed: " + failure_reason);
            batch.swap(queue);
            for (size_t r = 0; r < runs.size(); ++r) {
                std::vector<const SegmentInfo*> removed;
                for (size_t i = runs[r].first; i <= runs[r].last; ++i) removed.push_back(&segs[i]);
                if (auto st =
                        seal_pruned_locked(removed, gaps[r].first, gaps[r].second, now, batch);
                    !st)
                    return std::unexpected(st.error());
            }
        }
        if (auto st = commit(batch); !st) return std::unexpected(st.error());
        if (checkpoint_due()) {
            if (auto st = write_checkpoint(); !st) return std::unexpected(st.error());
        }
        if (options.prune_stop_after_step == 2) return result;

        // (c)
        std::vector<std::vector<uint64_t>> run_numbers;
        std::map<uint64_t, uint64_t> counts;
        for (const Run& run : runs) {
            run_numbers.emplace_back();
            for (size_t i = run.first; i <= run.last; ++i) {
                run_numbers.back().push_back(segs[i].number);
                counts[segs[i].number] = segs[i].end_seq - segs[i].first_seq;
            }
        }
        for (size_t r = 0; r < runs.size(); ++r) {
            auto removed = unlink_segments(run_numbers[r]);
            if (!removed) return std::unexpected(removed.error());
            std::vector<std::string> names;
            for (uint64_t n : *removed) {
                names.push_back(segment_name(n));
                result.records += counts[n];
            }
            result.removed.insert(result.removed.end(), names.begin(), names.end());
            if (options.on_pruned && !names.empty())
                options.on_pruned(names, gaps[r].first, gaps[r].second);
        }
        return result;
    }

    // At open, before the writer starts: finishes prunings a crash cut short
    // (an anchor whose segments are still there): writes the audit.pruned
    // record when it is missing, then removes the segments.
    Status finish_interrupted_prunings(const Recovered& r, std::vector<std::string>& warnings) {
        auto pruned = r.pruned;
        for (const auto& a : r.anchors) {
            std::vector<const SegmentInfo*> present;
            std::vector<uint64_t> numbers;
            for (const auto& name : a.removed) {
                const uint64_t n = *parse_segment_name(name);
                if (n == segs.back().number) continue;
                for (const auto& info : segs)
                    if (info.number == n) {
                        present.push_back(&info);
                        numbers.push_back(n);
                    }
            }
            if (numbers.empty()) continue;
            const auto gap = std::make_pair(a.removed_first_seq, a.removed_last_seq);
            if (!pruned.contains(gap)) {
                std::vector<Pending> batch;
                {
                    std::lock_guard lk(mu);
                    if (auto st = seal_pruned_locked(present, gap.first, gap.second,
                                                     clock.now_millis(), batch);
                        !st)
                        return st;
                }
                if (auto st = commit(batch); !st) return st;
                pruned.insert(gap);
            }
            auto removed = unlink_segments(numbers);
            if (!removed) return std::unexpected(removed.error());
            if (removed->empty()) continue;
            std::string names;
            for (uint64_t n : *removed) names += (names.empty() ? "" : ", ") + segment_name(n);
            warnings.push_back("audit: finished an interrupted retention pruning: removed " +
                               names);
        }
        return {};
    }

    Result<Pending> seal_locked(std::string_view type, json fields, const AppendContext& ctx,
                                int64_t ts_millis) {
        json rec{{"type", type},
                 {"actor", ctx.actor.empty() ? default_actor : ctx.actor},
                 {"agent_id", options.agent_id},
                 {"fields", std::move(fields)},
                 {"ts", util::rfc3339_millis(ts_millis)},
                 {"seq", next_seq},
                 {"prev", crypto::base64_encode(prev)}};
        if (!ctx.job_id.empty()) rec["job_id"] = ctx.job_id;
        if (!ctx.trace_id.empty()) rec["trace_id"] = ctx.trace_id;
        std::string line;
        try {
            line = rec.dump();
        } catch (const json::exception& e) {
            return fail(ErrorCode::invalid_argument,
                        std::string("audit record is not valid UTF-8: ") + e.what());
        }
        merkle::Hash leaf = merkle::leaf_hash(line);
        line += '\n';
        const uint64_t seq = next_seq++;
        prev = leaf;
        return Pending{std::move(line), std::move(leaf), seq, ts_millis};
    }

    Result<uint64_t> enqueue(std::string_view type, json fields, const AppendContext& ctx) {
        if (type.empty()) return fail(ErrorCode::invalid_argument, "audit record type is empty");
        if (fields.is_null()) fields = json::object();
        if (!fields.is_object())
            return fail(ErrorCode::invalid_argument, "audit record fields must be a JSON object");
        if (auto st = check_no_floats(fields, "/fields"); !st) return std::unexpected(st.error());
        const int64_t ts_millis = clock.now_millis();
        std::unique_lock lk(mu);
        if (failed) return fail(ErrorCode::io, "audit log failed: " + failure_reason);
        if (closed || stopping) return fail(ErrorCode::conflict, "audit log is closed");
        auto p = seal_locked(type, std::move(fields), ctx, ts_millis);
        if (!p) return std::unexpected(p.error());
        const uint64_t seq = p->seq;
        queue.push_back(std::move(*p));
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
    if (options.retention_days > 0 && options.prune_interval_ms == 0)
        return fail(ErrorCode::invalid_argument, "prune_interval_ms must be positive");
    if (auto st = util::make_dirs(dir, 0700); !st) return std::unexpected(st.error());
    auto dir_lock = lock_dir(dir);
    if (!dir_lock) return std::unexpected(dir_lock.error());
    std::shared_ptr<const FieldHasher> hasher = options.hasher;
    if (!hasher) {
        auto loaded = FieldHasher::load_or_create(dir);
        if (!loaded) return std::unexpected(loaded.error());
        hasher = std::make_shared<const FieldHasher>(std::move(*loaded));
    }
    if (auto st = bind_salt_source(dir, *hasher, /*record=*/true); !st) {
        return std::unexpected(st.error());
    }

    Recovered r;
    // Checkpoints first: a record they cover is never cut off as a torn tail.
    if (auto st = recover_checkpoints(dir, r); !st) return std::unexpected(st.error());
    if (auto st = recover_anchors(dir, r); !st) return std::unexpected(st.error());
    if (auto st = recover_segments(dir, r); !st) return std::unexpected(st.error());
    if (auto st = check_covered(r); !st) return std::unexpected(st.error());

    auto impl = std::make_unique<Impl>(dir, std::move(options), key,
                                       clock ? *clock : static_cast<const Clock&>(system_clock),
                                       std::move(hasher));
    impl->dir_lock = std::move(*dir_lock);
    impl->next_seq = r.next_seq;
    impl->durable = r.next_seq;
    impl->prev = r.prev;
    impl->tree = r.tree;
    impl->last_leaf = to_digest(r.prev);
    impl->segs = std::move(r.segs);
    impl->checkpoint_size = r.checkpoint_size;
    bool fresh = !fs::exists(impl->segment_path(r.segment_number));
    if (auto st = impl->open_segment(r.segment_number, fresh); !st)
        return std::unexpected(st.error());
    impl->segment_size = r.segment_size;
    auto cps = open_append((fs::path(dir) / kCheckpointsFile).string());
    if (!cps) return std::unexpected(cps.error());
    impl->checkpoints = std::move(*cps);
    if (impl->segs.empty() || impl->segs.back().number != r.segment_number)
        impl->segs.push_back(start_segment_info(r.segment_number, impl->tree, impl->last_leaf));
    if (auto st = impl->finish_interrupted_prunings(r, r.warnings); !st)
        return std::unexpected(st.error());

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
    return impl_->hasher->hash(value);
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

Result<PruneResult> AuditLog::prune_now() {
    std::unique_lock lk(impl_->mu);
    if (impl_->failed) return fail(ErrorCode::io, "audit log failed: " + impl_->failure_reason);
    if (impl_->closed || impl_->stopping || impl_->writer_done)
        return fail(ErrorCode::conflict, "audit log is closed");
    const uint64_t ticket = ++impl_->prune_requested;
    impl_->work_cv.notify_all();
    impl_->durable_cv.wait(
        lk, [&] { return impl_->prune_done >= ticket || impl_->failed || impl_->writer_done; });
    if (impl_->prune_done >= ticket) return impl_->prune_result;
    if (impl_->failed) return fail(ErrorCode::io, "audit log failed: " + impl_->failure_reason);
    return fail(ErrorCode::conflict, "audit log is closed");
}

const std::string& AuditLog::dir() const {
    return impl_->dir;
}

}  // namespace sa::agent::audit
