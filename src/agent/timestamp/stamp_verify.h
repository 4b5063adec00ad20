#pragma once
// Offline check of the RFC 3161 timestamps stored next to an audit log
// (timestamps.jsonl, written by CheckpointStamper).
//
// Per token line: it parses strictly (canonical JSON, exactly the expected
// fields and types); a checkpoint line in checkpoints.jsonl has its tree_size
// and SHA-256 (of the line exactly as stored, without the newline); the
// token's imprint is that hash and its genTime is the stored gen_time; the
// genTime is not earlier than the checkpoint's ts minus 5 minutes of clock
// skew; and, when a TSA CA file is given, the token's signature chains to it
// (timeStamping purpose). Without a CA only the structure and the imprint are
// checked (signatures_checked = false): that proves nothing about time.
//
// The checkpoints' own signatures and the records are audit::verify_log's
// job; run both. The first damage found is reported with its exact position.
#include <cstdint>
#include <optional>
#include <string>

#include "common/result.h"

namespace sa::agent::timestamp {

enum class TimestampDamageKind {
    malformed,      // a line that is not a valid timestamp line
    bad_timestamp,  // a token that does not prove what it claims
};
const char* to_string(TimestampDamageKind kind);

struct TimestampDamage {
    TimestampDamageKind kind = TimestampDamageKind::malformed;
    std::string file;                   // timestamps.jsonl
    uint64_t line = 0;                  // 1-based
    std::optional<uint64_t> tree_size;  // when the line says which checkpoint
    std::string detail;
    // "<kind> at <file>:<line> (tree size N): <detail>"
    std::string describe() const;
};

struct TimestampReport {
    uint64_t tokens = 0;  // token lines checked
    bool signatures_checked = false;
    uint64_t last_stamped_tree_size = 0;  // largest tree size with a good token
    std::string last_gen_time;            // that token's genTime, RFC 3339 ("" when none)
    std::optional<TimestampDamage> damage;
    bool intact() const { return !damage.has_value(); }
};

// An absent timestamps.jsonl means no tokens (intact). Errors only when a
// file cannot be read or the CA file cannot be loaded; damage is in the report.
Result<TimestampReport> verify_timestamps(const std::string& audit_dir,
                                          const std::optional<std::string>& tsa_ca_file);

}  // namespace sa::agent::timestamp
