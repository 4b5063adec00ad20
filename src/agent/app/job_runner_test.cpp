#include "agent/app/job_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "agent/app/test_fake_hub.h"
#include "common/crypto/random.h"
#include "common/metadata/model.h"
#include "common/sqlite/database.h"
#include "common/util/files.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using testing::FakeHub;
using testing::json;

class FakeTokens final : public auth::TokenSource {
  public:
    Result<secrets::SecretValue> access_token() override {
        return secrets::SecretValue::copy_of(token.reveal());
    }
    void invalidate() override {}
    secrets::SecretValue token = secrets::SecretValue::copy_of("tok");
};

class JobRunnerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-runner-" + crypto::random_token(8));
        fs::create_directories(dir_);
        db_path_ = (dir_ / "demo.db").string();
        testing::make_source_db(db_path_);
        {
            auto db = sqlite::Database::open(db_path_, sqlite::Database::Mode::read_write_create);
            ASSERT_TRUE(db);
            ASSERT_TRUE(db->exec("CREATE TABLE secret_salaries (id INTEGER, amount NUMERIC);"));
        }
        auto config =
            config::parse_config("agent: {id: edge-1, state_dir: " + dir_.string() +
                                 "}\n"
                                 "hub:\n  url: https://hub.test\n  job_signing_public_key: k.pem\n"
                                 "  client_id: cid_1\n  client_secret: {secret: \"files/x\"}\n"
                                 "secret_stores: {files: {type: file, path: /s}}\n"
                                 "sources:\n  - {name: demo, connector: sqlite, path: " +
                                 db_path_ +
                                 "}\n"
                                 "  - {name: gone, connector: sqlite, path: " +
                                 (dir_ / "missing.db").string() +
                                 "}\n"
                                 // The test worker's faults are chosen by source name.
                                 "  - {name: crash-1, connector: sqlite, path: " +
                                 db_path_ +
                                 "}\n"
                                 "  - {name: slow-1, connector: sqlite, path: " +
                                 db_path_ +
                                 "}\n"
                                 "  - {name: hang-1, connector: sqlite, path: " +
                                 db_path_ + "}\n");
        ASSERT_TRUE(config) << config.error().describe();
        config_ = std::make_unique<config::Config>(std::move(*config));
        verifier_ = std::make_unique<jobs::JobVerifier>(
            std::vector<crypto::Ed25519PublicKey>{key_.public_key()},
            jobs::JobVerifier::Options{.audience = "cid_1", .leeway_seconds = 60});
        hub_client_ = std::make_unique<control::HubClient>(
            hub_, tokens_,
            control::HubClient::Options{.hub_url = "https://hub.test",
                                        .agent_id = "edge-1",
                                        .sleep = [](std::chrono::milliseconds) { return true; }});
        auto policy = jobs::parse_policy(policy_text_, "policy.yaml");
        ASSERT_TRUE(policy) << policy.error().describe();
        policy_ = std::make_unique<jobs::Policy>(std::move(*policy));
        spool_ = (dir_ / "spool").string();
        fs::create_directories(spool_);
        make_runner();
    }
    void make_runner() {
        runner_ = std::make_unique<JobRunner>(
            *config_, *verifier_, *policy_, *hub_client_, logger_, metrics_,
            JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH,
                               .spool_root = spool_,
                               .heartbeat_interval = heartbeat_,
                               .cancel_grace = std::chrono::seconds(1),
                               .beat = [this] { ++beats_; },
                               .stop = &stop_});
    }
    void TearDown() override { fs::remove_all(dir_); }

    jobs::LeaseEnvelope envelope(const std::string& jws, const std::string& job_id = "J1",
                                 const std::string& lease_id = "L1") {
        return jobs::LeaseEnvelope{lease_id, job_id, util::unix_seconds() + 600, jws};
    }
    std::string logs() const {
        std::string all;
        for (const auto& line : log_lines_) all += line;
        return all;
    }

    fs::path dir_;
    std::string db_path_;
    crypto::Ed25519PrivateKey key_ = crypto::Ed25519PrivateKey::generate();
    FakeHub hub_;
    FakeTokens tokens_;
    std::vector<std::string> log_lines_;
    observe::Logger logger_{"edge-1", observe::Level::debug,
                            [this](std::string_view line) { log_lines_.emplace_back(line); }};
    observe::Registry registry_;
    observe::AgentMetrics metrics_{registry_, "test"};
    std::string policy_text_ = R"(version: 1
