// Audit log throughput: durable appends per second (group commit) and
// offline verification in MB/s, each printed with a reference measured in
// the same process on the same machine:
//   append  vs. writing the same bytes with write() and one fdatasync per
//           batch of the same size (what the disk allows for this pattern),
//   verify  vs. SHA-256 over the same bytes in memory (the floor of the
//           hashing any verifier must do).
//
// Usage: audit_bench [RECORDS] (default 200000)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/audit/audit_log.h"
#include "agent/audit/verify.h"
#include "agent/identity/agent_key.h"
#include "common/crypto/digest.h"
#include "common/crypto/random.h"
#include "common/util/files.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t dir_bytes(const fs::path& dir, const char* prefix) {
    uint64_t total = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().rfind(prefix, 0) == 0) total += e.file_size();
    }
    return total;
}

int fail(const std::string& what) {
    std::fprintf(stderr, "audit_bench: %s\n", what.c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    const long records = argc > 1 ? std::atol(argv[1]) : 200000;
    if (records <= 0) return fail("RECORDS must be positive");
    fs::path dir = fs::temp_directory_path() / ("sa-audit-bench-" + sa::crypto::random_token(6));
    fs::create_directories(dir);
    auto key = sa::agent::identity::AgentKey::load_or_create(dir.string());
    if (!key) return fail(key.error().describe());

    // --- durable append rate ---
    sa::agent::audit::Options options;
    options.agent_id = "bench-agent";
    auto opened = sa::agent::audit::AuditLog::open((dir / "audit").string(), options, *key);
    if (!opened) return fail(opened.error().describe());
    auto& log = *opened->log;
    nlohmann::json fields = {{"store", "files"},
                             {"path", log.hmac("db/warehouse")},
                             {"purpose", "source credential"},
                             {"chunk", 17},
                             {"sha256", std::string(64, 'a')}};
    auto start = Clock::now();
    for (long i = 0; i < records; ++i) {
        auto seq = log.append("secret.accessed", fields, {.job_id = "5f0c7e0e-job"});
        if (!seq) return fail(seq.error().describe());
    }
    if (auto st = log.flush(); !st) return fail(st.error().describe());
    double append_s = seconds_since(start);
    if (auto st = log.close(); !st) return fail(st.error().describe());
    uint64_t bytes = dir_bytes(dir / "audit", "segment-");
    double append_rate = static_cast<double>(records) / append_s;

    // Reference: the same bytes, written in batches of the same average size
    // as the log's group commits would be at this rate, each made durable.
    const size_t line = bytes / static_cast<uint64_t>(records);
    const long per_batch =
        std::max<long>(1, static_cast<long>(append_rate * 0.005));  // 5 ms batches
    std::string batch(static_cast<size_t>(per_batch) * line, 'x');
    int fd =
        ::open((dir / "reference.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fail("cannot create the reference file");
    start = Clock::now();
    for (long written = 0; written < records; written += per_batch) {
        if (::write(fd, batch.data(), batch.size()) != static_cast<ssize_t>(batch.size())) {
            return fail("reference write failed");
        }
        ::fdatasync(fd);
    }
    double reference_s = seconds_since(start);
    ::close(fd);
    double reference_rate = static_cast<double>(records) / reference_s;

    // --- verify rate ---
    auto pub = key->public_key();
    start = Clock::now();
    auto report = sa::agent::audit::verify_log((dir / "audit").string(), pub);
    double verify_s = seconds_since(start);
    if (!report) return fail(report.error().describe());
    if (!report->intact()) return fail("log does not verify: " + report->damage->describe());
    double verify_mbs = static_cast<double>(bytes) / 1e6 / verify_s;

    std::string all;
    all.reserve(bytes);
    for (const auto& e : fs::directory_iterator(dir / "audit")) {
        if (e.path().filename().string().rfind("segment-", 0) != 0) continue;
        auto text = sa::util::read_file(e.path().string());
        if (text) all += *text;
    }
    start = Clock::now();
    std::string digest = sa::crypto::sha256(all);
    double sha_s = seconds_since(start);
    double sha_mbs = static_cast<double>(all.size()) / 1e6 / sha_s;

    std::printf("records=%ld bytes=%llu avg_record_bytes=%zu\n", records,
                static_cast<unsigned long long>(bytes), line);
    std::printf(
        "append_durable_records_per_s=%.0f reference_write_fdatasync_records_per_s=%.0f "
        "ratio=%.2f\n",
        append_rate, reference_rate, append_rate / reference_rate);
    std::printf("verify_mb_per_s=%.1f reference_sha256_mb_per_s=%.1f ratio=%.2f\n", verify_mbs,
                sha_mbs, verify_mbs / sha_mbs);
    fs::remove_all(dir);
    return digest.size() == 32 ? 0 : 1;
}
