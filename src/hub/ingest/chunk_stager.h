#pragma once
// Parses uploaded chunks while the agent is still extracting, so that a
// completion finds its chunks parsed and only has to commit them.
//
// Why: parsing and re-serialising a large delivery (tens of MB of NDJSON)
// took about half of the hub's time at completion, after the agent had
// finished; done on arrival it overlaps the extraction instead.
//
// Contract:
// - prepare_chunk() is THE parse of a chunk for the catalog; the stager
//   only runs it earlier. A completion that finds no staged result runs
//   it itself, so staging changes when the work happens, never the outcome.
// - submit() copies nothing it does not keep: it takes the body by value.
//   A chunk is staged only while the staged bytes (bodies queued plus
//   chunks parsed and not yet taken, each counted at its body size) stay
//   within Options::max_staged_bytes; otherwise submit() returns false and
//   the completion parses that chunk from the store.
// - take() hands a staged result out once, for exactly (job, seq, sha256):
//   a re-uploaded chunk with another digest never matches an old parse. A
//   chunk still queued is parsed on the caller's thread; one being parsed
//   is waited for.
// - Results of jobs that never complete are dropped by drop(job) (the
//   ingest calls it when a job fails or succeeds) or, failing that, after
//   Options::max_age.
//
// Thread safety: all methods are safe from any thread; one background
// thread parses, joined by the destructor.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/metadata/model.h"
#include "common/result.h"

namespace sa::hub::ingest {

// A record as the catalog stores it: the parsed record, its canonical JSON
// (metadata::serialize) and its fingerprint (metadata::fingerprint).
struct PreparedRecord {
    metadata::Record record;
    std::string text;
    std::string fingerprint;
};

// Adds each record's canonical JSON and fingerprint.
std::vector<PreparedRecord> prepare_records(std::vector<metadata::Record> records);

// Parses one chunk (metadata::parse_chunk) and prepares its records.
// Errors: invalid_argument naming the line and field (the chunk is bad).
Result<std::vector<PreparedRecord>> prepare_chunk(std::string_view ndjson);

class ChunkStager final {
  public:
    struct Options {
        int64_t max_staged_bytes = int64_t{512} << 20;
        std::chrono::milliseconds max_age{std::chrono::hours(1)};
    };
    struct Stats {
        int64_t staged_bytes = 0;  // currently charged against max_staged_bytes
        int64_t entries = 0;       // chunks queued, being parsed or parsed
        int64_t refused = 0;       // submits over the budget, since start
        int64_t expired = 0;       // entries dropped by max_age, since start
    };

    ChunkStager();
    explicit ChunkStager(Options options);
    ~ChunkStager();
    ChunkStager(const ChunkStager&) = delete;
    ChunkStager& operator=(const ChunkStager&) = delete;

    // Queues body for parsing. False when it was not staged (over budget);
    // true also when the same (job, seq, sha256) is already staged.
    bool submit(const std::string& job_id, int64_t seq, const std::string& sha256_hex,
                std::string body);

    // The staged parse of (job, seq, sha256), removed from the stager;
    // nullopt when that chunk is not staged (never, evicted, or another digest).
    std::optional<Result<std::vector<PreparedRecord>>> take(const std::string& job_id, int64_t seq,
                                                            const std::string& sha256_hex);

    // Forgets every chunk of job_id (a parse in progress finishes and is discarded).
    void drop(const std::string& job_id);

    Stats stats() const;

  private:
    enum class State { queued, parsing, parsed };
    struct Entry {
        std::string sha256;
        State state = State::queued;
        std::string body;  // until parsed
        std::optional<Result<std::vector<PreparedRecord>>> result;
        int64_t charge = 0;
        std::chrono::steady_clock::time_point submitted;
        uint64_t generation = 0;  // tells a re-submitted entry from a dropped one
    };
    using Key = std::pair<std::string, int64_t>;  // job id, seq

    void run();
    void expire_locked(std::chrono::steady_clock::time_point now);
    void erase_locked(std::map<Key, Entry>::iterator it);

    Options options_;
    mutable std::mutex mutex_;
    std::condition_variable work_ready_;
    std::condition_variable parsed_;
    std::map<Key, Entry> entries_;
    std::deque<std::pair<Key, uint64_t>> queue_;
    uint64_t next_generation_ = 1;
    Stats stats_;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace sa::hub::ingest
