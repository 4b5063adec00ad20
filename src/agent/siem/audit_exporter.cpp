#include "agent/siem/audit_exporter.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/canonical.h"
#include "agent/audit/format.h"
#include "common/util/files.h"

namespace sa::agent::siem {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Reads a segment from a byte offset and hands out its lines as views, valid
// until the next call. pread(2), not mmap: retention or a recovering writer
// may truncate or remove the file under us, which must not raise SIGBUS.
class SegmentReader final {
  public:
    enum class Next { line, end, partial };

    static Result<SegmentReader> open(const std::string& path, uint64_t offset) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            return fail(e == ENOENT ? ErrorCode::not_found : ErrorCode::io,
                        "cannot open " + path + ": " + std::strerror(e));
        }
        return SegmentReader(fd, path, offset);
    }

    SegmentReader(SegmentReader&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)),
          path_(std::move(o.path_)),
          buf_(std::move(o.buf_)),
          begin_(o.begin_),
          end_(o.end_),
          offset_(o.offset_),
          eof_(o.eof_) {}
    SegmentReader& operator=(SegmentReader&& o) noexcept {
        if (this != &o) {
            if (fd_ >= 0) ::close(fd_);
            fd_ = std::exchange(o.fd_, -1);
            path_ = std::move(o.path_);
            buf_ = std::move(o.buf_);
            begin_ = o.begin_;
            end_ = o.end_;
            offset_ = o.offset_;
            eof_ = o.eof_;
        }
        return *this;
    }
    SegmentReader(const SegmentReader&) = delete;
    SegmentReader& operator=(const SegmentReader&) = delete;
    ~SegmentReader() {
        if (fd_ >= 0) ::close(fd_);
    }

    // The next complete line (without "\n"); `end` at end of file on a line
    // boundary; `partial` when the file ends inside a line.
    Result<Next> next(std::string_view& line) {
        for (;;) {
            const char* start = buf_.data() + begin_;
            if (const void* nl = std::memchr(start, '\n', end_ - begin_)) {
                size_t len = static_cast<size_t>(static_cast<const char*>(nl) - start);
                line = std::string_view(start, len);
                begin_ += len + 1;
                offset_ += len + 1;
                return Next::line;
            }
            if (eof_) return begin_ == end_ ? Next::end : Next::partial;
            if (auto st = fill(); !st) return std::unexpected(st.error());
        }
    }

    // Byte offset just past the last line returned.
    uint64_t offset() const { return offset_; }

  private:
    SegmentReader(int fd, std::string path, uint64_t offset)
        : fd_(fd), path_(std::move(path)), buf_(1 << 20), offset_(offset) {}

    Status fill() {
        if (begin_ > 0) {
            std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);  // a line longer than the buffer
        for (;;) {
            ssize_t n = ::pread(fd_, buf_.data() + end_, buf_.size() - end_,
                                static_cast<off_t>(offset_ + end_));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return fail(ErrorCode::io, "cannot read " + path_ + ": " + std::strerror(errno));
            if (n == 0) eof_ = true;
            end_ += static_cast<size_t>(n);
            return {};
        }
    }

    int fd_ = -1;
    std::string path_;
    std::vector<char> buf_;
    size_t begin_ = 0;  // unread bytes are buf_[begin_, end_)
    size_t end_ = 0;
    uint64_t offset_ = 0;  // file offset of buf_[begin_]
    bool eof_ = false;
};

std::string segment_path(const std::string& dir, const std::string& segment) {
    return (fs::path(dir) / segment).string();
}

// The seq of a segment's first record; nullopt while the segment holds no
// complete line yet.
Result<std::optional<uint64_t>> first_seq(const std::string& dir, const std::string& segment) {
    auto reader = SegmentReader::open(segment_path(dir, segment), 0);
    if (!reader) return std::unexpected(reader.error());
    std::string_view line;
    auto next = reader->next(line);
    if (!next) return std::unexpected(next.error());
    if (*next != SegmentReader::Next::line) return std::optional<uint64_t>{};
    auto head = audit::scan_record_line(line);
    if (!head)
        return fail(ErrorCode::integrity,
                    segment + ":1 is not a valid audit record: " + head.error().message);
    return std::optional<uint64_t>{head->seq};
}

// The first segment after `segment` in dir, nullopt when there is none.
Result<std::optional<std::string>> segment_after(const std::string& dir,
                                                 const std::string& segment) {
    auto segments = audit::list_segments(dir);
    if (!segments) return std::unexpected(segments.error());
    auto number = audit::parse_segment_name(segment).value_or(0);
    for (const auto& s : *segments)
        if (audit::parse_segment_name(s).value_or(0) > number) return std::optional<std::string>{s};
    return std::optional<std::string>{};
}

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > 64) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

}  // namespace

