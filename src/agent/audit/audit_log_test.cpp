#include "agent/audit/audit_log.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "agent/audit/test_support.h"
#include "agent/audit/verify.h"

namespace sa::agent::audit {
namespace {

using namespace testing;
using nlohmann::json;

class AuditLogTest : public ::testing::Test {
  protected:
    AuditLogTest() : key_(make_key(tmp_.path() / "state")) {}
    std::string dir() const { return (tmp_.path() / "state" / "audit").string(); }
    fs::path segment(uint64_t n = 1) const { return fs::path(dir()) / segment_name(n); }

    std::unique_ptr<AuditLog> open_log(Options o, std::vector<std::string>* warnings = nullptr) {
        auto opened = AuditLog::open(dir(), std::move(o), key_);
        if (!opened) {
            ADD_FAILURE() << opened.error().describe();
            return nullptr;
        }
        if (warnings) *warnings = opened->warnings;
        return std::move(opened->log);
    }

    VerifyReport verify() {
        auto report = verify_log(dir(), key_.public_key());
        EXPECT_TRUE(report) << report.error().describe();
        return report ? *report : VerifyReport{};
    }

    std::vector<Record> records() {
        std::vector<Record> out;
        auto st = for_each_line(dir(), [&](const Position&, std::string_view line, bool) {
            auto r = parse_record_line(line);
            EXPECT_TRUE(r) << line;
            if (r) out.push_back(*r);
            return true;
        });
        EXPECT_TRUE(st);
        return out;
    }

    TempDir tmp_;
    identity::AgentKey key_;
};

TEST_F(AuditLogTest, ConcurrentAppendsRoundTripCanonicalAndDense) {
    auto log = open_log(test_options(100));
    ASSERT_TRUE(log);
    constexpr int kThreads = 4;
    constexpr int kPerThread = 250;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                json fields{{"thread", t}, {"i", i}, {"name", "x\"y\\z\u00e9"}};
                auto r = (i % 50 == 0)
                             ? log->append_durable("test.event", fields, {"job-1", "tr-1", ""})
                             : log->append("test.event", fields);
                ASSERT_TRUE(r) << r.error().describe();
            }
        });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(log->flush());
    EXPECT_EQ(log->durable_size(), uint64_t{kThreads * kPerThread});
    ASSERT_TRUE(log->close());

    auto recs = records();
    ASSERT_EQ(recs.size(), size_t{kThreads * kPerThread});
    for (size_t i = 0; i < recs.size(); ++i) {
        EXPECT_EQ(recs[i].seq, i);
        EXPECT_EQ(recs[i].agent_id, "edge-1");
        EXPECT_EQ(recs[i].actor, "agent:edge-1");
        EXPECT_EQ(recs[i].type, "test.event");
        EXPECT_EQ(recs[i].ts.size(), 24u) << recs[i].ts;  // 2026-01-02T03:04:05.678Z
    }
    EXPECT_EQ(recs[0].prev, "");
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.records, 1000u);
    EXPECT_GE(report.checkpoints, 1u);  // one per batch that crossed 100 new records
    EXPECT_EQ(report.checkpointed_size, 1000u);
}

TEST_F(AuditLogTest, RecordCarriesCorrelationIds) {
    auto log = open_log(test_options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append_durable("job.started", {{"rows", 3}}, {"job-7", "trace-9", "hub:ops"}));
    ASSERT_TRUE(log->close());
    auto lines = read_lines(segment());
    ASSERT_EQ(lines.size(), 1u);
    auto r = parse_record_line(lines[0]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->job_id, "job-7");
    EXPECT_EQ(r->trace_id, "trace-9");
    EXPECT_EQ(r->actor, "hub:ops");
    EXPECT_EQ(r->fields, (json{{"rows", 3}}));
    EXPECT_EQ(lines[0].find(' '), std::string::npos);
}

TEST_F(AuditLogTest, RefusesFloatsBadUtf8EmptyTypeAndNonObjectFields) {
    auto log = open_log(test_options());
    ASSERT_TRUE(log);
    auto f = log->append("x.y", {{"ratio", 0.5}});
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(f.error().message.find("/fields/ratio"), std::string::npos);
    EXPECT_FALSE(log->append("x.y", {{"nested", {{"list", json::array({1, 2.25})}}}}));
    EXPECT_FALSE(log->append("x.y", {{"bad", std::string("\xff\xfe")}}));
    EXPECT_FALSE(log->append("", json::object()));
    EXPECT_FALSE(log->append("x.y", json::array({1})));
    // A refused record consumes no seq.
    auto ok = log->append_durable("x.y", nullptr);
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 0u);
    ASSERT_TRUE(log->close());
    EXPECT_TRUE(verify().intact());
}

