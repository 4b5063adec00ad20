#pragma once
// Test support: checks metadata records against the published JSON Schema
// (docs/metadata-model.schema.json) with an independent validator
// (scripts/validate-metadata, Python's jsonschema), so that what the agent
// produces and what the schema promises cannot drift apart.
#include <string>
#include <string_view>
#include <vector>

#include "common/metadata/model.h"

namespace sa::metadata::testing {

// Empty when the validator can run here; else why not (for GTEST_SKIP).
std::string schema_check_skip_reason();

// One verdict per non-empty line of ndjson, in order: "ok" or
// "invalid: <path>: <reason>". Errors: the validator could not run.
Result<std::vector<std::string>> check_against_schema(std::string_view ndjson);

// Serialises records as a chunk would and checks them.
Result<std::vector<std::string>> check_against_schema(const std::vector<Record>& records);

}  // namespace sa::metadata::testing