AuditExporter::AuditExporter(std::string audit_dir, RecordSinkPtr sink, Options options)
    : dir_(std::move(audit_dir)),
      sink_(std::move(sink)),
      options_(std::move(options)),
      rng_(std::random_device{}()) {}

AuditExporter::~AuditExporter() {
    stop();
}

std::string AuditExporter::cursor_path() const {
    return segment_path(dir_, "export-" + options_.name + ".cursor");
}

Status AuditExporter::check_options() const {
    if (!sink_) return fail(ErrorCode::invalid_argument, "audit export needs a sink");
    if (!valid_name(options_.name))
        return fail(ErrorCode::invalid_argument,
                    "audit export name must be 1-64 characters of [A-Za-z0-9_-]");
    if (!options_.durable_size)
        return fail(ErrorCode::invalid_argument, "audit export needs durable_size");
    if (options_.batch_max_records == 0)
        return fail(ErrorCode::invalid_argument, "batch_max_records must be positive");
    if (options_.retry_backoff_min.count() <= 0 ||
        options_.retry_backoff_max < options_.retry_backoff_min)
        return fail(ErrorCode::invalid_argument,
                    "retry backoff must satisfy 0 < retry_backoff_min <= retry_backoff_max");
    return {};
}

void AuditExporter::warn(const std::string& message) {
    if (options_.on_warning) options_.on_warning(message);
}

void AuditExporter::report_gap(const Gap& gap) {
    {
        std::lock_guard lock(mu_);
        stats_.gaps += 1;
        stats_.skipped_records += gap.count;
        stats_.next_seq = pos_.next_seq;
    }
    if (options_.on_gap) options_.on_gap(gap);
}

void AuditExporter::persist() {
    nlohmann::json j{
        {"next_seq", pos_.next_seq}, {"segment", pos_.segment}, {"offset", pos_.offset}};
    auto written = util::write_file_atomic(cursor_path(), j.dump(), 0600);
    std::lock_guard lock(mu_);
    stats_.next_seq = pos_.next_seq;
    if (!written) {
        // Delivery happened; a stale cursor only means duplicates after a restart.
        stats_.last_error = "cannot save export cursor: " + written.error().describe();
    }
    if (!written && options_.on_warning) options_.on_warning(stats_.last_error);
}

Status AuditExporter::load_cursor() {
    auto loaded = read_cursor();
    if (loaded) loaded_ = true;
    std::lock_guard lock(mu_);
    stats_.next_seq = pos_.next_seq;
    return loaded;
}

Status AuditExporter::read_cursor() {
    pos_ = {};
    auto text = util::read_file(cursor_path());
    if (!text) {
        if (text.error().code == ErrorCode::not_found) return {};  // first run: oldest segment
        return std::unexpected(text.error());
    }
    Position cursor;
    std::string problem;

    try {
        auto j = nlohmann::json::parse(*text);
        cursor.next_seq = j.at("next_seq").get<uint64_t>();
        try {
            cursor.segment = j.at("segment").get<std::string>();
            cursor.offset = j.at("offset").get<uint64_t>();
            if (!audit::parse_segment_name(cursor.segment)) problem = "bad segment name";
        } catch (const nlohmann::json::exception& e) {
            problem = e.what();
        }
    } catch (const nlohmann::json::exception& e) {
        warn("export cursor " + cursor_path() + " is corrupt (" + e.what() +
             "): exporting again from the oldest segment (duplicates follow)");
        return {};
    }
    if (!problem.empty()) {
        warn("export cursor " + cursor_path() + " is corrupt (" + problem + "): finding seq " +
             std::to_string(cursor.next_seq) + " by scanning the segments");
        return relocate(cursor.next_seq, "corrupt cursor");
    }
    // Valid when the line at the offset holds next_seq.
    auto reader = SegmentReader::open(segment_path(dir_, cursor.segment), cursor.offset);
    if (!reader) {
        if (reader.error().code != ErrorCode::not_found) return std::unexpected(reader.error());
        // Removed by retention (reported as a gap when exporting), or never
        // existed: relocate() tells them apart.
        return relocate(cursor.next_seq, "");
    }
    std::string_view line;
    auto next = reader->next(line);
    if (!next) return std::unexpected(next.error());
    if (*next == SegmentReader::Next::line) {
        auto head = audit::scan_record_line(line);
        if (head && head->seq == cursor.next_seq) {
            pos_ = cursor;
            return {};
        }
    }
    // At the end of its segment (the usual case for an idle exporter) or not
    // matching: find the seq from the segments themselves.
    return relocate(cursor.next_seq, "");
}

