#pragma once
// CheckpointStamper: RFC 3161 timestamps on the audit log's checkpoints.
//
// A timestamp on checkpoint N proves that every record up to N existed at the
// TSA's genTime, so the stamper only ever needs the NEWEST checkpoint: pending
// work coalesces to one checkpoint and the queue is bounded by construction.
//
// Contract:
// - submit() is cheap, non-blocking and thread-safe: it is meant for
//   audit::Options::on_checkpoint, on the audit log's writer thread.
// - One background thread hashes the checkpoint line exactly as stored in
//   checkpoints.jsonl (canonical_dump(to_json(cp)), without the newline),
//   asks the Timestamper and appends one canonical JSON line to
//   AUDIT_DIR/timestamps.jsonl (0600, O_APPEND, fdatasync'd):
//     {"checkpoint_sha256":B64,"gen_time":RFC3339,"token":B64 DER,"tree_size":N,"tsa":URL}
// - Failures (TSA unavailable, a bad reply, a failed write) are retried with
//   jittered exponential backoff; a bad reply is never stored. on_failure runs
//   once when stamping starts failing, on_recovered once when it works again
//   (both on the stamper's thread). The stamper writes no audit records itself:
//   a record per timestamp would cause a checkpoint per timestamp, forever.
// - open() cuts a torn last line off timestamps.jsonl (reported in warnings)
//   and queues the log's last checkpoint when it has no timestamp yet, so a
//   checkpoint left unstamped at shutdown is stamped on the next start.
// - close(grace) gives pending work until grace to get stamped, then stops the
//   thread. A TSA request still running then is cut short through
//   Options::abort (give the same flag to the HttpClient behind the
//   Timestamper); without it close() waits for that request's own timeout.
//
// Wiring (app): give the TsaClient an HttpClient of its own (HttpClient is one
// per thread) created with Options::abort; open the stamper BEFORE the audit
// log, with audit::Options::on_checkpoint = [&](auto& cp) { stamper->submit(cp); };
// at shutdown close the log first (its final checkpoint is submitted), then
// the stamper with a grace of a few seconds.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/audit/format.h"
#include "agent/timestamp/tsa_client.h"
#include "common/result.h"

namespace sa::agent::timestamp {

inline constexpr const char* kTimestampsFile = "timestamps.jsonl";

class CheckpointStamper final {
  public:
    struct Options {
        std::string tsa_url;  // recorded in each stored line ("tsa")
        std::chrono::milliseconds retry_min{1000};
        std::chrono::milliseconds retry_max{5 * 60 * 1000};
        // Once when stamping starts failing, with the reason (no secrets in it).
        std::function<void(const std::string& message)> on_failure;
        // Once when stamping works again after on_failure.
        std::function<void()> on_recovered;
        // Set to true by close() when its grace runs out, to stop a request in
        // flight. Not owned; may be null; must outlive the stamper.
        std::atomic<bool>* abort = nullptr;
    };

    struct Stats {
        uint64_t stamped = 0;    // tokens stored
        uint64_t failures = 0;   // failed attempts (unavailable, bad reply, write error)
        uint64_t coalesced = 0;  // checkpoints superseded by a newer one before being stamped
        bool pending = false;    // a checkpoint waits for (or is in) a TSA request
        bool failing = false;    // the last attempt failed
        uint64_t last_stamped_tree_size = 0;  // also from timestamps.jsonl at open
        std::string last_error;               // "" when none yet
    };

    struct Opened {
        std::unique_ptr<CheckpointStamper> stamper;
        std::vector<std::string> warnings;  // recovery actions, for the agent's log
    };

    // Opens (creating if needed) AUDIT_DIR/timestamps.jsonl and starts the
    // thread. timestamper must outlive the stamper. Errors: io.
    static Result<Opened> open(Timestamper& timestamper, const std::string& audit_dir,
                               Options options);

    ~CheckpointStamper();  // close(0)
    CheckpointStamper(const CheckpointStamper&) = delete;
    CheckpointStamper& operator=(const CheckpointStamper&) = delete;

    // Queues cp to be stamped, replacing an older pending one. Ignored when not
    // newer than what is pending or stamped, and after close().
    void submit(const audit::Checkpoint& cp);

    // Lets pending work be stamped for up to grace, then stops the thread.
    // Idempotent.
    void close(std::chrono::milliseconds grace);

    Stats stats() const;

    // Waits until pred(stats()) holds (checked on every change) or timeout
    // passes; returns whether it holds.
    bool wait_for(const std::function<bool(const Stats&)>& pred,
                  std::chrono::milliseconds timeout) const;

  private:
    using SteadyClock = std::chrono::steady_clock;
    struct Pending {
        uint64_t tree_size = 0;
        std::string line;  // the checkpoint line as stored, without newline
    };

    CheckpointStamper(Timestamper& timestamper, std::string dir, Options options, int fd,
                      uint64_t file_size, uint64_t last_stamped);
    void run();
    // Stamps one checkpoint and stores the token; error when either fails.
    Status stamp(const Pending& work);
    Status append_line(const std::string& line);
    std::chrono::milliseconds next_backoff();

    Timestamper& timestamper_;
    const std::string dir_;
    const Options options_;
    int fd_ = -1;                  // timestamps.jsonl, O_APPEND; only the thread writes
    uint64_t file_size_ = 0;       // bytes known good, to cut a failed write off again
    bool cut_needed_ = false;      // cutting a failed write off failed: retry first
    uint32_t failure_streak_ = 0;  // only the thread touches it and rng_
    std::mt19937_64 rng_;

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::optional<Pending> pending_;
    std::optional<uint64_t> in_flight_;  // tree size being stamped
    bool closing_ = false;
    bool finished_ = false;                   // the thread has left run()
    SteadyClock::time_point deadline_{};      // valid when closing_
    SteadyClock::time_point next_attempt_{};  // backoff
    Stats stats_;
    std::mutex close_mutex_;  // serializes close()
    std::thread thread_;
};

}  // namespace sa::agent::timestamp
