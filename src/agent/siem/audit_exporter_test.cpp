#include "agent/siem/audit_exporter.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <set>

#include "agent/audit/audit_log.h"
#include "agent/audit/test_support.h"
#include "agent/secrets/file_secret_store.h"
#include "agent/secrets/secret_stores.h"
#include "agent/siem/json_lines_sink.h"
#include "agent/siem/rsyslog_harness.h"
#include "agent/siem/syslog_record_sink.h"
#include "common/util/files.h"

namespace sa::agent::siem {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using audit::testing::read_lines;
using harness::wait_until;

uint64_t seq_of(std::string_view line) {
    auto record = audit::parse_record_line(line);
    EXPECT_TRUE(record) << line;
    return record ? record->seq : UINT64_MAX;
}

// A sink the test can take down; confirmed lines are what "arrived".
class FakeSink final : public RecordSink {
  public:
    struct State {
        std::mutex mu;
        bool down = false;
        std::vector<std::string> pending;
        std::vector<std::string> delivered;
        std::vector<uint64_t> seqs() {
            std::lock_guard lock(mu);
            std::vector<uint64_t> out;
            for (const auto& l : delivered) out.push_back(seq_of(l));
            return out;
        }
    };
    explicit FakeSink(std::shared_ptr<State> state) : state_(std::move(state)) {}
    Status send(std::span<const std::string_view> lines) override {
        std::lock_guard lock(state_->mu);
        if (state_->down) return fail(ErrorCode::unavailable, "fake SIEM down");
        for (auto l : lines) state_->pending.emplace_back(l);
        return {};
    }
    Status confirm() override {
        std::lock_guard lock(state_->mu);
        if (state_->down) {
            state_->pending.clear();  // what was in flight is lost
            return fail(ErrorCode::unavailable, "fake SIEM down");
        }
        for (auto& l : state_->pending) state_->delivered.push_back(std::move(l));
        state_->pending.clear();
        return {};
    }
    std::string describe() const override { return "fake SIEM"; }

  private:
    std::shared_ptr<State> state_;
};

class AuditExporterTest : public ::testing::Test {
  protected:
    AuditExporterTest() : key_(audit::testing::make_key(tmp_.path() / "state")) {}

    std::string dir() const { return (tmp_.path() / "state" / "audit").string(); }
    fs::path segment(uint64_t n) const { return fs::path(dir()) / audit::segment_name(n); }

    void open_log(uint64_t segment_max_bytes = 64ull << 20) {
        auto options = audit::testing::test_options();
        options.segment_max_bytes = segment_max_bytes;
        auto opened = audit::AuditLog::open(dir(), std::move(options), key_);
        ASSERT_TRUE(opened) << opened.error().describe();
        log_ = std::move(opened->log);
    }

    void append(int n, std::string_view type = "job.finished") {
        for (int i = 0; i < n; ++i) {
            auto seq = log_->append(type, {{"i", i}, {"note", "an event with some text"}},
                                    {.job_id = "job-" + std::to_string(i % 3)});
            ASSERT_TRUE(seq) << seq.error().describe();
        }
        ASSERT_TRUE(log_->flush());
    }

    // Every record line on disk, in order.
    std::vector<std::string> all_lines() const {
        std::vector<std::string> out;
        auto segments = audit::list_segments(dir());
        EXPECT_TRUE(segments);
        for (const auto& s : *segments)
            for (auto& l : read_lines(fs::path(dir()) / s)) out.push_back(std::move(l));
        return out;
    }

    AuditExporter::Options options(std::function<uint64_t()> durable) {
        AuditExporter::Options o;
        o.name = "test";
        o.batch_max_records = 7;
        o.poll_interval = 20ms;
        o.retry_backoff_min = 20ms;
        o.retry_backoff_max = 100ms;
        o.durable_size = std::move(durable);
        o.on_gap = [this](const Gap& g) {
            std::lock_guard lock(mu_);
            gaps_.push_back(g);
        };
        o.on_warning = [this](const std::string& w) {
            std::lock_guard lock(mu_);
            warnings_.push_back(w);
        };
        return o;
    }

