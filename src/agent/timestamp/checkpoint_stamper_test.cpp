#include "agent/timestamp/checkpoint_stamper.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include <nlohmann/json.hpp>

#include "agent/audit/audit_log.h"
#include "agent/audit/verify.h"
#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/identity/agent_key.h"
#include "agent/timestamp/stamp_verify.h"
#include "agent/timestamp/tsa_test_support.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"

namespace sa::agent::timestamp {
namespace {

using namespace std::chrono_literals;
using namespace tsa_testing;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// Counts events and lets a test wait for a count without sleeping.
class Counter {
  public:
    void bump() {
        std::lock_guard lock(mutex_);
        ++n_;
        cv_.notify_all();
    }
    int get() const {
        std::lock_guard lock(mutex_);
        return n_;
    }
    bool wait_for(int n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return n_ >= n; });
    }

  private:
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    int n_ = 0;
};

// The real TSA client, or (while `down`) an unreachable TSA.
class SwitchableTimestamper final : public Timestamper {
  public:
    explicit SwitchableTimestamper(Timestamper* real) : real_(real) {}
    Result<Token> timestamp(std::string_view digest) override {
        ++calls;
        if (down || real_ == nullptr) return fail(ErrorCode::unavailable, "TSA down (test)");
        return real_->timestamp(digest);
    }
    std::atomic<bool> down{false};
    std::atomic<int> calls{0};

  private:
    Timestamper* real_;
};

identity::AgentKey make_key(const fs::path& state) {
    auto key = identity::AgentKey::load_or_create(state.string());
    if (!key) throw std::runtime_error(key.error().describe());
    return std::move(*key);
}

constexpr auto kWait = 10s;  // never reached when things work

class StamperTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        tsa_dir_ = new TempDir;
        make_test_tsa(tsa_dir_->path() / "tsa", "Test TSA CA");
    }
    static void TearDownTestSuite() { delete tsa_dir_; }

    StamperTest() : key_(make_key(tmp_.path() / "state")), server_(pki_) {}

    void SetUp() override {
        // One request per connection: stop() need not wait out keep-alive.
        server_.http().set_keep_alive_max_count(1);
        serve_tsa(server_, tsa_dir_->path() / "tsa", "/tsa");
        serve_tsa(server_, tsa_dir_->path() / "other", "/other");
        server_.http().Post("/hang", [this](const httplib::Request&, httplib::Response& res) {
            hang_entered_.bump();
            std::unique_lock lock(hang_mutex_);
            hang_cv_.wait_for(lock, 20s, [&] { return hang_released_; });
            res.status = 503;
        });
        server_.start();
        std::string https_ca = agent::testing::write_test_file(
            (tmp_.path() / "https-ca.pem").string(), pki_.ca.cert_pem);
        auto http = egress::HttpClient::create({.ca_file = https_ca, .abort = &abort_});
        ASSERT_TRUE(http) << http.error().describe();
        http_ = std::make_unique<egress::HttpClient>(std::move(*http));
    }

    void TearDown() override {
        {
            std::lock_guard lock(hang_mutex_);
            hang_released_ = true;
        }
        hang_cv_.notify_all();
        server_.stop();
    }

    static std::string tsa_ca() { return (tsa_dir_->path() / "tsa" / "ca.pem").string(); }
    std::string audit_dir() const { return (tmp_.path() / "state" / "audit").string(); }
    fs::path timestamps_file() const { return fs::path(audit_dir()) / kTimestampsFile; }

    CheckpointStamper::Options options(const std::string& path = "/tsa") {
        CheckpointStamper::Options o;
        o.tsa_url = server_.url(path);
        o.retry_min = 5ms;
        o.retry_max = 20ms;
        o.on_failure = [this](const std::string& message) {
            {
                std::lock_guard lock(messages_mutex_);
                failure_messages_.push_back(message);
            }
            failures_.bump();
        };
        o.on_recovered = [this] { recoveries_.bump(); };
        return o;
    }

    std::unique_ptr<CheckpointStamper> open_stamper(Timestamper& timestamper,
                                                    CheckpointStamper::Options o,
                                                    std::vector<std::string>* warnings = nullptr) {
        auto opened = CheckpointStamper::open(timestamper, audit_dir(), std::move(o));
        if (!opened) {
            ADD_FAILURE() << opened.error().describe();
            return nullptr;
        }
        if (warnings != nullptr) *warnings = opened->warnings;
        return std::move(opened->stamper);
    }

    std::unique_ptr<audit::AuditLog> open_log(uint64_t checkpoint_every,
                                              CheckpointStamper* stamper) {
        audit::Options o;
        o.agent_id = "edge-1";
        o.batch_interval_ms = 1;
        o.checkpoint_every_records = checkpoint_every;
        o.checkpoint_interval_ms = 60000;
        o.on_checkpoint = [this, stamper](const audit::Checkpoint& cp) {
            if (stamper != nullptr) stamper->submit(cp);
            checkpoints_.bump();
        };
        auto opened = audit::AuditLog::open(audit_dir(), std::move(o), key_);
        if (!opened) {
            ADD_FAILURE() << opened.error().describe();
            return nullptr;
        }
        return std::move(opened->log);
    }

    static void write_records(audit::AuditLog& log, int n) {
        for (int i = 0; i < n; ++i) {
            auto r = log.append_durable("test.event", json{{"i", i}});
            ASSERT_TRUE(r) << r.error().describe();
        }
    }

    std::vector<audit::Checkpoint> checkpoints_on_disk() {
        auto cps = audit::read_checkpoints(audit_dir());
        EXPECT_TRUE(cps) << cps.error().describe();
        return cps ? *cps : std::vector<audit::Checkpoint>{};
    }

    static TempDir* tsa_dir_;
    TempDir tmp_;
    identity::AgentKey key_;
    agent::testing::TestPki pki_ = agent::testing::TestPki::generate();
    std::atomic<bool> abort_{false};
    std::mutex hang_mutex_;
    std::condition_variable hang_cv_;
    bool hang_released_ = false;
    Counter hang_entered_;
    Counter checkpoints_;
    Counter failures_;
    Counter recoveries_;
    std::mutex messages_mutex_;
    std::vector<std::string> failure_messages_;
    agent::testing::TlsTestServer server_;
    std::unique_ptr<egress::HttpClient> http_;
};

TempDir* StamperTest::tsa_dir_ = nullptr;