rules:
  - name: catalog
    sources: ["*"]
    operations: [extract_metadata, test_connection, preflight, list_schemas]
    tables: {exclude: ["secret_.*"]}
    limits: {max_duration: 1h}
)";
    std::chrono::seconds heartbeat_{30};
    std::atomic<bool> stop_{false};
    int beats_ = 0;
    std::string spool_;
    std::unique_ptr<jobs::Policy> policy_;
    std::unique_ptr<config::Config> config_;
    std::unique_ptr<jobs::JobVerifier> verifier_;
    std::unique_ptr<control::HubClient> hub_client_;
    std::unique_ptr<JobRunner> runner_;
};

TEST_F(JobRunnerTest, ExtractsUploadsAndCompletes) {
    const auto outcome =
        runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "demo")));
    EXPECT_EQ(outcome.outcome, "succeeded") << logs();

    ASSERT_EQ(hub_.uploads.size(), 1u);
    EXPECT_EQ(hub_.uploads[0].job_id, "J1");
    EXPECT_EQ(hub_.uploads[0].seq, 0);
    EXPECT_EQ(hub_.uploads[0].lease_id, "L1");
    auto tables = metadata::parse_chunk(hub_.uploads[0].body);
    ASSERT_TRUE(tables) << tables.error().describe();
    EXPECT_EQ(tables->size(), 3u);

    ASSERT_EQ(hub_.completions.size(), 1u);
    const json& done = hub_.completions[0];
    EXPECT_EQ(done["lease_id"], "L1");
    EXPECT_EQ(done["agent_id"], "edge-1");
    EXPECT_EQ(done["summary"], (json{{"tables", 2}, {"views", 1}, {"columns", 7}}));
    ASSERT_EQ(done["chunks"].size(), 1u);
    EXPECT_EQ(done["chunks"][0]["sha256"], crypto::sha256_hex(hub_.uploads[0].body));
    EXPECT_EQ(done["chunks"][0]["size"], hub_.uploads[0].body.size());
    EXPECT_LE(done["started_at_ms"].get<int64_t>(), done["finished_at_ms"].get<int64_t>());
    EXPECT_TRUE(hub_.failures.empty());

    const std::string text = registry_.render();
    EXPECT_NE(text.find("secure_agent_jobs_total{outcome=\"succeeded\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("secure_agent_job_duration_seconds_count 1\n"), std::string::npos);
    EXPECT_NE(
        logs().find(R"("msg":"job succeeded","agent_id":"edge-1","job_id":"J1","lease_id":"L1")"),
        std::string::npos)
        << logs();
}

TEST_F(JobRunnerTest, RefusesJobsSignedByAKeyThatIsNotPinned) {
    // Another key: its kid is not pinned.
    const auto other = crypto::Ed25519PrivateKey::generate();
    const auto outcome =
        runner_->run(envelope(testing::sign_job(other, "cid_1", "J1", "L1", "demo")));
    EXPECT_EQ(outcome.outcome, "refused");
    EXPECT_EQ(outcome.reason_code, "unknown_key");
    // Another key claiming the pinned key's kid: the signature does not verify.
    std::string forged = testing::sign_job(key_, "cid_1", "J2", "L2", "demo");
    // A character inside the signature (the last one carries padding bits).
    char& c = forged[forged.size() - 10];
    c = c == 'A' ? 'B' : 'A';
    const auto bad = runner_->run(envelope(forged, "J2", "L2"));
    EXPECT_EQ(bad.outcome, "refused");
    EXPECT_EQ(bad.reason_code, "bad_signature");

    ASSERT_EQ(hub_.failures.size(), 2u);
    EXPECT_EQ(hub_.failures[0]["outcome"], "refused");
    EXPECT_EQ(hub_.failures[0]["reason_code"], "unknown_key");
    EXPECT_EQ(hub_.failures[0]["lease_id"], "L1");
    EXPECT_EQ(hub_.failures[0]["job_id"], "J1");
    EXPECT_EQ(hub_.failures[1]["reason_code"], "bad_signature");
    EXPECT_TRUE(hub_.uploads.empty());
    EXPECT_TRUE(hub_.completions.empty());
    const std::string text = registry_.render();
    EXPECT_NE(text.find("secure_agent_job_refusals_total{reason=\"bad_signature\"} 1\n"),
              std::string::npos);
    EXPECT_NE(text.find("secure_agent_job_refusals_total{reason=\"unknown_key\"} 1\n"),
              std::string::npos);
    EXPECT_NE(text.find("secure_agent_jobs_total{outcome=\"refused\"} 2\n"), std::string::npos);
    EXPECT_NE(logs().find("\"bad_signature\""), std::string::npos);
    // No worker was started for either.
    EXPECT_EQ(logs().find("job worker started"), std::string::npos);
}

TEST_F(JobRunnerTest, RefusesUnknownSourceAndOperationsThePolicyDoesNotAllow) {
    auto unknown = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "nope")));
    EXPECT_EQ(unknown.reason_code, "unknown_source");
    auto op = runner_->run(
        envelope(testing::sign_job(key_, "cid_1", "J2", "L2", "demo", "drop_tables"), "J2", "L2"));
    EXPECT_EQ(op.reason_code, "operation_not_allowed");
    ASSERT_EQ(hub_.failures.size(), 2u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "unknown_source");
    EXPECT_EQ(hub_.failures[1]["reason_code"], "operation_not_allowed");
    EXPECT_TRUE(hub_.uploads.empty());
}

