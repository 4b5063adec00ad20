#pragma once
// The customer's policy: which verified jobs this agent runs, when, on which
// schemas and tables, and within which limits. The file is the customer's;
// nothing the hub sends can change it. A signed job that the policy does not
// allow is refused (reason codes in refusal_reasons.h) and never reaches a
// worker.
//
// File format (YAML, unknown keys are errors):
//   version: 1
//   max_concurrent_jobs: 4                 # optional, default 1, 1..64
//   rules:                                 # evaluated in file order
//     - name: nightly-catalog              # required, unique, [A-Za-z0-9_.-]{1,64}
//       sources: [warehouse, "crm-*"]      # exact names, "*", or a prefix ending in "*"
//       operations: [extract_metadata]     # extract_metadata test_connection preflight
//                                          # list_schemas
//       schemas: {include: [...], exclude: [...]}   # optional (see filters.h)
//       tables: {exclude: [...]}                    # optional
//       limits: {max_duration: 30m, max_objects: 100000, max_bytes: 1GiB}  # optional
//       windows:                           # optional; UTC; absent: any time
//         - {days: [mon, fri], from: "01:00", to: "05:00"}  # to < from wraps midnight
// Every error is one line "FILE: rules[1].windows[0].from: what is wrong".
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/jobs/filters.h"
#include "agent/jobs/job_verifier.h"
#include "common/result.h"

namespace sa::agent::jobs {

struct JobLimits {
    std::chrono::seconds max_duration{3600};  // 1 s .. 24 h
    int64_t max_objects = 0;                  // 0: unlimited
    int64_t max_bytes = 0;                    // 0: unlimited
};

// A UTC time-of-day window on some weekdays. days_mask bit d is set for
// weekday d, Monday = 0 .. Sunday = 6. Minutes since midnight: from_minute in
// 0..1439, to_minute in 0..1440 (1440 = "24:00"), never equal. When
// to_minute < from_minute the window wraps midnight and belongs to the day it
// starts on: {fri, 22:00, 02:00} is Friday 22:00 to Saturday 02:00.
struct TimeWindow {
    uint8_t days_mask = 0x7f;
    int from_minute = 0;
    int to_minute = 1440;
};

struct PolicyRule {
    std::string name;
    std::vector<std::string> sources;
    std::vector<std::string> operations;
    ObjectFilters filters;
    JobLimits limits;
    std::vector<TimeWindow> windows;  // empty: any time
};

struct Policy {
    int max_concurrent_jobs = 1;
    std::vector<PolicyRule> rules;
    std::string source_name;  // the file path, or "built-in default"
    std::string sha256_hex;   // of the file's bytes; empty for the built-in default
};

// Reads, checks and parses the file. Errors: not_found / permission_denied /
// io from reading; permission_denied when the file is writable by group or
// others (the customer owns it, nobody else may change it); invalid_argument
// for a file over 1 MiB or any content error (message as parse_policy's).
Result<Policy> load_policy_file(const std::string& path);

// Parses YAML text; file_name prefixes every error message. Errors:
// invalid_argument, one line naming the key path.
Result<Policy> parse_policy(std::string_view yaml, std::string_view file_name);

// The policy when none is configured: one rule "default" allowing every
// operation on every source ("*") at any time with default limits;
// max_concurrent_jobs 1.
Policy default_policy();

struct PolicyDecision {
    bool allowed = false;
    std::string rule;         // the rule that allowed or refused; "default-deny" when none matched
    std::string reason_code;  // empty when allowed
    std::string message;      // for humans; names the rule, source, operation; no secrets
    JobLimits limits;         // of the allowing rule
    std::vector<ObjectFilters> filters;  // the rule's filters, then the job's (the intersection
                                         // the worker applies)
};

// Rules are tried in file order; the first whose sources match the job's
// source, whose operations contain the job's operation and (if it has
// windows) one of whose windows contains now allows the job. Otherwise:
// outside_time_window if some rule would have allowed it but for its windows,
// operation_not_allowed if some rule names the source, else
// source_not_allowed. An allowed job is still refused (filter_outside_policy)
// when one of its include patterns is a plain name (only [A-Za-z0-9_$], or
// such a name between ^ and $) that the allowing rule's filters exclude;
// other job patterns are not compared with the rule's but intersected with
// them when the worker applies both.
PolicyDecision evaluate(const Policy& policy, const Job& job, int64_t now_unix_seconds);

// "mon,tue 01:00-05:00" (UTC implied), for messages and the audit log.
std::string describe(const TimeWindow& window);

}  // namespace sa::agent::jobs
