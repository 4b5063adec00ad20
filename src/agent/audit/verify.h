#pragma once
// Offline verification of an audit directory with only the agent's public key.
//
// Checked per record: it parses, is canonical, seq is dense from 0, and
// `prev` is the leaf hash of the record before. Per checkpoint: the signature
// (and key id) against the given public key, tree sizes never decrease, the
// root equals the Merkle root of the first tree_size records, and no
// checkpoint covers more records than the log holds.
//
// Retention (retention.h): the log may start at seq S > 0 and have gaps, but
// only where an anchor in retention.jsonl bridges exactly that gap: the
// Merkle tree continues from the anchor's frontier and record S's prev must
// equal the anchor's prev. Every anchor relied on needs an `audit.pruned`
// record with its range in the log; a gap without both is `removed`, as it
// always was. A forged frontier is `modified` (a later checkpoint's root
// does not match; the detail says the anchor may be forged). Checkpoints
// whose tree size falls in a removed range have their signatures checked but
// not their roots (checkpoints_before_retention). An anchor whose records are
// all still present (a pruning interrupted by a crash) must match them.
//
// The first damage found is reported with its kind and exact position. The
// verifier streams through the files: memory is O(log n) (a compact Merkle
// tree) plus the checkpoints and anchors themselves.
#include <cstdint>
#include <optional>
#include <string>

#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::audit {

enum class DamageKind {
    modified,       // a record's bytes changed (chain or checkpoint root no longer match)
    removed,        // records missing (seq gap)
    reordered,      // records out of order
    inserted,       // an extra record (duplicate seq / breaks the chain)
    truncated,      // fewer records than a signed checkpoint covers
    bad_signature,  // checkpoint signature invalid or by another key
    malformed,      // not a valid record / checkpoint line
};
const char* to_string(DamageKind kind);

struct Damage {
    DamageKind kind = DamageKind::malformed;
    std::string file;             // segment file name or checkpoints.jsonl
    uint64_t line = 0;            // 1-based; 0 when the file is absent
    std::optional<uint64_t> seq;  // record seq at that position, when known
    std::string detail;
    // "<kind> at <file>:<line> (seq N): <detail>"
    std::string describe() const;
};

struct VerifyReport {
    uint64_t records = 0;  // tree size: one past the last seq (removed records included)
    uint64_t checkpoints = 0;
    uint64_t checkpointed_size = 0;  // tree size of the last checkpoint
    std::string root;                // base64 Merkle root over all records read
    std::optional<Damage> damage;    // first damage found
    // Retention (added last so positional initialisers keep working).
    uint64_t first_seq = 0;                     // seq of the oldest record present
    uint64_t anchors = 0;                       // retention anchors relied on (gaps bridged)
    uint64_t removed_by_retention = 0;          // records in those gaps
    uint64_t checkpoints_before_retention = 0;  // checkpoints whose roots cover removed records
    bool intact() const { return !damage.has_value(); }
};

// Errors only when the directory cannot be read at all; damage is in the report.
Result<VerifyReport> verify_log(const std::string& dir, const crypto::Ed25519PublicKey& public_key);

}  // namespace sa::agent::audit