    std::vector<Gap> gaps() {
        std::lock_guard lock(mu_);
        return gaps_;
    }

    nlohmann::json cursor(const AuditExporter& exporter) const {
        auto text = util::read_file(exporter.cursor_path());
        EXPECT_TRUE(text);
        return text ? nlohmann::json::parse(*text) : nlohmann::json{};
    }

    audit::testing::TempDir tmp_;
    identity::AgentKey key_;
    std::unique_ptr<audit::AuditLog> log_;
    std::mutex mu_;
    std::vector<Gap> gaps_;
    std::vector<std::string> warnings_;
};

std::unique_ptr<JsonLinesSink> json_sink(const fs::path& path) {
    auto sink = JsonLinesSink::open(path.string());
    EXPECT_TRUE(sink) << sink.error().describe();
    return sink ? std::move(*sink) : nullptr;
}

TEST_F(AuditExporterTest, JsonLinesExactlyOnceInOrderResumesAndStopsAtDurableSize) {
    open_log();
    append(20);
    auto lines = all_lines();
    ASSERT_EQ(lines.size(), 20u);
    fs::path out = tmp_.path() / "export.jsonl";

    std::atomic<uint64_t> durable{12};
    {
        AuditExporter exporter(dir(), json_sink(out), options([&] { return durable.load(); }));
        auto sent = exporter.run_once();
        ASSERT_TRUE(sent) << sent.error().describe();
        EXPECT_EQ(*sent, 12u);
        EXPECT_EQ(read_lines(out), std::vector<std::string>(lines.begin(), lines.begin() + 12));
        // The cursor names the next line exactly.
        uint64_t offset = 0;
        for (int i = 0; i < 12; ++i) offset += lines[static_cast<size_t>(i)].size() + 1;
        EXPECT_EQ(audit::testing::read_all(exporter.cursor_path()),
                  R"({"next_seq":12,"offset":)" + std::to_string(offset) +
                      R"(,"segment":"segment-000001.jsonl"})");
        struct stat st {};
        ASSERT_EQ(::stat(out.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);

        durable = 20;
        sent = exporter.run_once();
        ASSERT_TRUE(sent);
        EXPECT_EQ(*sent, 8u);
        EXPECT_EQ(exporter.stats().exported, 20u);
        EXPECT_EQ(exporter.stats().lag_records, 0u);
    }
    EXPECT_EQ(read_lines(out), lines);

    // A restarted exporter resumes at the cursor: nothing is sent twice.
    append(5);
    durable = 25;
    AuditExporter again(dir(), json_sink(out), options([&] { return durable.load(); }));
    auto sent = again.run_once();
    ASSERT_TRUE(sent) << sent.error().describe();
    EXPECT_EQ(*sent, 5u);
    EXPECT_EQ(read_lines(out), all_lines());
    EXPECT_TRUE(warnings_.empty());
    EXPECT_TRUE(gaps().empty());
}

TEST_F(AuditExporterTest, WorkerExportsRecordsAsTheyBecomeDurable) {
    open_log();
    fs::path out = tmp_.path() / "export.jsonl";
    AuditExporter exporter(dir(), json_sink(out), options([&] { return log_->durable_size(); }));
    ASSERT_TRUE(exporter.start());
    for (int round = 0; round < 5; ++round) {
        append(13);
        exporter.wake();
    }
    EXPECT_TRUE(wait_until([&] { return read_lines(out).size() >= 65; }));
    EXPECT_TRUE(wait_until([&] { return exporter.stats().next_seq == 65; }));
    exporter.stop();
    EXPECT_EQ(read_lines(out), all_lines());
    EXPECT_EQ(cursor(exporter)["next_seq"], 65);
    auto stats = exporter.stats();
    EXPECT_EQ(stats.exported, 65u);
    EXPECT_TRUE(stats.healthy);
    EXPECT_TRUE(stats.connected);
}

TEST_F(AuditExporterTest, FailedDeliveryRewindsAndResendsWithoutLoss) {
    open_log();
    append(30);
    auto state = std::make_shared<FakeSink::State>();
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                           options([&] { return log_->durable_size(); }));
    ASSERT_TRUE(exporter.run_once());
    state->down = true;
    append(10);
    auto sent = exporter.run_once();
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
    EXPECT_EQ(exporter.stats().next_seq, 30u);
    EXPECT_EQ(exporter.stats().lag_records, 10u);
    EXPECT_FALSE(exporter.stats().connected);
    state->down = false;
    ASSERT_TRUE(exporter.run_once());
    std::vector<uint64_t> expected(40);
    for (uint64_t i = 0; i < 40; ++i) expected[i] = i;
    EXPECT_EQ(state->seqs(), expected);
}

TEST_F(AuditExporterTest, BacklogOverTheBoundSkipsTheOldestAndReportsTheGap) {
    open_log();
    append(100);
    auto lines = all_lines();
    ASSERT_EQ(lines.size(), 100u);
    auto state = std::make_shared<FakeSink::State>();
    state->down = true;
    auto o = options([&] { return log_->durable_size(); });
    // Room for exactly the newest 10 records.
    o.max_backlog_bytes = 0;
    for (size_t i = 90; i < 100; ++i) o.max_backlog_bytes += lines[i].size() + 1;
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state), std::move(o));

    ASSERT_FALSE(exporter.run_once());  // SIEM down: the gap is reported all the same
    auto g = gaps();
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].first_seq, 0u);
    EXPECT_EQ(g[0].last_seq, 89u);
    EXPECT_EQ(g[0].count, 90u);
    EXPECT_EQ(g[0].reason, kGapBacklog);
    EXPECT_EQ(exporter.stats().skipped_records, 90u);
    EXPECT_EQ(exporter.stats().gaps, 1u);
    EXPECT_EQ(cursor(exporter)["next_seq"], 90);

    state->down = false;
    auto sent = exporter.run_once();
    ASSERT_TRUE(sent) << sent.error().describe();
    EXPECT_EQ(*sent, 10u);
    std::vector<uint64_t> expected;
    for (uint64_t i = 90; i < 100; ++i) expected.push_back(i);
    EXPECT_EQ(state->seqs(), expected);
    EXPECT_EQ(gaps().size(), 1u);  // no further gap once it fits
    EXPECT_EQ(exporter.stats().gaps, 1u);
}

