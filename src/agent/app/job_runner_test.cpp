#include "agent/app/job_runner.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "agent/app/test_fake_hub.h"
#include "agent/delivery/fingerprint_state.h"
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

// A job as the hub signs it, with the extraction mode claims of incremental
// runs (absent mode: an old hub's full job).
std::string sign_extraction(const crypto::Ed25519PrivateKey& key, const std::string& job_id,
                            const std::string& lease_id, const std::string& mode,
                            const std::string& baseline_job_id = "") {
    const int64_t now = util::unix_seconds();
    json claims{{"iss", protocol::kIssuer},
                {"aud", "cid_1"},
                {"jti", lease_id},
                {"iat", now},
                {"nbf", now},
                {"exp", now + 600},
                {"job_id", job_id},
                {"app", "test-app"},
                {"source", "demo"},
                {"operation", protocol::kOperationExtractMetadata}};
    if (!mode.empty()) claims["mode"] = mode;
    if (!baseline_job_id.empty()) claims["baseline_job_id"] = baseline_job_id;
    return jose::sign(key, key.public_key().key_id(), protocol::kJobType, claims);
}

// The fake hub, except that completions are answered with a given status
// (the hub's refusal of a delta: 409 baseline_mismatch).
class RejectingCompletions final : public egress::Transport {
  public:
    explicit RejectingCompletions(FakeHub& inner) : inner_(inner) {}
    Result<egress::HttpResponse> send(const egress::HttpRequest& request) override {
        if (request.url.ends_with(protocol::kCompleteSuffix)) {
            rejected.push_back(json::parse(std::string(request.body)));
            return FakeHub::reply(409, json{{"error", "baseline_mismatch"},
                                            {"error_description", "expected baseline J0"}});
        }
        return inner_.send(request);
    }
    std::vector<json> rejected;

  private:
    FakeHub& inner_;
};

