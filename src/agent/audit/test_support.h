#pragma once
// Test helpers for the audit tests: a temp directory, an agent key, and
// line-level access to segment and checkpoint files for tampering.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "agent/audit/audit_log.h"
#include "agent/audit/format.h"
#include "agent/identity/agent_key.h"
#include "common/crypto/random.h"
#include "common/testing/temp_dir.h"

namespace sa::agent::audit::testing {

namespace fs = std::filesystem;

using sa::testing::TempDir;

inline identity::AgentKey make_key(const fs::path& state) {
    auto key = identity::AgentKey::load_or_create(state.string());
    if (!key) throw std::runtime_error(key.error().describe());
    return std::move(*key);
}

inline std::vector<std::string> read_lines(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
    return lines;
}

inline void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    for (const auto& l : lines) out << l << '\n';
}

inline std::string read_all(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline Options test_options(uint64_t checkpoint_every = 1000) {
    Options o;
    o.agent_id = "edge-1";
    o.batch_interval_ms = 1;
    o.checkpoint_every_records = checkpoint_every;
    o.checkpoint_interval_ms = 60000;
    return o;
}

}  // namespace sa::agent::audit::testing