TEST_F(JobRunnerTest, RefusesWrongAudienceAndReplay) {
    auto wrong = runner_->run(envelope(testing::sign_job(key_, "cid_other", "J1", "L1", "demo")));
    EXPECT_EQ(wrong.reason_code, "wrong_audience");
    const std::string jws = testing::sign_job(key_, "cid_1", "J2", "L2", "demo");
    EXPECT_EQ(runner_->run(envelope(jws, "J2", "L2")).outcome, "succeeded");
    EXPECT_EQ(runner_->run(envelope(jws, "J2", "L2")).reason_code, "replayed");
}

TEST_F(JobRunnerTest, MissingSourceFileFailsWithoutTellingTheHubThePath) {
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "gone")));
    EXPECT_EQ(outcome.outcome, "failed");
    EXPECT_EQ(outcome.reason_code, "connection_failed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["outcome"], "failed");
    const std::string message = hub_.failures[0]["message"];
    EXPECT_EQ(message.find(dir_.string()), std::string::npos) << message;
    EXPECT_EQ(message.find("missing.db"), std::string::npos) << message;
    EXPECT_NE(logs().find("connection_failed"), std::string::npos);
    EXPECT_NE(registry_.render().find("secure_agent_jobs_total{outcome=\"failed\"} 1\n"),
              std::string::npos);
}

TEST_F(JobRunnerTest, UploadRejectionIsDeliveryFailed) {
    hub_.chunk_status = 409;
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "demo")));
    EXPECT_EQ(outcome.outcome, "failed");
    EXPECT_EQ(outcome.reason_code, "delivery_failed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "delivery_failed");
    EXPECT_TRUE(hub_.completions.empty());
}

TEST_F(JobRunnerTest, PolicyFiltersAreAppliedAndTheJobCanOnlyNarrowThem) {
    // The policy excludes secret_.*; the job asks for everything.
    auto all = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "demo")));
    ASSERT_EQ(all.outcome, "succeeded") << logs();
    ASSERT_EQ(hub_.uploads.size(), 1u);
    auto tables = metadata::parse_chunk(hub_.uploads[0].body);
    ASSERT_TRUE(tables);
    for (const auto& record : *tables) {
        EXPECT_NE(std::get<metadata::Table>(record).name, "secret_salaries");
    }
    EXPECT_EQ(tables->size(), 3u);

    // The job narrows further: only orders.
    auto narrowed = runner_->run(
        envelope(testing::sign_job(key_, "cid_1", "J2", "L2", "demo", "extract_metadata",
                                   json{{"tables", {{"include", {"orders"}}}}}),
                 "J2", "L2"));
    ASSERT_EQ(narrowed.outcome, "succeeded") << logs();
    ASSERT_EQ(hub_.uploads.size(), 2u);
    auto only = metadata::parse_chunk(hub_.uploads[1].body);
    ASSERT_TRUE(only);
    ASSERT_EQ(only->size(), 1u);
    EXPECT_EQ(std::get<metadata::Table>((*only)[0]).name, "orders");

    // Asking for what the policy excludes is refused before any worker runs.
    auto outside = runner_->run(
        envelope(testing::sign_job(key_, "cid_1", "J3", "L3", "demo", "extract_metadata",
                                   json{{"tables", {{"include", {"secret_salaries"}}}}}),
                 "J3", "L3"));
    EXPECT_EQ(outside.outcome, "refused");
    EXPECT_EQ(outside.reason_code, "filter_outside_policy");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "filter_outside_policy");
    EXPECT_EQ(hub_.uploads.size(), 2u);
}

