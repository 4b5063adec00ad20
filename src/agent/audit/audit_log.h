#pragma once
// AuditLog: the agent's append-only, tamper-evident audit log (writer side).
//
// Contract:
// - append() is thread-safe and cheap: it assigns seq and the hash chain under
//   a lock and enqueues; one writer thread does group commit (write the batch,
//   fdatasync, then mark durable) at most every batch_interval_ms.
// - append_durable() returns once its record is on disk; flush() once every
//   record queued before the call is.
// - Checkpoints (Merkle tree size + root, signed with the agent key) are
//   appended to checkpoints.jsonl and fsynced every checkpoint_every_records
//   records, every checkpoint_interval_ms when there are new records, and at
//   close(). A checkpoint only ever covers durable records.
// - Fail closed: the first write/fsync error puts the log in a failed state
//   (failure_reason()); bytes of the failed batch are cut off again, every
//   later append returns an error and Options::on_failure runs once, on the
//   writer thread, so the owner can stop leasing jobs and turn /readyz red.
// - open() recovers: a torn tail (last line without newline, unparseable, or
//   breaking the chain) is truncated away, reported in Opened::warnings and
//   recorded as an `audit.recovered` record. Damage anywhere else is refused
//   (integrity error): that is tampering for `audit verify` to name, not
//   something to write past.
// - Secret values are never recorded: there is deliberately no overload that
//   takes a SecretValue. Use hmac() for sensitive but non-secret values.
// - Segments rotate at segment_max_bytes and (rotate_daily) at the first
//   record of a new UTC day, so retention works in whole days.
// - Retention (retention_days > 0): on the writer thread, shortly after open
//   and then every prune_interval_ms, whole segments whose newest record is
//   older than now - retention_days are removed; never the active (last)
//   segment, never a preserved one (retention.h). Crash-safe order, for each
//   kept run of records that follows removed ones: (a) an anchor (first seq,
//   prev, compact Merkle frontier) is appended to retention.jsonl and synced;
//   (b) an `audit.pruned` record {segments, first_seq, last_seq, count,
//   oldest_ts, newest_ts, retention_days} is made durable; (c) the files are
//   unlinked (newest first) and the directory synced. open() finishes an
//   interrupted pruning (writes the missing record, removes the files left).
//   The log stays verifiable (verify.h) and provable (proof.h) from the
//   oldest remaining record. Retention problems fail the log closed like
//   write errors: a retention that silently stops is a compliance breach.
//
// RFC 3161 timestamping and SIEM export hook in where a checkpoint / a batch
// becomes durable (writer thread); the salt may come from the secret store
// (Options::hasher).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/audit/field_hasher.h"
#include "agent/audit/format.h"
#include "agent/identity/agent_key.h"
#include "common/result.h"

namespace sa::agent::audit {

// Wall clock for record and checkpoint timestamps (a test seam).
class Clock {
  public:
    virtual ~Clock() = default;
    virtual int64_t now_millis() const = 0;  // Unix milliseconds
};

class SystemClock final : public Clock {
  public:
    int64_t now_millis() const override;
};

struct Options {
    std::string agent_id;                      // required; actor default "agent:<id>"
    uint64_t segment_max_bytes = 64ull << 20;  // rotate before exceeding this
    uint32_t batch_interval_ms = 5;            // group commit pacing
    uint64_t checkpoint_every_records = 1000;
    uint32_t checkpoint_interval_ms = 10000;
    // Called once, on the writer thread, with the reason when the log fails.
    std::function<void(const std::string& reason)> on_failure;
    // Called on the writer thread after each checkpoint is durable: the seam
    // for RFC 3161 timestamping and SIEM export (later increments). It may
    // append(), but must not call append_durable()/flush(): those wait for this
    // very thread. Keep it short; it delays the next group commit.
    std::function<void(const Checkpoint& checkpoint)> on_checkpoint;

    // Also start a new segment at the first record of a new UTC day.
    bool rotate_daily = true;
    // Remove whole segments whose newest record is older than this many days;
    // 0 keeps everything. The config layer enforces 30..365; any value >= 1
    // works here.
    uint32_t retention_days = 0;
    uint32_t prune_interval_ms = 3600 * 1000;
    uint32_t prune_first_delay_ms = 5000;  // the first pruning after open
    // Called on the writer thread after a pruning removed `segments`; records
    // [first_seq, last_seq] are now missing there (the gap its anchor
    // bridges, which may include records an earlier pruning removed). Same
    // rules as on_checkpoint: it may append(), never append_durable()/flush().
    std::function<void(const std::vector<std::string>& segments, uint64_t first_seq,
                       uint64_t last_seq)>
        on_pruned;
    // Test seam: 1 = stop a pruning after step (a), 2 = after step (b), as a
    // crash there would (the log keeps running). 0 in production.
    int prune_stop_after_step = 0;
    // The salt of hmac() values when it comes from a secret store
    // (FieldHasher::from_secret); null: DIR/hmac.salt, created when absent.
    // Either way open() binds the directory to that salt source and refuses
    // (conflict) a directory written with another (bind_salt_source()).
    std::shared_ptr<const FieldHasher> hasher;
};

struct PruneResult {
    std::vector<std::string> removed;  // segment names, oldest first
    uint64_t records = 0;              // records they held
};

struct AppendContext {
    std::string job_id;    // omitted from the record when empty
    std::string trace_id;  // omitted from the record when empty
    std::string actor;     // default "agent:<agent_id>"
};

class AuditLog final {
  public:
    struct Opened {
        std::unique_ptr<AuditLog> log;
        std::vector<std::string> warnings;  // recovery actions, for the agent's log
    };

    // Opens (creating if needed, mode 0700) the audit directory `dir`. The key
    // and clock must outlive the log; clock defaults to the system clock.
    static Result<Opened> open(const std::string& dir, Options options,
                               const identity::AgentKey& key, const Clock* clock = nullptr);

    ~AuditLog();  // close()
    AuditLog(const AuditLog&) = delete;
    AuditLog& operator=(const AuditLog&) = delete;

    // Enqueues a record; returns its seq. invalid_argument for an empty type,
    // non-object fields, floats or invalid UTF-8; io when the log has failed;
    // conflict after close().
    Result<uint64_t> append(std::string_view type, nlohmann::json fields,
                            const AppendContext& context = {});
    // Like append(), but returns only once the record is durable.
    Result<uint64_t> append_durable(std::string_view type, nlohmann::json fields,
                                    const AppendContext& context = {});
    // Waits until everything appended so far is durable.
    Status flush();
    // Drains the queue, writes a final checkpoint (when there are new
    // records) and stops the writer. Idempotent. Error when the log failed.
    Status close();
    // Runs a pruning now on the writer thread and waits for it (the periodic
    // one runs by itself; this is for tests and an operator command). Nothing
    // is removed when retention_days is 0. Errors as for append().
    Result<PruneResult> prune_now();

    // "hmac-sha256:" + base64(HMAC-SHA256(salt, value)).
    std::string hmac(std::string_view value) const;

    bool failed() const;
    std::string failure_reason() const;
    // Number of records written (= next durable seq; retention may have
    // removed the oldest of them since).
    uint64_t durable_size() const;
    const std::string& dir() const;

  private:
    struct Impl;
    explicit AuditLog(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sa::agent::audit