TEST_F(AuditLogTest, ReopenContinuesSeqAndChain) {
    {
        auto log = open_log(test_options(4));
        ASSERT_TRUE(log);
        for (int i = 0; i < 10; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());
    }
    std::vector<std::string> warnings;
    auto log = open_log(test_options(4), &warnings);
    ASSERT_TRUE(log);
    EXPECT_TRUE(warnings.empty());
    auto seq = log->append_durable("a.c", json::object());
    ASSERT_TRUE(seq);
    EXPECT_EQ(*seq, 10u);
    ASSERT_TRUE(log->close());
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.records, 11u);
    EXPECT_EQ(report.checkpointed_size, 11u);
}

TEST_F(AuditLogTest, RotatesSegmentsAtTheConfiguredSize) {
    Options o = test_options(7);
    o.segment_max_bytes = 1000;
    auto log = open_log(o);
    ASSERT_TRUE(log);
    for (int i = 0; i < 100; ++i)
        ASSERT_TRUE(log->append("rot.test", {{"i", i}, {"pad", std::string(50, 'p')}}));
    ASSERT_TRUE(log->close());
    auto segments = list_segments(dir());
    ASSERT_TRUE(segments);
    EXPECT_GT(segments->size(), 5u);
    for (const auto& s : *segments) EXPECT_LE(fs::file_size(fs::path(dir()) / s), 1000u) << s;
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.records, 100u);
}

TEST_F(AuditLogTest, CheckpointsOnTimerWhenThereAreNewRecords) {
    Options o = test_options(1000000);
    o.checkpoint_interval_ms = 20;
    auto log = open_log(o);
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append_durable("timer.test", json::object()));
    // Wait (bounded) for the writer's interval checkpoint; no fixed sleep.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (read_lines(fs::path(dir()) / kCheckpointsFile).empty() &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    auto cps = read_checkpoints(dir());
    ASSERT_TRUE(cps);
    ASSERT_EQ(cps->size(), 1u);
    EXPECT_EQ((*cps)[0].tree_size, 1u);
    EXPECT_TRUE(verify_checkpoint((*cps)[0], key_.public_key()));
    ASSERT_TRUE(log->close());
    // No new records since: close adds no checkpoint.
    EXPECT_EQ(read_lines(fs::path(dir()) / kCheckpointsFile).size(), 1u);
}

TEST_F(AuditLogTest, OnCheckpointSeesEveryDurableCheckpoint) {
    std::vector<Checkpoint> seen;  // written by the writer thread, read after close()
    Options o = test_options(5);
    o.on_checkpoint = [&](const Checkpoint& cp) { seen.push_back(cp); };
    auto log = open_log(o);
    ASSERT_TRUE(log);
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(log->append_durable("a.b", {{"i", i}}));
    ASSERT_TRUE(log->close());
    auto cps = read_checkpoints(dir());
    ASSERT_TRUE(cps);
    ASSERT_EQ(seen.size(), cps->size());
    ASSERT_EQ(seen.size(), 3u);  // 5, 10, and 12 at close
    for (size_t i = 0; i < seen.size(); ++i) {
        EXPECT_EQ(seen[i].tree_size, (*cps)[i].tree_size);
        EXPECT_EQ(seen[i].root, (*cps)[i].root);
        EXPECT_EQ(seen[i].signature, (*cps)[i].signature);
    }
}

TEST_F(AuditLogTest, AppendAfterCloseIsRefused) {
    auto log = open_log(test_options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->close());
    auto r = log->append("a.b", json::object());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::conflict);
    EXPECT_TRUE(log->close());
}

TEST_F(AuditLogTest, SecondWriterIsRefused) {
    auto log = open_log(test_options());
    ASSERT_TRUE(log);
    auto second = AuditLog::open(dir(), test_options(), key_);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::conflict);
    ASSERT_TRUE(log->close());
    log.reset();
    EXPECT_TRUE(AuditLog::open(dir(), test_options(), key_));
}

