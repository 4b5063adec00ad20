#pragma once
// Names that cross the wire or the command line (app, source, agent ids).
// They end up in logs, SQL parameters and file-free identifiers, so they are
// restricted to a small alphabet instead of being escaped everywhere.
#include <algorithm>
#include <cstddef>
#include <string_view>

namespace sa::hub::wire {

inline constexpr size_t kMaxAppName = 64;
inline constexpr size_t kMaxSourceName = 128;
inline constexpr size_t kMaxAgentId = 128;

// [A-Za-z0-9_.-]{1,max}
inline bool is_valid_name(std::string_view s, size_t max) {
    if (s.empty() || s.size() > max) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
    });
}

// Agent ids are chosen by the customer (host names, pod names): printable
// ASCII without spaces, 1..kMaxAgentId.
inline bool is_valid_agent_id(std::string_view s) {
    if (s.empty() || s.size() > kMaxAgentId) return false;
    return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// A job id named by an agent (the "delta" baseline of a completion). The hub
// makes UUIDs; anything printable is accepted so that a wrong id is reported
// as baseline_mismatch, but nothing that could upset a terminal or a log.
inline constexpr size_t kMaxJobId = 128;
inline bool is_valid_job_id(std::string_view s) {
    return is_valid_agent_id(s) && s.size() <= kMaxJobId;
}

}  // namespace sa::hub::wire
