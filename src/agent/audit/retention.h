#pragma once
// Retention of the audit log: whole segments older than the retention period
// are removed without making the rest unverifiable, and segments kept for an
// incident ("preserved") are never removed.
//
// AUDIT_DIR/retention.jsonl holds one anchor per kept run of records that
// follows removed records (canonical JSON, one per line, append-only):
//   {"first_seq":S,"prev":"<base64 leaf hash of S-1>","frontier":[b64...],
//    "removed":["segment-000001.jsonl",...],"removed_first_seq":A,
//    "removed_last_seq":B,"ts":"..."}
// frontier is the compact Merkle tree state at size S: the roots of the
// maximal perfect subtrees covering [0, S), leftmost (largest) first, one per
// set bit of S. With it, the tree over the kept records S, S+1, ... continues
// exactly as if the removed ones were still there, so later checkpoints
// still verify and proofs for kept records still work.
// [A, B] (B = S - 1) is the whole gap of missing records the anchor bridges:
// the records this pruning removed plus an adjacent gap left by an earlier
// one (so verify needs one anchor per gap). `removed` names only the segments
// removed by this pruning. Every anchor a verifier relies on must be matched
// by an `audit.pruned` record in the log with fields first_seq = A and
// last_seq = B: deleting segments by hand, even with a made-up anchor, is
// reported as `removed`.
//
// A segment is preserved while `segment-NNNNNN.jsonl.preserved` exists
// (JSON {"reason":..., "ts":...}, mode 0600); list_segments ignores it.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace sa::agent::audit {

inline constexpr const char* kRetentionFile = "retention.jsonl";
inline constexpr const char* kPreservedSuffix = ".preserved";
inline constexpr const char* kPrunedEventType = "audit.pruned";

struct RetentionAnchor {
    uint64_t first_seq = 0;
    std::string prev;                   // base64 of the 32-byte leaf hash of first_seq - 1
    std::vector<std::string> frontier;  // base64 of 32-byte node hashes
    std::vector<std::string> removed;   // segment names removed by this pruning
    uint64_t removed_first_seq = 0;     // A
    uint64_t removed_last_seq = 0;      // B = first_seq - 1
    std::string ts;                     // when the pruning happened (RFC 3339)
};
nlohmann::json to_json(const RetentionAnchor& anchor);
// Strict: canonical JSON, every field present and well-formed, the frontier
// has one hash per set bit of first_seq, A <= B = first_seq - 1.
// invalid_argument saying what is wrong.
Result<RetentionAnchor> parse_anchor_line(std::string_view line);

struct LoadedAnchor {
    RetentionAnchor anchor;
    uint64_t line = 0;  // 1-based line in retention.jsonl
};
// All anchors in dir (an absent file means none). invalid_argument naming the
// line for a line that does not parse or is incomplete.
Result<std::vector<LoadedAnchor>> read_anchors(const std::string& dir);

struct PreservedSegment {
    std::string segment;  // segment file name
    std::string reason;
    std::string ts;  // when it was marked
};
// Marks a segment (a file name as list_segments returns it) as preserved:
// retention never removes it. not_found when there is no such segment;
// invalid_argument for a name that is not a segment name. Re-marking replaces
// the reason.
Status preserve_segment(const std::string& dir, const std::string& segment,
                        const std::string& reason);
// Ends the preservation (no error when it was not preserved).
Status unpreserve_segment(const std::string& dir, const std::string& segment);
// Preserved segments in dir, in segment order (markers whose segment is gone
// are listed too: they say something was meant to be kept).
Result<std::vector<PreservedSegment>> list_preserved(const std::string& dir);
bool is_preserved(const std::string& dir, const std::string& segment);

// Which segments hold records of a job and/or records in a time range (both
// ends inclusive, Unix milliseconds); every given criterion must hold for the
// same record. For `audit preserve --job ID` / `--since/--until`.
struct SegmentQuery {
    std::string job_id;  // "" = any
    std::optional<int64_t> since_millis;
    std::optional<int64_t> until_millis;
};
Result<std::vector<std::string>> segments_for(const std::string& dir, const SegmentQuery& query);

// "2026-11-29T09:54:51.902Z" -> Unix milliseconds; nullopt for anything else
// (the writer's exact format: UTC, milliseconds).
std::optional<int64_t> parse_rfc3339_millis(std::string_view ts);

}  // namespace sa::agent::audit