TEST_F(JobRunnerTest, InteractiveOperationsCompleteWithAResultAndNoChunks) {
    for (const std::string op : {"test_connection", "preflight", "list_schemas"}) {
        const std::string id = "J-" + op;
        auto outcome = runner_->run(
            envelope(testing::sign_job(key_, "cid_1", id, "L-" + op, "demo", op), id, "L-" + op));
        ASSERT_EQ(outcome.outcome, "succeeded") << op << logs();
    }
    EXPECT_TRUE(hub_.uploads.empty());
    ASSERT_EQ(hub_.completions.size(), 3u);
    EXPECT_EQ(hub_.completions[0]["result"]["connected"], true);
    EXPECT_TRUE(hub_.completions[0]["chunks"].empty());
    EXPECT_TRUE(hub_.completions[1]["result"].contains("checks"));
    const json& schemas = hub_.completions[2]["result"]["schemas"];
    ASSERT_TRUE(schemas.is_array());
    ASSERT_FALSE(schemas.empty());
    EXPECT_EQ(schemas[0]["schema"], "main");
}

TEST_F(JobRunnerTest, AWorkerCrashFailsTheJobAndTheSupervisorCarriesOn) {
    auto crashed = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "crash-1")));
    EXPECT_EQ(crashed.outcome, "failed");
    EXPECT_EQ(crashed.reason_code, "worker_crashed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "worker_crashed");
    EXPECT_NE(hub_.failures[0]["message"].get<std::string>().find("SIGSEGV"), std::string::npos)
        << hub_.failures[0]["message"];
    EXPECT_NE(registry_.render().find("secure_agent_worker_crashes_total 1\n"), std::string::npos);

    // The next job runs normally.
    auto next =
        runner_->run(envelope(testing::sign_job(key_, "cid_1", "J2", "L2", "demo"), "J2", "L2"));
    EXPECT_EQ(next.outcome, "succeeded") << logs();
    // Nothing is left in the spool.
    EXPECT_TRUE(fs::is_empty(spool_));
}

TEST_F(JobRunnerTest, TheHubCancelsARunningJob) {
    heartbeat_ = std::chrono::seconds(1);
    make_runner();
    hub_.cancel = true;
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "slow-1")));
    EXPECT_EQ(outcome.outcome, "cancelled");
    EXPECT_EQ(outcome.reason_code, "cancelled");
    ASSERT_FALSE(hub_.heartbeats.empty());
    EXPECT_EQ(hub_.heartbeats[0]["lease_id"], "L1");
    EXPECT_TRUE(hub_.heartbeats[0]["progress"].is_object());
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "cancelled");
    EXPECT_TRUE(hub_.completions.empty());
    EXPECT_GT(beats_, 0);
}

TEST_F(JobRunnerTest, AWorkerIgnoringSigtermIsKilledAfterTheGracePeriod) {
    heartbeat_ = std::chrono::seconds(1);
    make_runner();
    hub_.cancel = true;
    const auto start = std::chrono::steady_clock::now();
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "hang-1")));
    EXPECT_EQ(outcome.outcome, "cancelled");
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
    EXPECT_NE(logs().find("SIGKILL"), std::string::npos) << logs();
}

TEST_F(JobRunnerTest, ALostLeaseAbortsTheJobWithoutReportingIt) {
    heartbeat_ = std::chrono::seconds(1);
    make_runner();
    hub_.heartbeat_status = 409;
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "slow-1")));
    EXPECT_EQ(outcome.outcome, "aborted");
    EXPECT_EQ(outcome.reason_code, "lease_lost");
    // Another agent may hold the job now: nothing more is sent for it.
    EXPECT_TRUE(hub_.failures.empty());
    EXPECT_TRUE(hub_.completions.empty());
}

TEST_F(JobRunnerTest, ALeaseThatCannotBeRenewedBeforeItExpiresAbortsTheJob) {
    heartbeat_ = std::chrono::seconds(1);
    make_runner();
    hub_.heartbeat_status = 503;  // the hub is unreachable: no renewal, no verdict
    const auto start = std::chrono::steady_clock::now();
    auto outcome =
        runner_->run(jobs::LeaseEnvelope{"L1", "J1", util::unix_seconds() + 8,
                                         testing::sign_job(key_, "cid_1", "J1", "L1", "slow-1")});
    EXPECT_EQ(outcome.outcome, "aborted");
    EXPECT_EQ(outcome.reason_code, "lease_lost");
    // Given up before the lease ran out (a safety margin), after retrying.
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
    EXPECT_GE(hub_.heartbeats.size(), 2u);
    EXPECT_TRUE(hub_.failures.empty());
    EXPECT_NE(logs().find("could not be renewed"), std::string::npos) << logs();
}