TEST_F(StamperTest, StampsEveryCheckpointAndTheTokensVerify) {
    TsaClient tsa(*http_, server_.url("/tsa"), tsa_ca());
    auto stamper = open_stamper(tsa, options());
    ASSERT_TRUE(stamper);
    auto log = open_log(3, stamper.get());
    ASSERT_TRUE(log);
    for (uint64_t batch = 1; batch <= 3; ++batch) {
        write_records(*log, 3);
        // The next checkpoint covers at least these records; wait for its token.
        ASSERT_TRUE(stamper->wait_for(
            [&](const auto& s) { return s.last_stamped_tree_size >= 3 * batch && !s.pending; },
            kWait))
            << stamper->stats().last_error;
    }
    ASSERT_TRUE(log->close());
    stamper->close(5s);

    auto cps = checkpoints_on_disk();
    ASSERT_FALSE(cps.empty());
    auto stats = stamper->stats();
    EXPECT_EQ(stats.stamped, cps.size());
    EXPECT_EQ(stats.failures, 0u);
    EXPECT_EQ(stats.coalesced, 0u);
    EXPECT_FALSE(stats.pending);
    EXPECT_EQ(stats.last_stamped_tree_size, cps.back().tree_size);
    EXPECT_EQ(failures_.get(), 0);

    // One canonical line per checkpoint, hashing the checkpoint line as stored.
    auto lines = read_lines(timestamps_file());
    auto cp_lines = read_lines(fs::path(audit_dir()) / audit::kCheckpointsFile);
    ASSERT_EQ(lines.size(), cps.size());
    for (size_t i = 0; i < lines.size(); ++i) {
        json j = json::parse(lines[i]);
        EXPECT_EQ(j.dump(), lines[i]);
        EXPECT_EQ(j.at("tree_size").get<uint64_t>(), cps[i].tree_size);
        EXPECT_EQ(j.at("checkpoint_sha256").get<std::string>(),
                  crypto::base64_encode(crypto::sha256(cp_lines[i])));
        EXPECT_EQ(j.at("tsa").get<std::string>(), server_.url("/tsa"));
    }
    struct stat st {};
    ASSERT_EQ(::stat(timestamps_file().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto report = verify_timestamps(audit_dir(), tsa_ca());
    ASSERT_TRUE(report) << report.error().describe();
    EXPECT_TRUE(report->intact()) << report->damage->describe();
    EXPECT_TRUE(report->signatures_checked);
    EXPECT_EQ(report->tokens, cps.size());
    EXPECT_EQ(report->last_stamped_tree_size, cps.back().tree_size);
    EXPECT_FALSE(report->last_gen_time.empty());

    auto unsigned_report = verify_timestamps(audit_dir(), std::nullopt);
    ASSERT_TRUE(unsigned_report);
    EXPECT_TRUE(unsigned_report->intact());
    EXPECT_FALSE(unsigned_report->signatures_checked);

    // The audit log itself is untouched by the extra file.
    auto log_report = audit::verify_log(audit_dir(), key_.public_key());
    ASSERT_TRUE(log_report);
    EXPECT_TRUE(log_report->intact()) << log_report->damage->describe();
}

TEST_F(StamperTest, TsaDownCoalescesReportsOnceAndRecoversWithTheNewestCheckpoint) {
    TsaClient real(*http_, server_.url("/tsa"), tsa_ca());
    SwitchableTimestamper tsa(&real);
    tsa.down = true;
    auto stamper = open_stamper(tsa, options());
    ASSERT_TRUE(stamper);
    auto log = open_log(2, stamper.get());
    ASSERT_TRUE(log);
    for (int i = 1; i <= 4; ++i) {
        write_records(*log, 2);
        ASSERT_TRUE(checkpoints_.wait_for(i, kWait));
    }
    // Every checkpoint but the newest is superseded; the newest waits.
    ASSERT_TRUE(stamper->wait_for(
        [](const auto& s) { return s.coalesced == 3 && s.failures >= 2 && s.pending; }, kWait));
    ASSERT_TRUE(failures_.wait_for(1, kWait));
    auto down = stamper->stats();
    EXPECT_EQ(down.stamped, 0u);
    EXPECT_TRUE(down.failing);
    EXPECT_NE(down.last_error.find("TSA down (test)"), std::string::npos) << down.last_error;
    EXPECT_EQ(failures_.get(), 1);  // once per outage, however many attempts fail
    EXPECT_EQ(recoveries_.get(), 0);
    EXPECT_EQ(read_all(timestamps_file()), "");
    {
        std::lock_guard lock(messages_mutex_);
        ASSERT_EQ(failure_messages_.size(), 1u);
        EXPECT_NE(failure_messages_[0].find("unavailable"), std::string::npos);
    }

    tsa.down = false;
    ASSERT_TRUE(
        stamper->wait_for([](const auto& s) { return s.stamped == 1 && !s.pending; }, kWait));
    ASSERT_TRUE(recoveries_.wait_for(1, kWait));
    auto cps = checkpoints_on_disk();
    ASSERT_EQ(cps.size(), 4u);
    auto up = stamper->stats();
    EXPECT_EQ(up.last_stamped_tree_size, cps.back().tree_size);
    EXPECT_FALSE(up.failing);
    EXPECT_EQ(up.coalesced, 3u);
    EXPECT_EQ(failures_.get(), 1);
    EXPECT_EQ(recoveries_.get(), 1);

    // A second outage is reported again, once.
    tsa.down = true;
    write_records(*log, 2);
    ASSERT_TRUE(failures_.wait_for(2, kWait));
    tsa.down = false;
    ASSERT_TRUE(recoveries_.wait_for(2, kWait));
    ASSERT_TRUE(stamper->wait_for([](const auto& s) { return s.stamped == 2; }, kWait));
    EXPECT_EQ(failures_.get(), 2);

    ASSERT_TRUE(log->close());
    stamper->close(5s);
    auto report = verify_timestamps(audit_dir(), tsa_ca());
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->intact()) << report->damage->describe();
    EXPECT_EQ(report->tokens, 2u);
    EXPECT_EQ(report->last_stamped_tree_size, 10u);
}

TEST_F(StamperTest, ReplyThatDoesNotVerifyIsNeverStored) {
    make_test_tsa(tsa_dir_->path() / "other", "Other TSA CA");  // only this test needs it
    // The TSA behind /other signs with a CA we do not trust.
    TsaClient tsa(*http_, server_.url("/other"), tsa_ca());
    auto stamper = open_stamper(tsa, options("/other"));
    ASSERT_TRUE(stamper);
    auto log = open_log(2, stamper.get());
    ASSERT_TRUE(log);
    write_records(*log, 2);
    ASSERT_TRUE(stamper->wait_for([](const auto& s) { return s.failures >= 2; }, kWait));
    ASSERT_TRUE(failures_.wait_for(1, kWait));
    EXPECT_EQ(failures_.get(), 1);
    auto stats = stamper->stats();
    EXPECT_EQ(stats.stamped, 0u);
    EXPECT_TRUE(stats.pending);  // retried later, like an outage
    EXPECT_NE(stats.last_error.find("integrity"), std::string::npos) << stats.last_error;
    stamper->close(0ms);
    EXPECT_EQ(read_all(timestamps_file()), "");
    ASSERT_TRUE(log->close());
}

TEST_F(StamperTest, TornTailIsCutOffOnOpen) {
    fs::create_directories(audit_dir());
    std::string good =
        R"({"checkpoint_sha256":"x","gen_time":"2026-11-29T10:00:00.000Z","token":"x","tree_size":5,"tsa":"https://tsa"})";
    {
        std::ofstream out(timestamps_file(), std::ios::binary);
        out << good << "\n"
            << R"({"checkpoint_sha256":"abc","gen_ti)";
    }
    SwitchableTimestamper tsa(nullptr);
    std::vector<std::string> warnings;
    auto stamper = open_stamper(tsa, options(), &warnings);
    ASSERT_TRUE(stamper);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("torn"), std::string::npos) << warnings[0];
    EXPECT_EQ(read_all(timestamps_file()), good + "\n");
    EXPECT_EQ(stamper->stats().last_stamped_tree_size, 5u);
    stamper->close(0ms);

    // A clean file opens without warnings.
    auto again = open_stamper(tsa, options(), &warnings);
    ASSERT_TRUE(again);
    EXPECT_TRUE(warnings.empty());
    EXPECT_EQ(tsa.calls.load(), 0);
}