TEST_F(AuditExporterTest, SegmentRemovedByRetentionIsAGapAndExportContinues) {
    open_log(4096);
    append(100);
    ASSERT_TRUE(fs::exists(segment(3)));
    auto seg2 = read_lines(segment(2));
    uint64_t seg2_first = seq_of(seg2.front());
    ASSERT_GT(seg2_first, 5u);

    auto state = std::make_shared<FakeSink::State>();
    std::atomic<uint64_t> durable{5};
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                           options([&] { return durable.load(); }));
    ASSERT_TRUE(exporter.run_once());
    EXPECT_EQ(cursor(exporter)["segment"], "segment-000001.jsonl");

    fs::remove(segment(1));
    durable = 100;
    auto sent = exporter.run_once();
    ASSERT_TRUE(sent) << sent.error().describe();
    auto g = gaps();
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].first_seq, 5u);
    EXPECT_EQ(g[0].last_seq, seg2_first - 1);
    EXPECT_EQ(g[0].count, seg2_first - 5);
    EXPECT_EQ(g[0].reason, kGapRetention);
    EXPECT_EQ(exporter.stats().skipped_records, seg2_first - 5);

    std::vector<uint64_t> expected;
    for (uint64_t i = 0; i < 5; ++i) expected.push_back(i);
    for (uint64_t i = seg2_first; i < 100; ++i) expected.push_back(i);
    EXPECT_EQ(state->seqs(), expected);
}