// "table NAME" / "removed table NAME" for each record of an upload, sorted.
std::vector<std::string> records_of(const std::string& body) {
    std::vector<std::string> out;
    auto records = metadata::parse_chunk(body);
    EXPECT_TRUE(records) << records.error().describe();
    if (!records) return out;
    for (const auto& r : *records) {
        if (const auto* t = std::get_if<metadata::Table>(&r)) out.push_back("table " + t->name);
        if (const auto* x = std::get_if<metadata::Removal>(&r)) {
            out.push_back("removed " + x->object + " " + x->name);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

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
    std::string state_file() const { return (dir_ / "fingerprints" / "demo.ndjson").string(); }
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

TEST_F(JobRunnerTest, AnIncrementalJobDeliversOnlyChangesAndRemovals) {
    // A full run (an old hub: no mode claim) records the state.
    ASSERT_EQ(runner_->run(envelope(sign_extraction(key_, "J1", "L1", ""))).outcome, "succeeded")
        << logs();
    ASSERT_EQ(hub_.completions.size(), 1u);
    EXPECT_FALSE(hub_.completions[0].contains("delta"));
    auto state = delivery::read_state(state_file());
    ASSERT_TRUE(state) << state.error().describe();
    EXPECT_EQ(state->job_id, "J1");
    EXPECT_EQ(state->objects.size(), 3u);  // secret_salaries is outside the policy
    struct stat st {};
    ASSERT_EQ(::stat(state_file().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    {
        auto db = sqlite::Database::open(db_path_, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db);
        ASSERT_TRUE(
            db->exec("ALTER TABLE orders ADD COLUMN note TEXT;"
                     "CREATE TABLE shipments (id INTEGER PRIMARY KEY, order_id INTEGER);"
                     "DROP VIEW big_orders;"
                     "CREATE VIEW order_notes AS SELECT id, note FROM orders;"
                     "DROP TABLE customers;"
                     "ALTER TABLE secret_salaries ADD COLUMN bonus NUMERIC;"));
    }
    const auto outcome =
        runner_->run(envelope(sign_extraction(key_, "J2", "L2", "incremental", "J1"), "J2", "L2"));
    ASSERT_EQ(outcome.outcome, "succeeded") << logs();
    ASSERT_EQ(hub_.uploads.size(), 2u);
    EXPECT_EQ(hub_.uploads[1].job_id, "J2");
    EXPECT_EQ(records_of(hub_.uploads[1].body),
              (std::vector<std::string>{"removed table big_orders", "removed table customers",
                                        "table order_notes", "table orders", "table shipments"}));
    ASSERT_EQ(hub_.completions.size(), 2u);
    const json& done = hub_.completions[1];
    EXPECT_EQ(done["delta"], (json{{"baseline_job_id", "J1"}}));
    // The counts are what was delivered: two tables and a view.
    EXPECT_EQ(done["summary"]["tables"], 2);
    EXPECT_EQ(done["summary"]["views"], 1);
    EXPECT_NE(logs().find("incremental job runs as a delta"), std::string::npos) << logs();

    // The state now describes J2: every object seen, delivered or not.
    state = delivery::read_state(state_file());
    ASSERT_TRUE(state);
    EXPECT_EQ(state->job_id, "J2");
    std::set<std::string> names;
    for (const auto& e : state->objects) names.insert(e.name);
    EXPECT_EQ(names, (std::set<std::string>{"orders", "shipments", "order_notes"}));

    // Nothing changed since: the next delta is empty, the spool is clean.
    ASSERT_EQ(
        runner_->run(envelope(sign_extraction(key_, "J3", "L3", "incremental", "J2"), "J3", "L3"))
            .outcome,
        "succeeded")
        << logs();
    EXPECT_EQ(hub_.uploads.size(), 2u);
    ASSERT_EQ(hub_.completions.size(), 3u);
    EXPECT_EQ(hub_.completions[2]["delta"]["baseline_job_id"], "J2");
    EXPECT_TRUE(hub_.completions[2]["chunks"].empty());
    EXPECT_TRUE(fs::is_empty(spool_));
}

TEST_F(JobRunnerTest, AnIncrementalJobAgainstAnotherBaselineRunsFull) {
    ASSERT_EQ(runner_->run(envelope(sign_extraction(key_, "J1", "L1", "full"))).outcome,
              "succeeded")
        << logs();
    // The hub's catalog moved on to a job this agent did not run.
    const auto outcome = runner_->run(
        envelope(sign_extraction(key_, "J2", "L2", "incremental", "J-other"), "J2", "L2"));
    ASSERT_EQ(outcome.outcome, "succeeded") << logs();
    ASSERT_EQ(hub_.completions.size(), 2u);
    EXPECT_FALSE(hub_.completions[1].contains("delta"));
    ASSERT_EQ(hub_.uploads.size(), 2u);
    EXPECT_EQ(records_of(hub_.uploads[1].body),
              (std::vector<std::string>{"table big_orders", "table customers", "table orders"}));
    EXPECT_NE(logs().find("incremental job runs as a full extraction"), std::string::npos);
    EXPECT_NE(logs().find("the fingerprint state is of job J1"), std::string::npos) << logs();
    auto state = delivery::read_state(state_file());
    ASSERT_TRUE(state);
    EXPECT_EQ(state->job_id, "J2");
}

TEST_F(JobRunnerTest, AnIncrementalJobWithOtherFiltersOrACorruptStateRunsFull) {
    ASSERT_EQ(runner_->run(envelope(sign_extraction(key_, "J1", "L1", "full"))).outcome,
              "succeeded");
    // Other filters: the baseline would declare filtered-out objects removed.
    const int64_t now = util::unix_seconds();
    json claims{{"iss", protocol::kIssuer},
                {"aud", "cid_1"},
                {"jti", "L2"},
                {"iat", now},
                {"nbf", now},
                {"exp", now + 600},
                {"job_id", "J2"},
                {"app", "test-app"},
                {"source", "demo"},
                {"operation", protocol::kOperationExtractMetadata},
                {"mode", "incremental"},
                {"baseline_job_id", "J1"},
                {"filters", {{"tables", {{"include", {"orders"}}}}}}};
    ASSERT_EQ(
        runner_
            ->run(envelope(jose::sign(key_, key_.public_key().key_id(), protocol::kJobType, claims),
                           "J2", "L2"))
            .outcome,
        "succeeded")
        << logs();
    EXPECT_FALSE(hub_.completions.back().contains("delta"));
    EXPECT_NE(logs().find("filters differ"), std::string::npos) << logs();

    // A corrupt state file: a full run, logged, and a fresh state.
    ASSERT_TRUE(util::write_file_atomic(state_file(), "{\"job_id\": \"J2\", garbage\n", 0600));
    ASSERT_EQ(
        runner_->run(envelope(sign_extraction(key_, "J3", "L3", "incremental", "J2"), "J3", "L3"))
            .outcome,
        "succeeded")
        << logs();
    EXPECT_FALSE(hub_.completions.back().contains("delta"));
    EXPECT_NE(logs().find("corrupt"), std::string::npos) << logs();
    auto state = delivery::read_state(state_file());
    ASSERT_TRUE(state) << state.error().describe();
    EXPECT_EQ(state->job_id, "J3");
    EXPECT_EQ(state->objects.size(), 3u);
}

TEST_F(JobRunnerTest, ARejectedCompletionLeavesTheStateUnchanged) {
    ASSERT_EQ(runner_->run(envelope(sign_extraction(key_, "J1", "L1", "full"))).outcome,
              "succeeded");
    const auto before = util::read_file(state_file());
    ASSERT_TRUE(before);
    {
        auto db = sqlite::Database::open(db_path_, sqlite::Database::Mode::read_write_create);
        ASSERT_TRUE(db);
        ASSERT_TRUE(db->exec("CREATE TABLE shipments (id INTEGER PRIMARY KEY);"));
    }
    RejectingCompletions rejecting(hub_);
    control::HubClient client(
        rejecting, tokens_,
        control::HubClient::Options{.hub_url = "https://hub.test",
                                    .agent_id = "edge-1",
                                    .sleep = [](std::chrono::milliseconds) { return true; }});
    JobRunner runner(*config_, *verifier_, *policy_, client, logger_, metrics_,
                     JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH,
                                        .spool_root = spool_,
                                        .cancel_grace = std::chrono::seconds(1)});
    const auto outcome =
        runner.run(envelope(sign_extraction(key_, "J2", "L2", "incremental", "J1"), "J2", "L2"));
    EXPECT_EQ(outcome.outcome, "failed");
    EXPECT_EQ(outcome.reason_code, "delivery_failed");
    ASSERT_EQ(rejecting.rejected.size(), 1u);
    EXPECT_EQ(rejecting.rejected[0]["delta"]["baseline_job_id"], "J1");
    // The delta was uploaded, but the hub did not take it: the state stays J1's.
    EXPECT_EQ(records_of(hub_.uploads.back().body), std::vector<std::string>{"table shipments"});
    const auto after = util::read_file(state_file());
    ASSERT_TRUE(after);
    EXPECT_EQ(*after, *before);
    EXPECT_TRUE(fs::is_empty(spool_));
}

TEST(FiltersSha256Test, IsTheDigestOfTheCompactFilterArrayInOrder) {
    jobs::ObjectFilters policy;
    policy.tables.exclude = {"secret_.*"};
    jobs::ObjectFilters job;
    job.tables.include = {"orders"};
    const json all = json::array({jobs::to_json(policy), jobs::to_json(job)});
    EXPECT_EQ(filters_sha256({policy, job}), crypto::sha256_hex(all.dump()));
    EXPECT_NE(filters_sha256({policy, job}), filters_sha256({job, policy}));
    EXPECT_EQ(filters_sha256({}), crypto::sha256_hex("[]"));
}

}  // namespace
}  // namespace sa::agent::app