TEST_F(StamperTest, StampsTheLogsNewestCheckpointLeftUnstampedOnOpen) {
    {
        auto log = open_log(1000, nullptr);
        ASSERT_TRUE(log);
        write_records(*log, 3);
        ASSERT_TRUE(log->close());  // the final checkpoint covers 3
    }
    TsaClient tsa(*http_, server_.url("/tsa"), tsa_ca());
    {
        auto stamper = open_stamper(tsa, options());
        ASSERT_TRUE(stamper);
        ASSERT_TRUE(
            stamper->wait_for([](const auto& s) { return s.stamped == 1 && !s.pending; }, kWait));
        EXPECT_EQ(stamper->stats().last_stamped_tree_size, 3u);
    }
    SwitchableTimestamper counting(&tsa);
    auto again = open_stamper(counting, options());
    ASSERT_TRUE(again);
    auto stats = again->stats();
    EXPECT_FALSE(stats.pending);  // already stamped: nothing to do
    EXPECT_EQ(stats.last_stamped_tree_size, 3u);
    again->close(1s);
    EXPECT_EQ(counting.calls.load(), 0);
    auto report = verify_timestamps(audit_dir(), tsa_ca());
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->intact());
    EXPECT_EQ(report->tokens, 1u);
}

audit::Checkpoint fake_checkpoint(uint64_t tree_size) {
    audit::Checkpoint cp;
    cp.agent_id = "edge-1";
    cp.tree_size = tree_size;
    cp.root = crypto::base64_encode(crypto::sha256("root"));
    cp.ts = "2026-11-29T10:00:00.000Z";
    cp.key_id = "k";
    cp.signature = "s";
    return cp;
}