TEST_F(AuditLogTest, HmacUsesTheDirectorySalt) {
    auto log = open_log(test_options());
    ASSERT_TRUE(log);
    std::string h = log->hmac("db-admin");
    EXPECT_TRUE(h.starts_with("hmac-sha256:"));
    EXPECT_EQ(h.find("db-admin"), std::string::npos);
    EXPECT_EQ(h, log->hmac("db-admin"));
}

void write_torn_tail(const fs::path& segment, const std::string& tail) {
    std::ofstream out(segment, std::ios::binary | std::ios::app);
    out << tail;
}

TEST_F(AuditLogTest, TornPartialLastLineIsDroppedWithWarningAndRecorded) {
    {
        auto log = open_log(test_options(5));
        ASSERT_TRUE(log);
        for (int i = 0; i < 12; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());
    }
    const std::string torn = "{\"actor\":\"agent:edge-1\",\"agent_id\":\"ed";
    write_torn_tail(segment(), torn);
    // Before recovery the verifier names the torn line.
    auto before = verify();
    ASSERT_FALSE(before.intact());
    EXPECT_EQ(before.damage->kind, DamageKind::malformed);
    EXPECT_EQ(before.damage->line, 13u);

    std::vector<std::string> warnings;
    auto log = open_log(test_options(5), &warnings);
    ASSERT_TRUE(log);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find(std::to_string(torn.size()) + " bytes"), std::string::npos)
        << warnings[0];
    EXPECT_NE(warnings[0].find("segment-000001.jsonl:13"), std::string::npos) << warnings[0];
    ASSERT_TRUE(log->close());

    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    auto recs = records();
    ASSERT_EQ(recs.size(), 13u);
    EXPECT_EQ(recs[12].type, "audit.recovered");
    EXPECT_EQ(recs[12].fields["dropped_bytes"], torn.size());
    EXPECT_EQ(recs[12].fields["file"], "segment-000001.jsonl");
}

TEST_F(AuditLogTest, CompleteButBrokenLastLineIsDropped) {
    {
        auto log = open_log(test_options());
        ASSERT_TRUE(log);
        for (int i = 0; i < 3; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());
    }
    // A line that parses but does not continue the chain (e.g. garbage after a crash).
    auto lines = read_lines(segment());
    std::string bogus = lines[1];  // seq 1 again: wrong seq at the very end
    write_torn_tail(segment(), bogus + "\n");
    std::vector<std::string> warnings;
    auto log = open_log(test_options(), &warnings);
    ASSERT_TRUE(log);
    ASSERT_EQ(warnings.size(), 1u);
    ASSERT_TRUE(log->close());
    EXPECT_TRUE(verify().intact());
    EXPECT_EQ(records().back().type, "audit.recovered");
}

TEST_F(AuditLogTest, DamageBeforeTheTailRefusesToOpen) {
    {
        auto log = open_log(test_options());
        ASSERT_TRUE(log);
        for (int i = 0; i < 5; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());
    }
    auto lines = read_lines(segment());
    lines.erase(lines.begin() + 2);
    write_lines(segment(), lines);
    auto opened = AuditLog::open(dir(), test_options(), key_);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, ErrorCode::integrity);
    EXPECT_NE(opened.error().message.find("segment-000001.jsonl:3"), std::string::npos)
        << opened.error().message;
}

TEST_F(AuditLogTest, CheckpointedLastRecordIsNeverCutOff) {
    {
        auto log = open_log(test_options());
        ASSERT_TRUE(log);
        for (int i = 0; i < 3; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());  // checkpoint covers all 3
    }
    auto lines = read_lines(segment());
    lines[2].replace(lines[2].find("\"i\":2"), 5, "\"i\":7");
    write_lines(segment(), lines);
    const std::string before = read_all(segment());
    auto opened = AuditLog::open(dir(), test_options(), key_);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, ErrorCode::integrity);
    EXPECT_EQ(read_all(segment()), before);  // the evidence stays for `audit verify`
    EXPECT_NE(opened.error().message.find("checkpoint"), std::string::npos);

    // Unparseable instead of altered: still not treated as a torn write.
    lines[2] = "{}";
    write_lines(segment(), lines);
    const std::string garbage = read_all(segment());
    opened = AuditLog::open(dir(), test_options(), key_);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, ErrorCode::integrity);
    EXPECT_EQ(read_all(segment()), garbage);
}