TEST_F(AuditExporterTest, RestartWithTheCursorSegmentRemovedReportsTheGap) {
    open_log(4096);
    append(100);
    auto state = std::make_shared<FakeSink::State>();
    std::atomic<uint64_t> durable{5};
    {
        AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                               options([&] { return durable.load(); }));
        ASSERT_TRUE(exporter.run_once());
    }
    fs::remove(segment(1));
    fs::remove(segment(2));
    uint64_t seg3_first = seq_of(read_lines(segment(3)).front());
    durable = 100;
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                           options([&] { return durable.load(); }));
    ASSERT_TRUE(exporter.run_once());
    auto g = gaps();
    ASSERT_EQ(g.size(), 1u);
    EXPECT_EQ(g[0].first_seq, 5u);
    EXPECT_EQ(g[0].last_seq, seg3_first - 1);
    EXPECT_EQ(g[0].reason, kGapRetention);
    auto seqs = state->seqs();
    ASSERT_EQ(seqs.size(), 5 + (100 - seg3_first));
    EXPECT_EQ(seqs[5], seg3_first);
    EXPECT_EQ(seqs.back(), 99u);
}

TEST_F(AuditExporterTest, DamagedLineBeforeTheDurableEndHaltsInsteadOfSkipping) {
    open_log();
    append(10);
    ASSERT_TRUE(log_->close());
    auto lines = read_lines(segment(1));
    lines[4] = lines[4].substr(0, lines[4].size() / 2);  // unparseable
    audit::testing::write_lines(segment(1), lines);

    auto state = std::make_shared<FakeSink::State>();
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state), options([] { return 10; }));
    auto sent = exporter.run_once();
    ASSERT_FALSE(sent);
    EXPECT_EQ(sent.error().code, ErrorCode::integrity);
    EXPECT_NE(sent.error().message.find("segment-000001.jsonl"), std::string::npos);
    auto stats = exporter.stats();
    EXPECT_TRUE(stats.halted);
    EXPECT_FALSE(stats.healthy);
    // Nothing at or after the damage was sent; nothing was skipped.
    EXPECT_TRUE(state->seqs().empty() || state->seqs().back() < 4);
    EXPECT_EQ(stats.next_seq, state->seqs().size());
    EXPECT_TRUE(gaps().empty());
}

TEST_F(AuditExporterTest, WorkerReportsHaltOnATornDurableLine) {
    open_log();
    append(3);
    ASSERT_TRUE(log_->close());
    // A torn last line that the durable size claims is complete.
    {
        std::ofstream outf(segment(1), std::ios::app | std::ios::binary);
        outf << "{\"actor\":\"agent:edge-1\",\"agent_id\":\"ed";
    }
    auto state = std::make_shared<FakeSink::State>();
    auto o = options([] { return 4; });
    std::atomic<int> halted{0};
    o.on_halted = [&](const std::string& reason) {
        EXPECT_NE(reason.find("torn"), std::string::npos) << reason;
        ++halted;
    };
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state), std::move(o));
    ASSERT_TRUE(exporter.start());
    EXPECT_TRUE(wait_until([&] { return halted.load() == 1; }));
    exporter.stop();
    EXPECT_EQ(state->seqs(), (std::vector<uint64_t>{0, 1, 2}));
    EXPECT_TRUE(exporter.stats().halted);
}

