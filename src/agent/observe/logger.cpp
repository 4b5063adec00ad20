#include "agent/observe/logger.h"

#include <unistd.h>

#include <cerrno>

#include "agent/secrets/json_wipe.h"
#include "agent/secrets/secret_value.h"
#include "common/util/time.h"

namespace sa::agent::observe {
namespace {

// Never throws on invalid UTF-8 (log text may come from anywhere): such
// bytes are replaced.
std::string dump(const nlohmann::json& value) {
    return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A secret as dump() writes it inside a JSON string, so the redaction finds
// it there too; "" when escaping changes nothing (the raw search covers it).
// Built in one reserved buffer, which redact_live_secrets wipes: json::dump
// would copy every live secret through its serializer's stack buffer on
// every log line, and leave it there.
std::string json_escaped(std::string_view raw) {
    const size_t size = secrets::json_escaped_size(raw);
    if (size == raw.size()) return {};
    std::string out;
    out.reserve(size);
    secrets::append_json_escaped(out, raw);
    return out;
}

void write_stderr(std::string_view line) {
    size_t off = 0;
    while (off < line.size()) {
        const ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // nowhere left to report a logging failure
        off += static_cast<size_t>(n);
    }
}

}  // namespace

const char* to_string(Level level) {
    switch (level) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warn:
            return "warn";
        case Level::error:
            return "error";
    }
    return "info";
}

Logger::Logger(std::string agent_id, Level min_level, Sink sink)
    : agent_id_(std::move(agent_id)), min_level_(min_level), sink_(std::move(sink)) {
    if (!sink_) sink_ = &write_stderr;
}

std::string Logger::format(int64_t unix_ms, Level level, std::string_view msg,
                           const Fields& fields) const {
    std::string line = "{\"ts\":" + dump(util::rfc3339_millis(unix_ms)) +
                       ",\"level\":" + dump(to_string(level)) + ",\"msg\":" + dump(msg) +
                       ",\"agent_id\":" + dump(agent_id_);
    if (fields.is_object()) {
        for (const char* key : {"job_id", "lease_id"}) {
            if (auto it = fields.find(key); it != fields.end()) {
                line += ",\"" + std::string(key) + "\":" + dump(*it);
            }
        }
        for (auto it = fields.begin(); it != fields.end(); ++it) {
            const std::string& key = it.key();
            if (key == "job_id" || key == "lease_id" || key == "ts" || key == "level" ||
                key == "msg" || key == "agent_id") {
                continue;
            }
            line += "," + dump(key) + ":" + dump(it.value());
        }
    }
    line += "}";
    return line;
}

void Logger::log(Level level, std::string_view msg, const Fields& fields) const {
    if (!enabled(level)) return;
    std::string line = format(util::unix_millis(), level, msg, fields);
    // The SecretValue type keeps secrets out of fields; this catches one that
    // slipped into a message or an error text as plain bytes.
    secrets::redact_live_secrets(line, json_escaped);
    line += '\n';
    std::lock_guard lock(mutex_);
    sink_(line);
}

}  // namespace sa::agent::observe
