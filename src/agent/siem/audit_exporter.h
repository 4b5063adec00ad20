#pragma once
// AuditExporter: sends the audit log's records to a RecordSink (a SIEM over
// syslog, a JSON-lines file), at least once.
//
// The audit log itself is the spool: the exporter keeps a durable cursor into
// the audit segments and reads records from there; nothing is copied. The
// cursor file AUDIT_DIR/export-<name>.cursor holds canonical JSON
//   {"next_seq":N,"offset":BYTES,"segment":"segment-000003.jsonl"}
// (the line at `offset` of `segment` has seq N) and is replaced atomically
// only after the sink confirmed the records before it.
//
// Contract:
// - Only records with seq < Options::durable_size() are read: a line still
//   being written is never looked at.
// - At least once: a failed send or confirm rewinds to the last confirmed
//   cursor and tries again after a jittered backoff; duplicates are possible
//   (every record carries seq), losses are not, except as below.
// - Never silent: records are skipped only (a) when the unsent backlog (bytes
//   from the cursor to the end of the segments) exceeds max_backlog_bytes,
//   skipping the oldest so that it fits, or (b) when retention removed the
//   segment the cursor points into. Each skip calls on_gap once with the range
//   and reason and is counted in stats().
// - Damage is not skipped: a torn, unparseable or out-of-sequence line before
//   durable_size() halts the export (on_halted, stats().halted); it is for
//   `audit verify` to name, not for the exporter to write past.
// - Missing cursor: export from the start of the oldest segment. Corrupt
//   cursor: on_warning, then find the position by seq (or, without a
//   readable seq, start from the oldest segment). A cursor whose position does
//   not hold its seq is relocated by seq.
// - One worker thread (start/stop); callbacks run on it and must not call
//   stop(). stats() and wake() are thread-safe. run_once() is the synchronous
//   form (tests, a one-shot CLI) and must not be used while started.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "agent/siem/record_sink.h"
#include "common/result.h"

namespace sa::agent::siem {

// Records the exporter skipped: seqs first_seq..last_seq (count of them).
struct Gap {
    uint64_t first_seq = 0;
    uint64_t last_seq = 0;
    uint64_t count = 0;
    std::string reason;  // kGapBacklog or kGapRetention
};

inline constexpr const char* kGapBacklog = "backlog over max_backlog_bytes";
inline constexpr const char* kGapRetention = "segment removed by retention";

class AuditExporter final {
  public:
    struct Options {
        std::string name = "siem";  // cursor file export-<name>.cursor; [A-Za-z0-9_-]{1,64}
        uint64_t max_backlog_bytes = 256ull << 20;
        size_t batch_max_records = 500;
        std::chrono::milliseconds poll_interval{200};
        std::chrono::milliseconds retry_backoff_min{1000};
        std::chrono::milliseconds retry_backoff_max{60000};
        // Required: the number of durable records (AuditLog::durable_size).
        std::function<uint64_t()> durable_size;
        std::function<void(const Gap&)> on_gap;
        // Once per outage of the sink, with the reason; on_recovered once when
        // a batch is delivered again.
        std::function<void(const std::string& reason)> on_unavailable;
        std::function<void()> on_recovered;
        // Cursor problems and cursor write failures (export continues).
        std::function<void(const std::string& message)> on_warning;
        // The export stopped because the audit log is damaged (see above).
        std::function<void(const std::string& reason)> on_halted;
    };

    struct Stats {
        uint64_t exported = 0;         // records confirmed by the sink (duplicates included)
        uint64_t gaps = 0;             // on_gap calls
        uint64_t skipped_records = 0;  // records in those gaps
        uint64_t next_seq = 0;         // the cursor
        uint64_t lag_records = 0;      // durable records not exported yet
        bool connected = false;        // the last send/confirm succeeded
        bool healthy = true;           // connected (or idle) and not halted
        bool halted = false;
        std::string last_error;  // "" when the last attempt succeeded
    };

    // Does no work; start() or run_once() loads the cursor.
    AuditExporter(std::string audit_dir, RecordSinkPtr sink, Options options);
    ~AuditExporter();  // stop()
    AuditExporter(const AuditExporter&) = delete;
    AuditExporter& operator=(const AuditExporter&) = delete;

    // Loads the cursor and starts the worker. invalid_argument for bad
    // options, conflict when already started, io when the cursor cannot be read.
    Status start();
    // Stops the worker: it keeps exporting for at most `grace` while records
    // are pending and the sink works (a write in progress may take up to the
    // sink's own timeout), then returns. Idempotent.
    void stop(std::chrono::milliseconds grace = std::chrono::milliseconds{0});
    // New durable records: look now instead of at the next poll.
    void wake();

    // Exports everything durable now, synchronously; the number of records
    // sent. Errors as the worker would meet them (the cursor stays at the
    // last confirmed batch); they are returned, not passed to on_unavailable
    // / on_recovered / on_halted (on_gap and on_warning do run).
    Result<uint64_t> run_once();

    Stats stats() const;
    std::string cursor_path() const;

  private:
    struct Position {
        std::string segment;  // "" until resolved (no cursor and no records yet)
        uint64_t offset = 0;
        uint64_t next_seq = 0;
    };
    enum class Failure { none, sink, log, damage };

    Status check_options() const;
    Status load_cursor();
    Status read_cursor();
    Status relocate(uint64_t seq, const std::string& why);
    Status resolve_start();
    Status handle_missing_segment();
    Status enforce_backlog(uint64_t durable);
    Result<uint64_t> export_batch(Failure& failure);
    void report_gap(const Gap& gap);
    void persist();
    void warn(const std::string& message);
    void run();

    std::string dir_;
    RecordSinkPtr sink_;
    Options options_;

    // Worker state (the worker thread, or the run_once caller).
    Position pos_;
    bool loaded_ = false;
    bool outage_ = false;
    std::mt19937_64 rng_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    Stats stats_;
    bool started_ = false;
    bool stopping_ = false;
    bool woken_ = false;
    std::chrono::steady_clock::time_point deadline_;
    std::thread worker_;
};

}  // namespace sa::agent::siem