// Sets pos_ to where record `seq` is (or will be written). `why` non-empty:
// the cursor was corrupt, so say where it was found.
Status AuditExporter::relocate(uint64_t seq, const std::string& why) {
    auto segments = audit::list_segments(dir_);
    if (!segments) {
        if (segments.error().code == ErrorCode::not_found) return {};
        return std::unexpected(segments.error());
    }
    // The last segment whose first record is <= seq.
    std::optional<std::pair<std::string, uint64_t>> home;
    std::optional<uint64_t> oldest_first;
    std::string oldest;
    for (const auto& s : *segments) {
        auto first = first_seq(dir_, s);
        if (!first) return std::unexpected(first.error());
        if (!*first) continue;
        if (!oldest_first) {
            oldest_first = **first;
            oldest = s;
        }
        if (**first <= seq) home = {s, **first};
    }
    if (!home) {
        if (oldest_first && seq < *oldest_first) {
            // Retention removed the segments holding the cursor.
            pos_ = {oldest, 0, *oldest_first};
            report_gap({seq, *oldest_first - 1, *oldest_first - seq, kGapRetention});
            persist();
            return {};
        }
        if (!why.empty() || seq > 0)
            warn("export cursor at seq " + std::to_string(seq) +
                 " is beyond the audit log's records: exporting again from the oldest segment");
        return {};  // unresolved: the oldest segment, once it has records
    }
    auto reader = SegmentReader::open(segment_path(dir_, home->first), 0);
    if (!reader) return std::unexpected(reader.error());
    uint64_t at = home->second;
    uint64_t offset = 0;
    std::string_view line;
    while (at < seq) {
        auto next = reader->next(line);
        if (!next) return std::unexpected(next.error());
        if (*next != SegmentReader::Next::line) break;
        ++at;
        offset = reader->offset();
    }
    if (at != seq) {
        warn("export cursor at seq " + std::to_string(seq) +
             " is beyond the audit log's records: exporting again from the oldest segment");
        pos_ = {};
        return {};
    }
    pos_ = {home->first, offset, seq};
    if (!why.empty())
        warn("export cursor: seq " + std::to_string(seq) + " found at " + home->first + " offset " +
             std::to_string(offset));
    return {};
}

// No cursor yet: the start of the oldest segment, once it holds a record.
Status AuditExporter::resolve_start() {
    auto segments = audit::list_segments(dir_);
    if (!segments) {
        if (segments.error().code == ErrorCode::not_found) return {};
        return std::unexpected(segments.error());
    }
    if (segments->empty()) return {};
    auto first = first_seq(dir_, segments->front());
    if (!first) return std::unexpected(first.error());
    if (*first) pos_ = {segments->front(), 0, **first};
    return {};
}

// The cursor's segment is gone: continue at the next one that exists and
// report the records in between.
Status AuditExporter::handle_missing_segment() {
    auto after = segment_after(dir_, pos_.segment);
    if (!after) return std::unexpected(after.error());
    if (!*after)
        return fail(ErrorCode::not_found, "audit segment " + pos_.segment + " (seq " +
                                              std::to_string(pos_.next_seq) +
                                              ") is gone and no later segment exists");
    auto first = first_seq(dir_, **after);
    if (!first) return std::unexpected(first.error());
    if (!*first) return fail(ErrorCode::not_found, "waiting for records in " + **after);
    if (**first < pos_.next_seq)
        return fail(ErrorCode::integrity, **after + " starts at seq " + std::to_string(**first) +
                                              ", before the export cursor's seq " +
                                              std::to_string(pos_.next_seq));
    uint64_t from = pos_.next_seq;
    pos_ = {**after, 0, **first};
    if (**first > from) report_gap({from, **first - 1, **first - from, kGapRetention});
    persist();
    return {};
}

