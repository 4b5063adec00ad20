#pragma once
// The agent-local fingerprint state of incremental runs (docs/jobs.md):
// which objects a source had at the last extraction the hub accepted, and
// each one's metadata::fingerprint. Never sent to the hub.
//
// Files (NDJSON, one JSON object per line, '\n' after every line):
//   STATE_DIR/fingerprints/<source>.ndjson   the state: a header line
//       {"job_id": "...", "filters_sha256": "<64 hex>"} then object lines
//   SPOOL/baseline.ndjson      object lines only (supervisor -> worker)
//   SPOOL/fingerprints.ndjson  object lines only (worker -> supervisor)
// An object line: {"object": "table"|"routine", "database", "schema",
// "name", "signature" ("" for tables), "fingerprint": "<64 lowercase hex>"}.
//
// Parsing is strict (exact keys and types, no duplicate object, no empty
// line): a file that does not parse is never half-used, the caller runs a
// full extraction instead.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/metadata/model.h"
#include "common/result.h"

namespace sa::agent::delivery {

inline constexpr const char* kFingerprintDir = "fingerprints";
inline constexpr const char* kBaselineFile = "baseline.ndjson";
inline constexpr const char* kFingerprintsFile = "fingerprints.ndjson";

struct FingerprintEntry {
    std::string object;  // "table" (any relation kind) | "routine"
    std::string database;
    std::string schema;
    std::string name;
    std::string signature;    // routines only; "" for tables
    std::string fingerprint;  // metadata::fingerprint of the record
    bool operator==(const FingerprintEntry&) const = default;
};

// The entry of a record the worker saw (a table or routine; never a removal).
FingerprintEntry entry_of(const metadata::Table& table);
FingerprintEntry entry_of(const metadata::Routine& routine);
// The removal record that says this object is gone.
metadata::Removal removal_of(const FingerprintEntry& entry);
// The object's identity, metadata::qualified_name with an empty source (the
// state is per source already).
std::string identity_of(const FingerprintEntry& entry);

// One object line, with its '\n'.
std::string entry_line(const FingerprintEntry& entry);
// Errors: invalid_argument naming the 1-based line and the field.
Result<FingerprintEntry> entry_from_json(const nlohmann::json& value, const std::string& where);
// Object lines only (baseline.ndjson, fingerprints.ndjson). Duplicate
// identities are an error. An empty text is an empty list.
Result<std::vector<FingerprintEntry>> parse_entries(std::string_view ndjson);

struct FingerprintState {
    std::string job_id;          // the job whose accepted completion this describes
    std::string filters_sha256;  // the effective filters of that job (lowercase hex)
    std::vector<FingerprintEntry> objects;
};

std::string serialize_state(const FingerprintState& state);
// Errors: invalid_argument (naming line and field) for anything but exactly
// the format above, with at least the header line.
Result<FingerprintState> parse_state(std::string_view text);

// STATE_DIR/fingerprints/<source>.ndjson; source is a configured source
// name ([A-Za-z0-9_.-]{1,128}, checked by the config).
std::string state_path(const std::string& state_dir, const std::string& source);
// not_found when there is no file; invalid_argument when it does not parse;
// io for other read errors.
Result<FingerprintState> read_state(const std::string& path);
// Atomically (temp + fsync + rename), mode 0600, creating the directory 0700.
Status write_state(const std::string& path, const FingerprintState& state);

}  // namespace sa::agent::delivery
