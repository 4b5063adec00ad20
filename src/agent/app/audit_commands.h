#pragma once
// `secure-agent audit ...`: offline tools over an audit directory, callable
// without the CLI layer (tests). They need no agent config and no private
// key: verification uses only the agent's public key (STATE/agent.pub.pem).
// Exit codes as in commands.h: 0 ok, 1 damage / failed check, 2 bad input.
#include <cstdint>
#include <iosfwd>
#include <string>

#include "agent/app/commands.h"  // kExitOk, kExitFailure, kExitConfig

namespace sa::agent::app {

// Record text is untrusted: text with control characters (newlines, escapes)
// is shown JSON-escaped so a record cannot forge lines of a command's output.
std::string printable(const std::string& text);

// `audit verify --dir DIR --public-key FILE`: one summary line on out when
// intact; otherwise "audit verify: <kind> at <file>:<line> (seq N): <detail>"
// on err and exit 1.
// With tsa_ca_file, every RFC 3161 token in timestamps.jsonl must verify
// against it; without, tokens are checked for structure and imprint only and
// the summary says their signatures were not checked.
int audit_verify(const std::string& dir, const std::string& public_key_file, std::ostream& out,
                 std::ostream& err, const std::string& tsa_ca_file = {});

// `audit prove --dir DIR --index N`: inclusion proof JSON against the latest
// checkpoint.
int audit_prove_inclusion(const std::string& dir, uint64_t index, std::ostream& out,
                          std::ostream& err);
// `audit prove --dir DIR --from S1 --to S2`: consistency proof JSON between
// two checkpoint sizes.
int audit_prove_consistency(const std::string& dir, uint64_t from, uint64_t to, std::ostream& out,
                            std::ostream& err);

// `audit verify-proof --proof FILE [--public-key FILE]`: without a key only
// the Merkle proof is checked (and the output says so).
int audit_verify_proof(const std::string& proof_file, const std::string& public_key_file,
                       std::ostream& out, std::ostream& err);

struct AuditShowFilter {
    std::string job_id;  // exact match when not empty
    std::string type;    // exact match, or prefix match when it ends in '*'
    std::string since;   // RFC 3339; records at or after it
};
// `audit show --dir DIR [--job ID] [--type T] [--since RFC3339]`: one line per
// record: "<ts> #<seq> <type> <actor> [job=..] [trace=..] key=value ...".
int audit_show(const std::string& dir, const AuditShowFilter& filter, std::ostream& out,
               std::ostream& err);

struct AuditPreserveRequest {
    std::string segment;  // one segment by name, or
    std::string job_id;   // every segment holding this job's records, and/or
    std::string since;    // RFC 3339: segments with records in [since, until]
    std::string until;
    std::string reason;  // required when marking
    bool list = false;   // only list what is preserved
};
// `audit preserve --dir DIR (--segment NAME | --job ID | --since T [--until T])
// --reason TEXT`: marks segments so retention never removes them (for an
// incident); `--list` shows the marks. One line per segment.
int audit_preserve(const std::string& dir, const AuditPreserveRequest& request, std::ostream& out,
                   std::ostream& err);
// `audit unpreserve --dir DIR --segment NAME`: retention may remove it again.
int audit_unpreserve(const std::string& dir, const std::string& segment, std::ostream& out,
                     std::ostream& err);

// `audit hash --dir DIR [--config FILE] VALUE`: the HMAC form of VALUE, as
// records store it. The salt is DIR/hmac.salt, or, when config_path is given
// and that config has audit.hmac_salt, read from its secret store (local and
// remote stores are built as the agent builds them; the read is not in the
// audit log, which this command does not open). Either way it must be the
// salt DIR's records were made with (audit::bind_salt_source): a directory
// whose salt comes from a store, given without --config, is refused with a
// hint. Exit codes: 0, 2 (no usable salt, config error, conflict).
int audit_hash(const std::string& dir, const std::string& value, std::ostream& out,
               std::ostream& err, const std::string& config_path = "");

}  // namespace sa::agent::app