TEST_F(StamperTest, CloseReturnsWithinGraceWhenTheTsaHangs) {
    TsaClient tsa(*http_, server_.url("/hang"), tsa_ca());
    auto o = options("/hang");
    o.abort = &abort_;
    auto stamper = open_stamper(tsa, std::move(o));
    ASSERT_TRUE(stamper);
    stamper->submit(fake_checkpoint(7));
    ASSERT_TRUE(hang_entered_.wait_for(1, kWait));  // the request is in flight
    auto start = SteadyClock::now();
    stamper->close(300ms);
    auto took = SteadyClock::now() - start;
    EXPECT_GE(took, 250ms);  // it did give the request its grace
    EXPECT_LT(took, 300ms + 3s);
    EXPECT_TRUE(abort_.load());
    EXPECT_EQ(stamper->stats().stamped, 0u);
    EXPECT_EQ(read_all(timestamps_file()), "");
}

TEST_F(StamperTest, CloseDuringBackoffTriesOnceMoreAndStopsPromptly) {
    SwitchableTimestamper tsa(nullptr);  // unreachable
    auto o = options();
    o.retry_min = 60s;  // a long backoff that close() must not sit out
    o.retry_max = 60s;
    auto stamper = open_stamper(tsa, std::move(o));
    ASSERT_TRUE(stamper);
    stamper->submit(fake_checkpoint(3));
    ASSERT_TRUE(stamper->wait_for([](const auto& s) { return s.failures == 1; }, kWait));
    auto start = SteadyClock::now();
    stamper->close(200ms);
    EXPECT_LT(SteadyClock::now() - start, 200ms + 2s);
    EXPECT_EQ(tsa.calls.load(), 2);  // the last try at close
    EXPECT_EQ(failures_.get(), 1);
    // Stale and late submissions are ignored.
    stamper->submit(fake_checkpoint(9));
    EXPECT_EQ(tsa.calls.load(), 2);
}

TEST_F(StamperTest, SubmitCoalescesToTheNewestAndIgnoresOlder) {
    SwitchableTimestamper tsa(nullptr);
    auto o = options();
    o.retry_min = 60s;
    o.retry_max = 60s;
    auto stamper = open_stamper(tsa, std::move(o));
    ASSERT_TRUE(stamper);
    stamper->submit(fake_checkpoint(3));
    ASSERT_TRUE(stamper->wait_for([](const auto& s) { return s.failures == 1; }, kWait));
    // In backoff now: newer ones replace the pending one, older ones are dropped.
    stamper->submit(fake_checkpoint(5));
    stamper->submit(fake_checkpoint(4));
    stamper->submit(fake_checkpoint(8));
    auto stats = stamper->stats();
    EXPECT_EQ(stats.coalesced, 2u);  // 3 by 5, 5 by 8
    EXPECT_TRUE(stats.pending);
    EXPECT_EQ(tsa.calls.load(), 1);
}

}  // namespace
}  // namespace sa::agent::timestamp
