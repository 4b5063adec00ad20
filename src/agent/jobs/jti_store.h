#pragma once
// The set of job ids (jti) this agent has accepted, remembered until the job
// itself would be refused as expired, so that a leased job runs at most once
// even across restarts.
//
// On disk: an append-only file of lines "EXP JTI\n" (EXP in Unix seconds,
// JTI without whitespace or control characters), created with mode 0600.
// remember() appends and fsyncs before it returns, so a job accepted before a
// crash is still known after it. open() tolerates damage instead of stopping
// the agent: a line cut short by a crash mid-append, or a malformed line
// anywhere, is counted and skipped (and a cut-short last line is trimmed so
// the next append starts on a fresh line). When the file holds more than
// twice the live entries and over 1000 lines it is rewritten atomically
// (temporary file, fsync, rename).
//
// Not thread-safe: the owner (JobVerifier) serialises calls.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace sa::agent::jobs {

class JtiStore final {
  public:
    // What open() found, for a log line at startup.
    struct LoadStats {
        size_t loaded = 0;     // live entries read
        size_t expired = 0;    // entries dropped because they had expired
        size_t bad_lines = 0;  // malformed or cut-short lines skipped
    };

    // Remembers in memory only (nothing survives a restart). Entries live
    // until EXP + grace_seconds.
    explicit JtiStore(int64_t grace_seconds = 0);

    // Opens (creating it, and its directory with mode 0700, if missing) the
    // file at path and loads the entries still live at now: those with
    // EXP + grace_seconds >= now. Errors: io / permission_denied when the file
    // cannot be opened, read or repaired.
    static Result<JtiStore> open(const std::string& path, int64_t now, int64_t grace_seconds);

    JtiStore(JtiStore&&) noexcept;
    JtiStore& operator=(JtiStore&&) noexcept;
    JtiStore(const JtiStore&) = delete;
    JtiStore& operator=(const JtiStore&) = delete;
    ~JtiStore();

    // Drops entries with EXP + grace_seconds < now (memory only; the file is
    // cleaned by compaction).
    void forget_expired(int64_t now);
    bool contains(const std::string& jti) const { return by_jti_.contains(jti); }

    // Remembers jti until exp (+ grace). With a file: appended and fsynced
    // before returning; may compact the file. Errors: invalid_argument for a
    // jti that is empty, longer than 1024 bytes or contains whitespace or
    // control characters; io when the append or fsync fails (the entry is
    // then not remembered in memory either, and the store stays unusable:
    // the owner should reopen it, which repairs a cut-short line).
    Status remember(const std::string& jti, int64_t exp);

    // True when the jti can be written as one line of the file.
    static bool valid_jti(std::string_view jti);

    const LoadStats& load_stats() const { return stats_; }
    size_t live_entries() const { return by_jti_.size(); }
    size_t file_lines() const { return file_lines_; }
    bool persistent() const { return !path_.empty(); }
    bool broken() const { return broken_; }

  private:
    Status append_line(const std::string& line);
    Status compact_if_needed();
    void insert(const std::string& jti, int64_t exp);

    std::string path_;  // empty: memory only
    int fd_ = -1;       // O_APPEND descriptor of path_
    int64_t grace_seconds_ = 0;
    bool broken_ = false;
    size_t file_lines_ = 0;
    LoadStats stats_;
    std::map<std::string, int64_t> by_jti_;             // jti -> exp
    std::set<std::pair<int64_t, std::string>> by_exp_;  // same entries, oldest exp first
};

}  // namespace sa::agent::jobs
