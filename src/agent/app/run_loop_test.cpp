#include "agent/app/run_loop.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "agent/app/test_fake_hub.h"
#include "agent/observe/liveness.h"
#include "common/crypto/random.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using testing::FakeHub;

class MemoryStore final : public secrets::SecretStore {
  public:
    Result<secrets::SecretValue> read(const secrets::SecretRef&) override {
        return secrets::SecretValue::copy_of("s3cret");
    }
};

class RunLoopTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-loop-" + crypto::random_token(8));
        fs::create_directories(dir_);
        testing::make_source_db((dir_ / "demo.db").string());
        auto config =
            config::parse_config("agent: {id: edge-1, state_dir: " + dir_.string() +
                                 "}\n"
                                 "hub:\n  url: https://hub.test\n  job_signing_public_key: k.pem\n"
                                 "  client_id: cid_1\n  client_secret: {secret: \"files/x\"}\n"
                                 "secret_stores: {files: {type: file, path: /s}}\n"
                                 "sources:\n  - {name: demo, connector: sqlite, path: " +
                                 (dir_ / "demo.db").string() + "}\n");
        ASSERT_TRUE(config) << config.error().describe();
        config_ = std::make_unique<config::Config>(std::move(*config));
        stores_.add("files", std::make_unique<MemoryStore>());
        tokens_ = std::make_unique<auth::TokenClient>(
            hub_, [this](const secrets::SecretRef& ref) { return stores_.read(ref); },
            auth::TokenClient::Options{.token_url = "https://hub.test/oauth2/token",
                                       .client_id = "cid_1",
                                       .client_secret = {"files", "x", ""}},
            clock_);
        hub_client_ = std::make_unique<control::HubClient>(
            hub_, *tokens_,
            control::HubClient::Options{.hub_url = "https://hub.test", .agent_id = "edge-1"});
        verifier_ = std::make_unique<jobs::JobVerifier>(
            std::vector<crypto::Ed25519PublicKey>{key_.public_key()},
            jobs::JobVerifier::Options{.audience = "cid_1", .leeway_seconds = 60});
        spool_ = (dir_ / "spool").string();
        fs::create_directories(spool_);
        runner_ = std::make_unique<JobRunner>(
            *config_, *verifier_, policy_, *hub_client_, logger_, metrics_,
            JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH, .spool_root = spool_});
    }
    void TearDown() override { fs::remove_all(dir_); }

    RunLoop make_loop() {
        RunLoop::Options options;
        options.poll_wait_seconds = 5;
        options.sleep = [this](std::chrono::milliseconds delay) {
            sleeps_.push_back(delay);
            if (sleeps_.size() >= max_sleeps_) stop_ = true;
        };
        return RunLoop(options, *tokens_, *hub_client_, *runner_, readiness_, metrics_, logger_,
                       stop_);
    }

    fs::path dir_;
    crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
    FakeHub hub_;
    auth::SystemClock clock_;
    secrets::SecretStores stores_;
    observe::Logger logger_{"edge-1", observe::Level::debug, [](std::string_view) {}};
    observe::Registry registry_;
    observe::AgentMetrics metrics_{registry_, "test"};
    observe::Readiness readiness_;
    std::atomic<bool> stop_{false};
    std::vector<std::chrono::milliseconds> sleeps_;
    size_t max_sleeps_ = 3;
    std::unique_ptr<config::Config> config_;
    std::unique_ptr<auth::TokenClient> tokens_;
    std::unique_ptr<control::HubClient> hub_client_;
    std::unique_ptr<jobs::JobVerifier> verifier_;
    std::string spool_;
    jobs::Policy policy_ = jobs::default_policy();
    std::unique_ptr<JobRunner> runner_;
};