TEST_F(AuditExporterTest, CorruptOrStaleCursorIsReportedAndRecovered) {
    open_log();
    append(10);
    auto state = std::make_shared<FakeSink::State>();
    std::string cursor_file = (fs::path(dir()) / "export-test.cursor").string();

    // A readable seq at a wrong offset: found again by seq, no duplicates.
    ASSERT_TRUE(util::write_file_atomic(
        cursor_file, R"({"next_seq":6,"offset":3,"segment":"segment-000001.jsonl"})", 0600));
    {
        AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                               options([&] { return log_->durable_size(); }));
        ASSERT_TRUE(exporter.run_once());
        EXPECT_EQ(state->seqs(), (std::vector<uint64_t>{6, 7, 8, 9}));
    }

    // Garbage: said so, and everything is exported again (at least once).
    ASSERT_TRUE(util::write_file_atomic(cursor_file, "{not json", 0600));
    warnings_.clear();
    state->delivered.clear();
    AuditExporter exporter(dir(), std::make_unique<FakeSink>(state),
                           options([&] { return log_->durable_size(); }));
    ASSERT_TRUE(exporter.run_once());
    ASSERT_EQ(warnings_.size(), 1u);
    EXPECT_NE(warnings_[0].find("corrupt"), std::string::npos) << warnings_[0];
    EXPECT_EQ(state->seqs().size(), 10u);
    EXPECT_EQ(cursor(exporter)["next_seq"], 10);
}

TEST_F(AuditExporterTest, RejectsBadOptions) {
    auto o = options(nullptr);
    AuditExporter no_durable(dir(), std::make_unique<FakeSink>(std::make_shared<FakeSink::State>()),
                             o);
    EXPECT_EQ(no_durable.start().error().code, ErrorCode::invalid_argument);
    o = options([] { return 0; });
    o.name = "../escape";
    AuditExporter bad_name(dir(), std::make_unique<FakeSink>(std::make_shared<FakeSink::State>()),
                           o);
    EXPECT_EQ(bad_name.run_once().error().code, ErrorCode::invalid_argument);
}

// ---- a real rsyslog ---------------------------------------------------------

std::set<uint64_t> received_seqs(const std::vector<std::string>& lines) {
    std::set<uint64_t> out;
    for (const auto& l : lines) {
        auto at = l.find("[audit@32473 seq=\"");
        if (at == std::string::npos) continue;
        out.insert(std::stoull(l.substr(at + 18)));
    }
    return out;
}

std::set<uint64_t> range(uint64_t from, uint64_t to) {
    std::set<uint64_t> out;
    for (uint64_t i = from; i < to; ++i) out.insert(i);
    return out;
}

class RsyslogExportTest : public AuditExporterTest {
  protected:
    std::unique_ptr<SyslogRecordSink> syslog_sink(const harness::Rsyslog& rsyslog) {
        return std::make_unique<SyslogRecordSink>(SyslogRecordSink::Options{
            .connection = rsyslog.options(), .hostname = "edge-host", .confirm_wait = 30ms});
    }
};

TEST_F(RsyslogExportTest, TlsDeliveryKeepsTheCursorWhileDownAndDrainsAfterRestart) {
    harness::Rsyslog rsyslog(/*tls=*/true);
    rsyslog.start();
    int port = rsyslog.port();
    open_log();
    append(30);

    std::atomic<int> unavailable{0};
    std::atomic<int> recovered{0};
    auto o = options([&] { return log_->durable_size(); });
    o.batch_max_records = 50;
    o.on_unavailable = [&](const std::string&) { ++unavailable; };
    o.on_recovered = [&] { ++recovered; };
    AuditExporter exporter(dir(), syslog_sink(rsyslog), std::move(o));
    ASSERT_TRUE(exporter.start());

    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 30); }));
    EXPECT_TRUE(wait_until([&] { return exporter.stats().next_seq == 30; }));
    // The message: audit facility, the record's type, seq/agent/job, the record itself.
    auto lines = rsyslog.lines();
    auto records = all_lines();
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines[0].rfind("<110>1 ", 0), 0u) << lines[0];
    EXPECT_NE(lines[0].find(" edge-host secure-agent - job.finished [audit@32473 seq=\"0\" "
                            "agent=\"edge-1\" job=\"job-0\"] \xEF\xBB\xBF" +
                            records[0]),
              std::string::npos)
        << lines[0];

    rsyslog.stop();
    append(30);
    exporter.wake();
    EXPECT_TRUE(wait_until([&] { return unavailable.load() == 1; }));
    EXPECT_EQ(exporter.stats().next_seq, 30u);
    EXPECT_EQ(cursor(exporter)["next_seq"], 30);
    EXPECT_FALSE(exporter.stats().connected);

    rsyslog.start(port);  // the same port, as a SIEM that restarted
    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 60); }))
        << rsyslog.lines().size();
    EXPECT_TRUE(wait_until([&] { return recovered.load() == 1; }));
    EXPECT_TRUE(wait_until([&] { return exporter.stats().next_seq == 60; }));
    exporter.stop();
    EXPECT_EQ(unavailable.load(), 1);
    EXPECT_EQ(recovered.load(), 1);
    EXPECT_EQ(cursor(exporter)["next_seq"], 60);
}

