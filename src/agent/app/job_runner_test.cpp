#include "agent/app/job_runner.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "agent/app/test_fake_hub.h"
#include "common/crypto/random.h"
#include "common/metadata/model.h"

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
                                 (dir_ / "missing.db").string() + "}\n");
        ASSERT_TRUE(config) << config.error().describe();
        config_ = std::make_unique<config::Config>(std::move(*config));
        verifier_ = std::make_unique<jobs::JobVerifier>(key_.public_key(),
                                                        jobs::JobVerifier::Options{"cid_1", 60});
        hub_client_ = std::make_unique<control::HubClient>(
            hub_, tokens_,
            control::HubClient::Options{.hub_url = "https://hub.test",
                                        .agent_id = "edge-1",
                                        .sleep = [](std::chrono::milliseconds) { return true; }});
        runner_ =
            std::make_unique<JobRunner>(*config_, *verifier_, *hub_client_, logger_, metrics_);
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

TEST_F(JobRunnerTest, RefusesJobSignedByAnotherKey) {
    const auto other = crypto::Ed25519PrivateKey::generate();
    const auto outcome =
        runner_->run(envelope(testing::sign_job(other, "cid_1", "J1", "L1", "demo")));
    EXPECT_EQ(outcome.outcome, "refused");
    EXPECT_EQ(outcome.reason_code, "bad_signature");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["outcome"], "refused");
    EXPECT_EQ(hub_.failures[0]["reason_code"], "bad_signature");
    EXPECT_EQ(hub_.failures[0]["lease_id"], "L1");
    EXPECT_EQ(hub_.failures[0]["job_id"], "J1");
    EXPECT_TRUE(hub_.uploads.empty());
    EXPECT_TRUE(hub_.completions.empty());
    const std::string text = registry_.render();
    EXPECT_NE(text.find("secure_agent_job_refusals_total{reason=\"bad_signature\"} 1\n"),
              std::string::npos);
    EXPECT_NE(text.find("secure_agent_jobs_total{outcome=\"refused\"} 1\n"), std::string::npos);
    EXPECT_NE(logs().find("\"bad_signature\""), std::string::npos);
}

TEST_F(JobRunnerTest, RefusesUnknownSourceAndUnsupportedOperation) {
    auto unknown = runner_->run(envelope(testing::sign_job(key_, "cid_1", "J1", "L1", "nope")));
    EXPECT_EQ(unknown.reason_code, "unknown_source");
    auto op = runner_->run(
        envelope(testing::sign_job(key_, "cid_1", "J2", "L2", "demo", "drop_tables"), "J2", "L2"));
    EXPECT_EQ(op.reason_code, "unsupported_operation");
    ASSERT_EQ(hub_.failures.size(), 2u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "unknown_source");
    EXPECT_EQ(hub_.failures[1]["reason_code"], "unsupported_operation");
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
    EXPECT_EQ(outcome.reason_code, "extraction_failed");
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["outcome"], "failed");
    const std::string message = hub_.failures[0]["message"];
    EXPECT_EQ(message.find(dir_.string()), std::string::npos) << message;
    EXPECT_NE(message.find("\"gone\""), std::string::npos);
    // The local log has the details.
    EXPECT_NE(logs().find("missing.db"), std::string::npos);
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

}  // namespace
}  // namespace sa::agent::app
