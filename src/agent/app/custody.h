#pragma once
// `secure-agent audit custody --job ID`: the chain of custody of one job, read
// back from the audit log and checked link by link.
//
// The chain, in log order (one "attempt" per job.received; a job leased again
// after an interrupted attempt has several):
//   received   job.received: the signed job exactly as it arrived (its JWS and
//              SHA-256); with the hub's job-signing key the signature is
//              checked again and must name this job
//   verified   job.verified (jti, source, operation match the signed job) —
//              or job.refused, which ends the chain with the refusal reason
//   started    job.started, for the verified source
//   chunks     delivery.chunk: seq 0..n-1 without gaps, each with a digest
//   finished   job.finished: succeeded with the chunk count and chunk-list
//              Merkle root (delivery::chunks_root) recomputed from the chunk
//              records — or failed with its reason
//   accepted   delivery.accepted names the same count and root — or
//              delivery.refused
// The log itself is verified first (records, chain, checkpoint signatures):
// custody read from a damaged log proves nothing.
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "agent/app/commands.h"  // kExitOk, kExitFailure, kExitConfig
#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::app {

struct CustodyLink {
    std::string name;  // received, verified, refused, started, chunks, finished, accepted, ...
    uint64_t first_seq = 0;
    uint64_t last_seq = 0;
    std::string ts;
    bool ok = true;
    std::string detail;
};

struct CustodyAttempt {
    std::vector<CustodyLink> links;
    // complete | refused | failed | incomplete | broken
    std::string status;
};

struct CustodyReport {
    std::string job_id;
    std::optional<std::string> log_damage;  // verify_log's finding, when the log is damaged
    std::vector<CustodyAttempt> attempts;
    uint64_t records = 0;            // records of this job
    uint64_t last_seq = 0;           // of this job's newest record
    uint64_t checkpointed_size = 0;  // the log's latest signed checkpoint
    bool signature_checked = false;  // the signed job was re-verified with the hub's key
    // The last attempt's status, or "broken" when the log or any link is
    // broken, or "not_found".
    std::string status;
    // true for complete, refused and failed: a consistent chain that ended.
    bool consistent() const;
};

// job_key: the hub's job-signing public key (optional). Errors only when the
// directory cannot be read; everything found is in the report.
Result<CustodyReport> check_custody(const std::string& dir,
                                    const crypto::Ed25519PublicKey& agent_key,
                                    const std::string& job_id,
                                    const crypto::Ed25519PublicKey* job_key);

struct CustodyOptions {
    std::string dir;
    std::string public_key_file;  // the agent's public key
    std::string job_id;
    std::string job_key_file;  // optional: the hub's job-signing public key
    bool json = false;
};

// Prints the chain (text or JSON). Exit 0 for a consistent chain that ended
// (complete, refused or failed), 1 when it is broken, incomplete or absent,
// 2 for bad input (unreadable key or directory).
int audit_custody(const CustodyOptions& options, std::ostream& out, std::ostream& err);

}  // namespace sa::agent::app