TEST_F(RsyslogExportTest, PlainTcpDelivery) {
    harness::Rsyslog rsyslog(/*tls=*/false);
    rsyslog.start();
    open_log();
    append(25);
    AuditExporter exporter(dir(), syslog_sink(rsyslog),
                           options([&] { return log_->durable_size(); }));
    ASSERT_TRUE(exporter.start());
    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 25); }));
    exporter.stop();
    auto lines = rsyslog.lines();
    auto records = all_lines();
    ASSERT_EQ(lines.size(), 25u);
    for (size_t i = 0; i < lines.size(); ++i) {
        EXPECT_TRUE(lines[i].ends_with(records[i])) << lines[i];
    }
}

// Mutual TLS: rsyslog requires a client certificate issued by its client CA
// (x509/certvalid); the key comes from a file secret store.
class MutualTlsExportTest : public RsyslogExportTest {
  protected:
    MutualTlsExportTest() {
        stores_.add("files", std::make_unique<secrets::FileSecretStore>(
                                 "files", (tmp_.path() / "store").string()));
        stores_.set_observer([this](const secrets::AccessEvent& e) {
            std::lock_guard lock(mu_);
            events_.push_back(e);
        });
    }
    void SetUp() override {
        if (!harness::rsyslog_available()) GTEST_SKIP() << harness::kNoRsyslog;
    }
    void use_client(const ::sa::agent::testing::TestCert& cert) {
        ::sa::agent::testing::write_test_file((tmp_.path() / "client.pem").string(), cert.cert_pem);
        store_key(cert.key_pem);
    }
    void store_key(const std::string& pem) {
        ::sa::agent::testing::write_test_file((tmp_.path() / "store" / "siem.key").string(), pem);
    }
    std::unique_ptr<SyslogRecordSink> mtls_sink(const harness::Rsyslog& rsyslog,
                                                bool with_certificate = true) {
        SyslogRecordSink::Options o{
            .connection = rsyslog.options(), .hostname = "edge-host", .confirm_wait = 100ms};
        if (with_certificate) {
            o.client_certificate =
                ClientCertificate{.cert_file = (tmp_.path() / "client.pem").string(),
                                  .key = {.store = "files", .path = "siem.key", .key = ""},
                                  .reader = stores_.reader("siem client key test")};
        }
        return std::make_unique<SyslogRecordSink>(std::move(o));
    }
    size_t key_reads() {
        std::lock_guard lock(mu_);
        return events_.size();
    }
    // Starts an exporter that must be refused: it reports the SIEM
    // unavailable, nothing arrives and the cursor stays at 0.
    void expect_refused(harness::Rsyslog& rsyslog, std::unique_ptr<SyslogRecordSink> sink) {
        open_log();
        append(10);
        std::atomic<int> unavailable{0};
        auto o = options([&] { return log_->durable_size(); });
        o.on_unavailable = [&](const std::string&) { ++unavailable; };
        AuditExporter exporter(dir(), std::move(sink), std::move(o));
        ASSERT_TRUE(exporter.start());
        EXPECT_TRUE(wait_until([&] { return unavailable.load() >= 1; }));
        exporter.stop();
        EXPECT_EQ(exporter.stats().next_seq, 0u);
        EXPECT_TRUE(rsyslog.lines().empty()) << rsyslog.lines().front();
    }

