#pragma once
// Inclusion and consistency proofs (RFC 9162 algorithms) for an audit
// directory, as self-contained JSON documents a third party can check with
// the agent's public key:
//   {"kind":"inclusion","index":N,"tree_size":T,"leaf_hash":b64,"root":b64,
//    "proof":[b64...],"record":"<the record line>","checkpoint":{...}}
//   {"kind":"consistency","tree_size_1":S1,"tree_size_2":S2,"root_1":b64,
//    "root_2":b64,"proof":[b64...],"checkpoint_1":{...},"checkpoint_2":{...}}
// Proofs are made against signed checkpoints only: inclusion against the
// latest one, consistency between two checkpoint sizes.
//
// On a log pruned by retention (retention.h) the nodes left of a kept run's
// first seq S come from its anchor's frontier, so proofs keep working for
// records >= S and for consistency from a size >= S; the proof format and
// verify_proof are unchanged. For a record in a run followed by a gap (a
// preserved segment) the inclusion proof is made against the latest
// checkpoint that ends within that run.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/crypto/ed25519.h"
#include "common/result.h"

namespace sa::agent::audit {

// not_found when there is no checkpoint, or "record N was removed by
// retention on TS" for a removed record (or when no checkpoint can prove it
// without removed records); invalid_argument when index is not covered by
// the latest checkpoint; integrity when the records no longer match the
// checkpoint's root.
Result<nlohmann::json> inclusion_proof(const std::string& dir, uint64_t index);
// invalid_argument unless 0 < size1 <= size2 and both are checkpoint sizes.
Result<nlohmann::json> consistency_proof(const std::string& dir, uint64_t size1, uint64_t size2);

// Checks a proof document: the Merkle proof itself, the record against its
// leaf hash (when present) and, when public_key is given, the checkpoint
// signature(s) and that they sign the proof's root(s). integrity error saying
// what failed; invalid_argument for a malformed document.
Status verify_proof(const nlohmann::json& proof, const crypto::Ed25519PublicKey* public_key);

}  // namespace sa::agent::audit