TEST_F(JobRunnerTest, ADatabaseSourceOutsideTheEgressPolicyNeverReachesAWorker) {
    auto config = config::parse_config(
        "agent: {id: edge-1, state_dir: " + dir_.string() +
        "}\n"
        "hub:\n  url: https://hub.test\n  job_signing_public_key: k.pem\n"
        "  client_id: cid_1\n  client_secret: {secret: \"files/x\"}\n"
        "secret_stores: {files: {type: file, path: /s}}\n"
        "sources:\n  - {name: shop, connector: postgres, host: db.example.com, database: shop,\n"
        "     user: {secret: \"files/db#user\"}, password: {secret: \"files/db#password\"}}\n");
    ASSERT_TRUE(config) << config.error().describe();
    *config_ = std::move(*config);
    // Nothing allowed: the source's implicit rule is not in this policy.
    const egress::EgressPolicy policy(egress::PolicyOptions{});
    secrets::SecretStores stores;
    std::vector<egress::ConnectionRecord> records;
    runner_ = std::make_unique<JobRunner>(
        *config_, *verifier_, *policy_, *hub_client_, logger_, metrics_,
        JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH,
                           .spool_root = spool_,
                           .egress = &policy,
                           .secrets = &stores,
                           .on_connection = [&](const egress::ConnectionRecord& record) {
                               records.push_back(record);
                           }});
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "shop")));
    EXPECT_EQ(outcome.outcome, "failed");
    EXPECT_EQ(outcome.reason_code, "connection_failed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    const std::string message = hub_.failures[0]["message"];
    EXPECT_NE(message.find("db.example.com:5432 not in egress allowlist"), std::string::npos)
        << message;
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].decision, "denied");
    EXPECT_EQ(records[0].host, "db.example.com");
    EXPECT_EQ(records[0].job_id, "J1");
    EXPECT_EQ(logs().find("job worker started"), std::string::npos);
}

TEST_F(JobRunnerTest, ADatabaseCredentialThatCannotBeReadFailsTheJobWithoutNamingIt) {
    auto config = config::parse_config(
        "agent: {id: edge-1, state_dir: " + dir_.string() +
        "}\n"
        "hub:\n  url: https://hub.test\n  job_signing_public_key: k.pem\n"
        "  client_id: cid_1\n  client_secret: {secret: \"files/x\"}\n"
        "secret_stores: {files: {type: file, path: /s}}\n"
        "sources:\n  - {name: shop, connector: postgres, host: 127.0.0.1, port: 1, database: s,\n"
        "     user: {secret: \"files/db#user\"}, password: {secret: \"files/db#password\"}}\n");
    ASSERT_TRUE(config) << config.error().describe();
    *config_ = std::move(*config);
    egress::PolicyOptions options;
    options.allow.push_back(
        egress::AllowRule{.host = "127.0.0.1", .port = 1, .origin = "sources[0]"});
    const egress::EgressPolicy policy(std::move(options));
    secrets::SecretStores stores;  // no store named "files": the read fails
    runner_ =
        std::make_unique<JobRunner>(*config_, *verifier_, *policy_, *hub_client_, logger_, metrics_,
                                    JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH,
                                                       .spool_root = spool_,
                                                       .egress = &policy,
                                                       .secrets = &stores});
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "shop")));
    EXPECT_EQ(outcome.reason_code, "connection_failed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    const std::string message = hub_.failures[0]["message"];
    EXPECT_NE(message.find("the user of source \"shop\" could not be read"), std::string::npos)
        << message;
    EXPECT_EQ(message.find("files/db"), std::string::npos) << message;
    EXPECT_EQ(logs().find("job worker started"), std::string::npos);
}

TEST_F(JobRunnerTest, AJobLongerThanItsLimitTimesOut) {
    policy_text_ = R"(version: 1
rules:
  - name: short
    sources: ["*"]
    operations: [extract_metadata]
    limits: {max_duration: 1s}
)";
    auto policy = jobs::parse_policy(policy_text_, "policy.yaml");
    ASSERT_TRUE(policy) << policy.error().describe();
    *policy_ = std::move(*policy);
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "slow-1")));
    EXPECT_EQ(outcome.outcome, "failed");
    EXPECT_EQ(outcome.reason_code, "timeout");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "timeout");
    EXPECT_NE(hub_.failures[0]["message"].get<std::string>().find("rule short"), std::string::npos);
}

TEST_F(JobRunnerTest, ShutdownStopsTheWorkerAndLeavesTheJobToItsLease) {
    std::thread stopper([this] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        stop_ = true;
    });
    auto outcome = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "slow-1")));
    stopper.join();
    EXPECT_EQ(outcome.outcome, "aborted");
    EXPECT_EQ(outcome.reason_code, "shutdown");
    EXPECT_TRUE(hub_.failures.empty());
}

}  // namespace
}  // namespace sa::agent::app