    secrets::SecretStores stores_;
    std::vector<secrets::AccessEvent> events_;
};

TEST_F(MutualTlsExportTest, RecordsArriveWithTheClientCertificate) {
    harness::Rsyslog rsyslog(/*tls=*/true, harness::ClientAuth::certvalid);
    rsyslog.start();
    use_client(rsyslog.pki().client);
    open_log();
    append(12);
    AuditExporter exporter(dir(), mtls_sink(rsyslog),
                           options([&] { return log_->durable_size(); }));
    ASSERT_TRUE(exporter.start());
    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 12); }));
    EXPECT_TRUE(wait_until([&] { return exporter.stats().next_seq == 12; }));
    exporter.stop();
    std::lock_guard lock(mu_);
    ASSERT_GE(events_.size(), 1u);
    EXPECT_EQ(events_[0].purpose, "siem client key test");
    EXPECT_EQ(events_[0].outcome, "ok");
}

TEST_F(MutualTlsExportTest, WithoutAClientCertificateTheReceiverRefuses) {
    harness::Rsyslog rsyslog(/*tls=*/true, harness::ClientAuth::certvalid);
    rsyslog.start();
    expect_refused(rsyslog, mtls_sink(rsyslog, /*with_certificate=*/false));
}

TEST_F(MutualTlsExportTest, ACertificateFromAnotherCaIsRefused) {
    harness::Rsyslog rsyslog(/*tls=*/true, harness::ClientAuth::certvalid);
    rsyslog.start();
    use_client(::sa::agent::testing::other_pki().client);
    expect_refused(rsyslog, mtls_sink(rsyslog));
}

TEST_F(MutualTlsExportTest, KeyRotatedInTheStoreIsUsedOnTheNextConnection) {
    harness::Rsyslog rsyslog(/*tls=*/true, harness::ClientAuth::certvalid);
    rsyslog.start();
    use_client(rsyslog.pki().client);
    // Not the certificate's key yet: every connection attempt fails before
    // the handshake, with the mismatch as the reason.
    store_key(rsyslog.pki().server.key_pem);
    open_log();
    append(8);
    std::mutex reasons_mu;
    std::vector<std::string> reasons;
    auto o = options([&] { return log_->durable_size(); });
    o.on_unavailable = [&](const std::string& reason) {
        std::lock_guard lock(reasons_mu);
        reasons.push_back(reason);
    };
    AuditExporter exporter(dir(), mtls_sink(rsyslog), std::move(o));
    ASSERT_TRUE(exporter.start());
    EXPECT_TRUE(wait_until([&] {
        std::lock_guard lock(reasons_mu);
        return !reasons.empty();
    }));
    {
        std::lock_guard lock(reasons_mu);
        EXPECT_NE(reasons[0].find("does not match the certificate"), std::string::npos)
            << reasons[0];
        EXPECT_EQ(reasons[0].find("PRIVATE KEY"), std::string::npos);
    }
    EXPECT_EQ(exporter.stats().next_seq, 0u);
    const size_t reads_before = key_reads();
    EXPECT_GE(reads_before, 1u);

    store_key(rsyslog.pki().client.key_pem);  // rotated in the store
    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 8); }));
    EXPECT_TRUE(wait_until([&] { return exporter.stats().next_seq == 8; }));
    EXPECT_GT(key_reads(), reads_before);

    // A new connection (the SIEM restarted) reads the key again.
    const size_t reads_connected = key_reads();
    rsyslog.stop();
    rsyslog.start(rsyslog.port());
    append(4);
    exporter.wake();
    EXPECT_TRUE(wait_until([&] { return received_seqs(rsyslog.lines()) == range(0, 12); }));
    exporter.stop();
    EXPECT_GT(key_reads(), reads_connected);
}

}  // namespace
}  // namespace sa::agent::siem