TEST_F(RunLoopTest, LeasesRunsAJobAndPollsAgainUntilStopped) {
    hub_.queue_job("J1", "L1", testing::sign_job(key_, "cid_1", "J1", "L1", "demo"));
    hub_.on_request = [this](const std::string& path) {
        if (path == protocol::kLeasePath && hub_.lease_requests.size() == 1) stop_ = true;
    };
    auto loop = make_loop();
    loop.run();

    ASSERT_EQ(hub_.lease_requests.size(), 2u);
    EXPECT_EQ(hub_.lease_requests[0], (testing::json{{"agent_id", "edge-1"}, {"wait_seconds", 5}}));
    EXPECT_EQ(hub_.completions.size(), 1u);
    EXPECT_TRUE(sleeps_.empty());  // no errors, no backoff
    EXPECT_TRUE(readiness_.ready());
    const std::string text = registry_.render();
    EXPECT_NE(text.find("secure_agent_lease_latency_seconds_count 1\n"), std::string::npos);
    EXPECT_NE(text.find("secure_agent_jobs_total{outcome=\"succeeded\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("secure_agent_ready 1\n"), std::string::npos);
}

TEST_F(RunLoopTest, BacksOffWithJitterWhileTheHubIsUnreachable) {
    hub_.token_failures = 100;
    auto loop = make_loop();
    loop.run();
    ASSERT_EQ(sleeps_.size(), 3u);
    EXPECT_LE(sleeps_[0], std::chrono::milliseconds(1000));
    EXPECT_LE(sleeps_[1], std::chrono::milliseconds(2000));
    EXPECT_LE(sleeps_[2], std::chrono::milliseconds(4000));
    EXPECT_FALSE(readiness_.ready());
    EXPECT_NE(readiness_.reason().find("cannot obtain an access token"), std::string::npos);
    EXPECT_NE(registry_.render().find("secure_agent_ready 0\n"), std::string::npos);
    EXPECT_TRUE(hub_.lease_requests.empty());
}

TEST_F(RunLoopTest, HonoursRetryAfterOnLeaseErrors) {
    auto busy = FakeHub::reply(503, testing::json{{"error", "busy"}});
    busy.headers["retry-after"] = "7";
    hub_.leases.push_back(busy);
    max_sleeps_ = 1;
    auto loop = make_loop();
    loop.run();
    ASSERT_EQ(sleeps_.size(), 1u);
    EXPECT_EQ(sleeps_[0], std::chrono::seconds(7));
    EXPECT_FALSE(readiness_.ready());
    EXPECT_NE(readiness_.reason().find("lease request failed"), std::string::npos);
}

TEST_F(RunLoopTest, TheWatchdogSeesALoopStuckInACall) {
    auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
    observe::Liveness liveness(std::chrono::seconds(300), [&now] { return now; });
    const size_t slot = liveness.add("control slot 0");
    std::optional<observe::Liveness::Verdict> during;
    int polls = 0;
    hub_.on_request = [&](const std::string& path) {
        if (path != protocol::kLeasePath) return;
        if (++polls == 1) {
            // The first long poll hangs for ten minutes (a half-open connection).
            now += std::chrono::minutes(10);
            during = liveness.check();
        } else {
            stop_ = true;
        }
    };
    RunLoop::Options options;
    options.poll_wait_seconds = 5;
    options.beat = [&] { liveness.beat(slot); };
    RunLoop loop(options, *tokens_, *hub_client_, *runner_, readiness_, metrics_, logger_, stop_);
    loop.run();
    ASSERT_TRUE(during);
    EXPECT_FALSE(during->live);
    EXPECT_EQ(during->reason, "control slot 0 has not moved for 600 s (limit 300 s)");
    // Once the call returned, the loop moved again.
    EXPECT_TRUE(liveness.check().live);
}

TEST_F(RunLoopTest, RecoversReadinessAfterAnError) {
    hub_.token_failures = 1;
    hub_.on_request = [this](const std::string& path) {
        if (path == protocol::kLeasePath) stop_ = true;
    };
    auto loop = make_loop();
    loop.run();
    EXPECT_EQ(sleeps_.size(), 1u);
    EXPECT_TRUE(readiness_.ready());
}

}  // namespace
}  // namespace sa::agent::app