// Skips the oldest unsent records while the unsent bytes exceed the bound.
Status AuditExporter::enforce_backlog(uint64_t durable) {
    auto segments = audit::list_segments(dir_);
    if (!segments) return std::unexpected(segments.error());
    auto number = audit::parse_segment_name(pos_.segment).value_or(0);
    uint64_t backlog = 0;
    for (const auto& s : *segments) {
        auto n = audit::parse_segment_name(s).value_or(0);
        if (n < number) continue;
        std::error_code ec;
        uint64_t size = fs::file_size(segment_path(dir_, s), ec);
        if (ec) continue;  // removed meanwhile
        backlog += n == number ? (size > pos_.offset ? size - pos_.offset : 0) : size;
    }
    if (backlog <= options_.max_backlog_bytes) return {};

    auto reader = SegmentReader::open(segment_path(dir_, pos_.segment), pos_.offset);
    if (!reader) return std::unexpected(reader.error());
    uint64_t from = pos_.next_seq;
    std::string_view line;
    // Never skips past the durable end: those records are not written yet.
    while (backlog > options_.max_backlog_bytes && pos_.next_seq < durable) {
        auto next = reader->next(line);
        if (!next) return std::unexpected(next.error());
        if (*next == SegmentReader::Next::line) {
            backlog -= std::min<uint64_t>(backlog, line.size() + 1);
            pos_.offset = reader->offset();
            pos_.next_seq += 1;
            continue;
        }
        if (*next == SegmentReader::Next::partial) break;  // export_batch reports it
        auto after = segment_after(dir_, pos_.segment);
        if (!after) return std::unexpected(after.error());
        if (!*after) break;
        auto moved = SegmentReader::open(segment_path(dir_, **after), 0);
        if (!moved) return std::unexpected(moved.error());
        *reader = std::move(*moved);
        pos_.segment = **after;
        pos_.offset = 0;
    }
    if (pos_.next_seq > from) {
        report_gap({from, pos_.next_seq - 1, pos_.next_seq - from, kGapBacklog});
        persist();
    }
    return {};
}

Result<uint64_t> AuditExporter::export_batch(Failure& failure) {
    failure = Failure::log;
    uint64_t durable = options_.durable_size();
    if (pos_.segment.empty()) {
        if (auto st = resolve_start(); !st) return std::unexpected(st.error());
        if (pos_.segment.empty()) return 0;  // no records yet
    }
    auto reader = SegmentReader::open(segment_path(dir_, pos_.segment), pos_.offset);
    if (!reader && reader.error().code == ErrorCode::not_found) {
        if (auto st = handle_missing_segment(); !st) {
            if (st.error().code == ErrorCode::integrity) failure = Failure::damage;
            return std::unexpected(st.error());
        }
        reader = SegmentReader::open(segment_path(dir_, pos_.segment), pos_.offset);
    }
    if (!reader) return std::unexpected(reader.error());
    if (pos_.next_seq < durable) {
        if (auto st = enforce_backlog(durable); !st) return std::unexpected(st.error());
        reader = SegmentReader::open(segment_path(dir_, pos_.segment), pos_.offset);
        if (!reader) return std::unexpected(reader.error());
    }

    Position p = pos_;
    std::vector<std::string> lines;
    std::string_view line;
    std::optional<Error> damage;
    while (lines.size() < options_.batch_max_records && p.next_seq < durable) {
        auto next = reader->next(line);
        if (!next) return std::unexpected(next.error());
        if (*next == SegmentReader::Next::end) {
            auto after = segment_after(dir_, p.segment);
            if (!after) return std::unexpected(after.error());
            if (!*after)
                return fail(
                    ErrorCode::not_found,
                    "durable audit record seq " + std::to_string(p.next_seq) + " is in no segment");
            auto moved = SegmentReader::open(segment_path(dir_, **after), 0);
            if (!moved) return std::unexpected(moved.error());
            *reader = std::move(*moved);
            p.segment = **after;
            p.offset = 0;
            continue;
        }
        std::string where = p.segment + " at byte " + std::to_string(p.offset);
        if (*next == SegmentReader::Next::partial) {
            damage = Error{ErrorCode::integrity, "torn audit record at " + where + " (seq " +
                                                     std::to_string(p.next_seq) +
                                                     " should be complete)"};
            break;
        }
        auto head = audit::scan_record_line(line);
        if (!head) {
            damage = Error{ErrorCode::integrity,
                           "unreadable audit record at " + where + ": " + head.error().message};
            break;
        }
        if (head->seq != p.next_seq) {
            damage = Error{ErrorCode::integrity, "audit record at " + where + " has seq " +
                                                     std::to_string(head->seq) + ", expected " +
                                                     std::to_string(p.next_seq)};
            break;
        }
        lines.emplace_back(line);
        p.offset = reader->offset();
        p.next_seq += 1;
    }
    // Damage ends the batch: the records before it are still delivered, and
    // the next batch starts at the damage and reports it.
    if (damage && lines.empty()) {
        failure = Failure::damage;
        return std::unexpected(*damage);
    }
    if (lines.empty()) {
        // Only a move to the next segment: remember it without sending.
        if (p.segment != pos_.segment) {
            pos_ = p;
            persist();
        }
        failure = Failure::none;
        return 0;
    }

    std::vector<std::string_view> views(lines.begin(), lines.end());
    failure = Failure::sink;
    if (auto sent = sink_->send(views); !sent) return std::unexpected(sent.error());
    if (auto confirmed = sink_->confirm(); !confirmed) return std::unexpected(confirmed.error());
    failure = Failure::none;
    pos_ = p;
    {
        std::lock_guard lock(mu_);
        stats_.exported += lines.size();
        stats_.connected = true;
        stats_.last_error.clear();
    }
    persist();
    return lines.size();
}

