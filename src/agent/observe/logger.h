#pragma once
// JSON logger: one JSON object per line, to stderr by default:
//   {"ts":"2025-01-01T00:00:00.000Z","level":"info","msg":"...","agent_id":"edge-1",
//    "job_id":"...","lease_id":"...", ...fields}
// ts, level, msg and agent_id always come first, then job_id and lease_id
// when given, then the other fields. Thread-safe: each line is written
// whole. Fields are JSON values, and a SecretValue cannot become one (it has
// no conversion), so a secret cannot be logged by accident; messages that
// name secrets name their reference ("files/hub"), never the value.
#include <atomic>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sa::agent::observe {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

const char* to_string(Level level);

using Fields = nlohmann::json;  // an object (or null for none)

class Logger final {
  public:
    // Receives each complete line including the trailing '\n'.
    using Sink = std::function<void(std::string_view line)>;

    // sink empty: write(2) to stderr.
    Logger(std::string agent_id, Level min_level, Sink sink = {});

    void log(Level level, std::string_view msg, const Fields& fields = nullptr) const;
    void debug(std::string_view msg, const Fields& fields = nullptr) const {
        log(Level::debug, msg, fields);
    }
    void info(std::string_view msg, const Fields& fields = nullptr) const {
        log(Level::info, msg, fields);
    }
    void warn(std::string_view msg, const Fields& fields = nullptr) const {
        log(Level::warn, msg, fields);
    }
    void error(std::string_view msg, const Fields& fields = nullptr) const {
        log(Level::error, msg, fields);
    }

    bool enabled(Level level) const { return level >= min_level_.load(); }
    void set_level(Level level) { min_level_ = level; }

    // The line log() would write at time unix_ms (no trailing newline); for tests.
    std::string format(int64_t unix_ms, Level level, std::string_view msg,
                       const Fields& fields) const;

  private:
    std::string agent_id_;
    std::atomic<Level> min_level_;
    Sink sink_;
    mutable std::mutex mutex_;
};

}  // namespace sa::agent::observe