TEST_F(AuditLogTest, TornCheckpointLineIsDropped) {
    {
        auto log = open_log(test_options(2));
        ASSERT_TRUE(log);
        for (int i = 0; i < 4; ++i) ASSERT_TRUE(log->append("a.b", {{"i", i}}));
        ASSERT_TRUE(log->close());
    }
    write_torn_tail(fs::path(dir()) / kCheckpointsFile, "{\"agent_id\":\"edg");
    std::vector<std::string> warnings;
    auto log = open_log(test_options(2), &warnings);
    ASSERT_TRUE(log);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("checkpoints.jsonl"), std::string::npos);
    ASSERT_TRUE(log->close());
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
}

// The child appends in a tight loop and reports every seq append_durable
// acknowledged; the parent SIGKILLs it mid-stream, reopens and verifies.
TEST_F(AuditLogTest, SigkillDuringAppendsKeepsAcknowledgedRecordsAndVerifies) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    Options o = test_options(300);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(fds[0]);
        auto opened = AuditLog::open(dir(), o, key_);
        if (!opened) ::_exit(3);
        for (uint64_t i = 0;; ++i) {
            for (int j = 0; j < 50; ++j)
                (void)opened->log->append("test.load", {{"i", i}, {"j", j}});
            auto seq = opened->log->append_durable("test.ack", {{"i", i}});
            if (!seq) ::_exit(4);
            uint64_t s = *seq;
            if (::write(fds[1], &s, sizeof s) != sizeof s) ::_exit(5);
        }
    }
    ::close(fds[1]);
    uint64_t acked = 0;
    uint64_t max_acked = 0;
    uint64_t s = 0;
    // Kill once enough acknowledgements show heavy appends are under way.
    while (acked < 40 && ::read(fds[0], &s, sizeof s) == sizeof s) {
        ++acked;
        max_acked = std::max(max_acked, s);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
    while (::read(fds[0], &s, sizeof s) == sizeof s) max_acked = std::max(max_acked, s);
    ::close(fds[0]);
    ASSERT_EQ(acked, 40u);

    std::vector<std::string> warnings;
    auto log = open_log(o, &warnings);
    ASSERT_TRUE(log);
    EXPECT_GT(log->durable_size(), max_acked);
    ASSERT_TRUE(log->close());
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_GT(report.records, max_acked);
    auto recs = records();
    ASSERT_GT(recs.size(), max_acked);
    EXPECT_EQ(recs[max_acked].type, "test.ack");
}

// RLIMIT_FSIZE makes writes fail part-way (SIGXFSZ ignored, so write returns
// EFBIG): the log must fail closed and leave only whole records behind.
TEST_F(AuditLogTest, FailsClosedWhenWritesFail) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        std::atomic<int> calls{0};
        Options o = test_options(20);
        o.on_failure = [&](const std::string&) { calls.fetch_add(1); };
        auto opened = AuditLog::open(dir(), o, key_);
        if (!opened) ::_exit(3);
        auto& log = opened->log;
        rlimit rl{32 * 1024, 32 * 1024};
        if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(4);
        bool failed = false;
        for (int i = 0; i < 100000 && !failed; ++i) {
            for (int j = 0; j < 9; ++j)
                (void)log->append("test.fill", {{"pad", std::string(100, 'x')}});
            failed = !log->append_durable("test.fill", {{"i", i}, {"pad", std::string(200, 'x')}});
        }
        if (!failed) ::_exit(5);
        if (!log->failed() || log->failure_reason().empty()) ::_exit(6);
        if (log->append("after.failure", json::object())) ::_exit(7);
        if (log->append_durable("after.failure", json::object())) ::_exit(8);
        if (log->flush()) ::_exit(9);
        if (log->close()) ::_exit(10);
        ::_exit(calls.load() == 1 ? 0 : 11);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);

    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_GT(report.records, 0u);
    EXPECT_GT(report.checkpoints, 0u);
    // Whatever was on disk is whole: the log reopens without recovery.
    std::vector<std::string> warnings;
    auto log = open_log(test_options(20), &warnings);
    ASSERT_TRUE(log);
    EXPECT_TRUE(warnings.empty());
    ASSERT_TRUE(log->close());
    EXPECT_TRUE(verify().intact());
}

}  // namespace
}  // namespace sa::agent::audit