Result<uint64_t> AuditExporter::run_once() {
    if (auto st = check_options(); !st) return std::unexpected(st.error());
    {
        std::lock_guard lock(mu_);
        if (started_) return fail(ErrorCode::conflict, "audit export is running");
    }
    if (!loaded_) {
        if (auto st = load_cursor(); !st) return std::unexpected(st.error());
    }
    uint64_t total = 0;
    for (;;) {
        Failure failure = Failure::none;
        auto sent = export_batch(failure);
        if (!sent) {
            std::lock_guard lock(mu_);
            stats_.last_error = sent.error().describe();
            if (failure == Failure::sink) stats_.connected = false;
            if (failure == Failure::damage) stats_.halted = true;
            return std::unexpected(sent.error());
        }
        if (*sent == 0) return total;
        total += *sent;
    }
}

Status AuditExporter::start() {
    if (auto st = check_options(); !st) return st;
    {
        std::lock_guard lock(mu_);
        if (started_) return fail(ErrorCode::conflict, "audit export already started");
    }
    // Not under mu_: loading may run on_warning / on_gap, which may call stats().
    if (!loaded_) {
        if (auto st = load_cursor(); !st) return st;
    }
    std::lock_guard lock(mu_);
    started_ = true;
    stopping_ = false;
    worker_ = std::thread([this] { run(); });
    return {};
}

void AuditExporter::stop(std::chrono::milliseconds grace) {
    {
        std::lock_guard lock(mu_);
        if (!started_) return;
        if (!stopping_) {
            stopping_ = true;
            deadline_ = Clock::now() + grace;
        }
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    std::lock_guard lock(mu_);
    started_ = false;
}

void AuditExporter::wake() {
    {
        std::lock_guard lock(mu_);
        woken_ = true;
    }
    cv_.notify_all();
}

void AuditExporter::run() {
    int failures = 0;
    for (;;) {
        {
            std::lock_guard lock(mu_);
            if (stopping_ && Clock::now() >= deadline_) return;
            woken_ = false;
        }
        Failure failure = Failure::none;
        auto sent = export_batch(failure);
        if (sent) {
            failures = 0;
            if (*sent > 0 && outage_) {
                outage_ = false;
                if (options_.on_recovered) options_.on_recovered();
            }
            if (*sent > 0) continue;
            std::unique_lock lock(mu_);
            if (stopping_) return;  // drained
            cv_.wait_for(lock, options_.poll_interval, [&] { return stopping_ || woken_; });
            continue;
        }
        std::string reason = sent.error().describe();
        {
            std::lock_guard lock(mu_);
            stats_.last_error = reason;
            if (failure == Failure::sink) stats_.connected = false;
            if (failure == Failure::damage) stats_.halted = true;
        }
        if (failure == Failure::damage) {
            if (options_.on_halted) options_.on_halted(reason);
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_; });
            return;
        }
        if (failure == Failure::sink && !outage_) {
            outage_ = true;
            if (options_.on_unavailable) options_.on_unavailable(sink_->describe() + ": " + reason);
        }
        // Jittered exponential backoff: half the step fixed, half random, so
        // many agents do not return to a SIEM in lockstep.
        auto base = options_.retry_backoff_min.count();
        for (int i = 0; i < failures && base < options_.retry_backoff_max.count(); ++i) base *= 2;
        base = std::min<int64_t>(base, options_.retry_backoff_max.count());
        failures += 1;
        std::uniform_int_distribution<int64_t> jitter(0, base / 2);
        std::chrono::milliseconds delay{base - base / 2 + jitter(rng_)};
        std::unique_lock lock(mu_);
        if (stopping_) return;  // do not retry past stop
        cv_.wait_for(lock, delay, [&] { return stopping_; });
    }
}

AuditExporter::Stats AuditExporter::stats() const {
    uint64_t durable = options_.durable_size ? options_.durable_size() : 0;
    std::lock_guard lock(mu_);
    Stats s = stats_;
    s.lag_records = durable > s.next_seq ? durable - s.next_seq : 0;
    s.healthy = !s.halted && s.last_error.empty();
    return s;
}

}  // namespace sa::agent::siem
