#include "agent/config/jobs_section.h"

#include "agent/config/yaml_reader.h"

namespace sa::agent::config {

using yaml::error_at;
using yaml::Map;
using yaml::parse_byte_count;
using yaml::parse_int;

namespace {

void parse_sandbox(const YAML::Node& node, const std::string& path, SandboxSection& out) {
    Map sandbox(node, path, {"mode", "memory", "cpu_seconds", "open_files", "file_size"});
    if (auto mode = sandbox.optional_string("mode")) {
        if (*mode != "strict" && *mode != "best_effort") {
            error_at(sandbox.at("mode"), "must be strict or best_effort");
        }
        out.strict = *mode == "strict";
    }
    // Below these floors a worker cannot even load its libraries: a typo, not a choice.
    if (sandbox.has("memory")) {
        out.memory_bytes =
            parse_byte_count(sandbox.get("memory"), 256ll << 20, 1ll << 40, sandbox.at("memory"));
        if (out.memory_bytes == 0) error_at(sandbox.at("memory"), "must not be 0");
    }
    if (sandbox.has("cpu_seconds")) {
        out.cpu_seconds =
            parse_int(sandbox.get("cpu_seconds"), 1, 86400, sandbox.at("cpu_seconds"));
    }
    if (sandbox.has("open_files")) {
        out.open_files = parse_int(sandbox.get("open_files"), 16, 65536, sandbox.at("open_files"));
    }
    if (sandbox.has("file_size")) {
        out.file_size_bytes = parse_byte_count(sandbox.get("file_size"), 16ll << 20, 1ll << 40,
                                               sandbox.at("file_size"));
        if (out.file_size_bytes == 0) error_at(sandbox.at("file_size"), "must not be 0");
    }
}

}  // namespace

void parse_jobs_section(const YAML::Node& node, const std::string& path, Config& config) {
    Map jobs(node, path,
             {"policy_file", "workers", "heartbeat_interval_seconds", "cancel_grace_seconds",
              "clock_skew_seconds", "watchdog_seconds", "worker_executable", "sandbox"});
    JobsSection& out = config.jobs;
    out.policy_file = jobs.optional_string("policy_file");
    if (jobs.has("workers"))
        out.workers = parse_int(jobs.get("workers"), 1, 64, jobs.at("workers"));
    if (jobs.has("heartbeat_interval_seconds")) {
        out.heartbeat_interval_seconds = parse_int(jobs.get("heartbeat_interval_seconds"), 1, 300,
                                                   jobs.at("heartbeat_interval_seconds"));
    }
    if (jobs.has("cancel_grace_seconds")) {
        out.cancel_grace_seconds =
            parse_int(jobs.get("cancel_grace_seconds"), 1, 300, jobs.at("cancel_grace_seconds"));
    }
    if (jobs.has("clock_skew_seconds")) {
        out.clock_skew_seconds =
            parse_int(jobs.get("clock_skew_seconds"), 0, 300, jobs.at("clock_skew_seconds"));
    }
    if (jobs.has("watchdog_seconds")) {
        out.watchdog_seconds =
            parse_int(jobs.get("watchdog_seconds"), 10, 3600, jobs.at("watchdog_seconds"));
    }
    out.worker_executable = jobs.optional_string("worker_executable");
    if (out.worker_executable && out.worker_executable->front() != '/') {
        error_at(jobs.at("worker_executable"), "must be an absolute path");
    }
    if (jobs.has("sandbox")) parse_sandbox(jobs.get("sandbox"), jobs.at("sandbox"), out.sandbox);
}

}  // namespace sa::agent::config
