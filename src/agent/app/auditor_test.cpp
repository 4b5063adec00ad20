// App-level audit tests: the whole control loop against the fake hub, with a
// real audit log in a temp dir, read back and verified afterwards.
#include "agent/app/auditor.h"
#include "agent/app/custody.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/app/run_loop.h"
#include "agent/app/test_fake_hub.h"
#include "agent/audit/format.h"
#include "agent/audit/verify.h"
#include "agent/identity/agent_key.h"
#include "common/crypto/random.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using testing::FakeHub;

constexpr const char* kSecretValue = "s3cret-value-never-logged";
constexpr const char* kSecretPath = "hub/client-secret";

class MemoryStore final : public secrets::SecretStore {
  public:
    Result<secrets::SecretValue> read(const secrets::SecretRef&) override {
        return secrets::SecretValue::copy_of(kSecretValue);
    }
};

class AuditedLoopTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-audited-" + crypto::random_token(8));
        fs::create_directories(dir_);
        source_path_ = (dir_ / "source-catalog.db").string();
        testing::make_source_db(source_path_);
        auto config =
            config::parse_config("agent: {id: edge-1, state_dir: " + (dir_ / "state").string() +
                                 "}\n"
                                 "hub:\n  url: https://hub.test\n  job_signing_public_key: k.pem\n"
                                 "  client_id: cid_1\n  client_secret: {secret: \"files/" +
                                 kSecretPath +
                                 "\"}\n"
                                 "secret_stores: {files: {type: file, path: /s}}\n"
                                 "audit: {batch_interval_ms: 1}\n"
                                 "sources:\n  - {name: demo, connector: sqlite, path: " +
                                 source_path_ + "}\n");
        ASSERT_TRUE(config) << config.error().describe();
        config_ = std::make_unique<config::Config>(std::move(*config));

        auto agent_key = identity::AgentKey::load_or_create(config_->agent.state_dir);
        ASSERT_TRUE(agent_key) << agent_key.error().describe();
        agent_key_ = std::make_unique<identity::AgentKey>(std::move(*agent_key));
        auditor_ = std::make_unique<Auditor>(Auditor::Options{.fail_closed = true}, readiness_,
                                             metrics_, logger_);
        audit::Options options;
        options.agent_id = config_->agent.id;
        options.batch_interval_ms = 1;
        options.on_failure = [this](const std::string& reason) { auditor_->on_failure(reason); };
        auto opened = audit::AuditLog::open(config_->audit.dir, std::move(options), *agent_key_);
        ASSERT_TRUE(opened) << opened.error().describe();
        log_ = std::move(opened->log);
        auditor_->attach(log_.get());

        stores_.add("files", std::make_unique<MemoryStore>());
        recorder_ = std::make_unique<SecretAccessRecorder>(*auditor_);
        recorder_->start();
        stores_.set_observer(
            [this](const secrets::AccessEvent& event) { recorder_->on_access(event); });
        tokens_ = std::make_unique<auth::TokenClient>(
            hub_, stores_.reader("hub client secret"),
            auth::TokenClient::Options{
                .token_url = "https://hub.test/oauth2/token",
                .client_id = "cid_1",
                .client_secret = config_->hub.client_secret,
                .on_token = [this](const auth::TokenEvent& e) { audit_token_event(*auditor_, e); }},
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
            JobRunner::Options{.worker_executable = SA_TEST_WORKER_PATH, .spool_root = spool_},
            auditor_.get());
    }
    void TearDown() override {
        auditor_->attach(nullptr);
        log_.reset();
        fs::remove_all(dir_);
    }

    void run_loop() {
        RunLoop::Options options;
        options.poll_wait_seconds = 5;
        options.auditor = auditor_.get();
        options.sleep = [this](std::chrono::milliseconds delay) {
            sleeps_.push_back(delay);
            if (sleeps_.size() >= max_sleeps_) stop_ = true;
        };
        RunLoop loop(options, *tokens_, *hub_client_, *runner_, readiness_, metrics_, logger_,
                     stop_);
        loop.run();
    }

    // Stops the loop once it asks for a second lease.
    void stop_at_second_lease() {
        hub_.on_request = [this](const std::string& path) {
            if (path == protocol::kLeasePath && hub_.lease_requests.size() == 1) stop_ = true;
        };
    }

    // Closes the log and returns every record line, in order.
    std::vector<std::string> closed_log_lines() {
        auditor_->attach(nullptr);
        EXPECT_TRUE(log_->close());
        std::vector<std::string> lines;
        auto segments = audit::list_segments(config_->audit.dir);
        EXPECT_TRUE(segments);
        if (!segments) return lines;
        for (const auto& name : *segments) {
            std::ifstream in(fs::path(config_->audit.dir) / name);
            for (std::string line; std::getline(in, line);) lines.push_back(line);
        }
        return lines;
    }

    std::vector<audit::Record> records(const std::vector<std::string>& lines) {
        std::vector<audit::Record> out;
        for (const auto& line : lines) {
            auto record = audit::parse_record_line(line);
            EXPECT_TRUE(record) << line;
            if (record) out.push_back(std::move(*record));
        }
        return out;
    }

    static std::vector<std::string> types(const std::vector<audit::Record>& records) {
        std::vector<std::string> out;
        for (const auto& r : records) out.push_back(r.type);
        return out;
    }

    void expect_verifies() {
        auto report = audit::verify_log(config_->audit.dir, agent_key_->public_key());
        ASSERT_TRUE(report) << report.error().describe();
        EXPECT_TRUE(report->intact());
        EXPECT_GT(report->checkpoints, 0u);
    }

    void expect_nothing_sensitive(const std::vector<std::string>& lines) {
        for (const auto& line : lines) {
            EXPECT_EQ(line.find(kSecretValue), std::string::npos) << line;
            EXPECT_EQ(line.find(kSecretPath), std::string::npos) << line;
            EXPECT_EQ(line.find("source-catalog.db"), std::string::npos) << line;
            EXPECT_EQ(line.find(dir_.string()), std::string::npos) << line;
            EXPECT_EQ(line.find("\"tok\""), std::string::npos) << line;  // the access token
        }
    }

    fs::path dir_;
    std::string source_path_;
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
    std::unique_ptr<identity::AgentKey> agent_key_;
    std::unique_ptr<Auditor> auditor_;
    std::unique_ptr<SecretAccessRecorder> recorder_;
    std::unique_ptr<audit::AuditLog> log_;
    std::unique_ptr<auth::TokenClient> tokens_;
    std::unique_ptr<control::HubClient> hub_client_;
    std::unique_ptr<jobs::JobVerifier> verifier_;
    std::string spool_;
    jobs::Policy policy_ = jobs::default_policy();
    std::unique_ptr<JobRunner> runner_;
};

TEST_F(AuditedLoopTest, SuccessfulJobLeavesTheCustodyChainInOrder) {
    const std::string jws = testing::sign_job(key_, "cid_1", "J1", "L1", "demo");
    hub_.queue_job("J1", "L1", jws);
    stop_at_second_lease();
    run_loop();
    ASSERT_EQ(hub_.completions.size(), 1u);
    ASSERT_FALSE(hub_.uploads.empty());

    const auto lines = closed_log_lines();
    const auto recs = records(lines);
    std::vector<std::string> expected{"secret.accessed", "token.fetched", "job.received",
                                      "job.verified",    "job.started",   "job.sandboxed"};
    for (size_t i = 0; i < hub_.uploads.size(); ++i) expected.push_back("delivery.chunk");
    expected.push_back("job.finished");
    expected.push_back("delivery.accepted");
    EXPECT_EQ(types(recs), expected);

    // Every job record carries the job id; the received JWS is pinned by digest.
    for (size_t i = 2; i < recs.size(); ++i) EXPECT_EQ(recs[i].job_id, "J1") << recs[i].type;
    EXPECT_EQ(recs[2].fields["jws_sha256"], crypto::sha256_hex(jws));
    EXPECT_EQ(recs[2].fields["kid"], key_.public_key().key_id());
    EXPECT_EQ(recs[2].fields["lease_id"], "L1");
    EXPECT_EQ(recs[4].fields["source"], "demo");
    EXPECT_EQ(recs[4].fields["sensitivity"], "default");
    EXPECT_EQ(recs[3].fields["policy_rule"], "default");
    EXPECT_TRUE(recs[5].fields["applied"].is_array());
    EXPECT_EQ(recs[6].fields["sha256"], crypto::sha256_hex(hub_.uploads[0].body));
    EXPECT_EQ(recs[6].fields["size"], hub_.uploads[0].body.size());
    const auto& finished = recs[recs.size() - 2].fields;
    EXPECT_EQ(finished["outcome"], "succeeded");
    EXPECT_EQ(finished["tables"], 2);
    EXPECT_EQ(finished["views"], 1);
    EXPECT_EQ(finished["chunks"], hub_.uploads.size());
    EXPECT_EQ(recs.back().fields["hub_status"], "succeeded");

    // The secret path only as HMAC, never the value.
    EXPECT_EQ(recs[0].fields["store"], "files");
    EXPECT_EQ(recs[0].fields["purpose"], "hub client secret");
    EXPECT_EQ(recs[0].fields["path"], log_->hmac(kSecretPath));
    EXPECT_EQ(recs[0].fields["outcome"], "ok");
    EXPECT_EQ(recs[0].fields["attempts"], 1);
    EXPECT_EQ(recs[0].fields["cached"], false);
    EXPECT_TRUE(recs[0].fields["latency_ms"].is_number_integer());
    EXPECT_EQ(recs[1].fields["client_id"], "cid_1");
    EXPECT_EQ(recs[1].fields["expires_in"], 900);
    expect_nothing_sensitive(lines);
    expect_verifies();

    // The records the runner wrote form a complete custody chain, with the
    // signed job re-verified by the hub's key.
    const auto hub_public = key_.public_key();
    auto custody = check_custody(config_->audit.dir, agent_key_->public_key(), "J1", &hub_public);
    ASSERT_TRUE(custody) << custody.error().describe();
    EXPECT_EQ(custody->status, "complete");
    EXPECT_TRUE(custody->signature_checked);
    ASSERT_EQ(custody->attempts.size(), 1u);
    for (const auto& link : custody->attempts[0].links) EXPECT_TRUE(link.ok) << link.detail;
}

TEST_F(AuditedLoopTest, SecretAccessRecordsHoldNoPlainPathNoErrorTextAndTheJob) {
    SecretAccessRecorder recorder(*auditor_);
    // Before start() (the agent's audit log is not open yet) it is held...
    recorder.on_access(secrets::AccessEvent{.store = "vault",
                                            .path = "prod/warehouse-db",
                                            .key = "password",
                                            .purpose = "source password",
                                            .job_id = "J9",
                                            .outcome = "permission_denied",
                                            .error = "secret store \"vault\" path "
                                                     "\"prod/warehouse-db\": HTTP 403",
                                            .latency_ms = 12,
                                            .attempts = 1});
    recorder.start();  // ...and written now.
    const auto lines = closed_log_lines();
    const auto recs = records(lines);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].type, "secret.accessed");
    EXPECT_EQ(recs[0].job_id, "J9");
    EXPECT_EQ(recs[0].fields["store"], "vault");
    EXPECT_EQ(recs[0].fields["path"], log_->hmac("prod/warehouse-db"));
    EXPECT_EQ(recs[0].fields["key"], log_->hmac("password"));
    EXPECT_EQ(recs[0].fields["purpose"], "source password");
    EXPECT_EQ(recs[0].fields["outcome"], "permission_denied");
    EXPECT_EQ(recs[0].fields["latency_ms"], 12);
    EXPECT_FALSE(recs[0].fields.contains("error"));
    for (const auto& line : lines) EXPECT_EQ(line.find("warehouse-db"), std::string::npos);
}

TEST_F(AuditedLoopTest, RefusedJobIsRecordedWithItsReason) {
    const auto other = crypto::Ed25519PrivateKey::generate();
    hub_.queue_job("J2", "L2", testing::sign_job(other, "cid_1", "J2", "L2", "demo"));
    stop_at_second_lease();
    run_loop();
    ASSERT_EQ(hub_.failures.size(), 1u);

    const auto lines = closed_log_lines();
    const auto recs = records(lines);
    EXPECT_EQ(types(recs), (std::vector<std::string>{"secret.accessed", "token.fetched",
                                                     "job.received", "job.refused"}));
    ASSERT_EQ(recs.size(), 4u);
    EXPECT_EQ(recs[3].job_id, "J2");
    EXPECT_EQ(recs[3].fields["reason_code"], "unknown_key");
    EXPECT_TRUE(recs[3].fields["message"].is_string());
    expect_nothing_sensitive(lines);
    expect_verifies();
}

TEST_F(AuditedLoopTest, PolicyRefusalsNameTheRuleThatMadeThem) {
    auto policy = jobs::parse_policy(R"(version: 1
rules:
  - name: setup-only
    sources: [demo]
    operations: [test_connection]
)",
                                     "policy.yaml");
    ASSERT_TRUE(policy) << policy.error().describe();
    policy_ = std::move(*policy);
    hub_.queue_job("J3", "L3", testing::sign_job(key_, "cid_1", "J3", "L3", "demo"));
    stop_at_second_lease();
    run_loop();
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "operation_not_allowed");
    EXPECT_TRUE(hub_.uploads.empty());

    const auto recs = records(closed_log_lines());
    ASSERT_EQ(recs.size(), 4u);
    EXPECT_EQ(recs[3].type, "job.refused");
    EXPECT_EQ(recs[3].fields["reason_code"], "operation_not_allowed");
    EXPECT_EQ(recs[3].fields["policy_rule"], "default-deny");
    EXPECT_EQ(recs[3].fields["policy_sha256"], policy_.sha256_hex);
    EXPECT_NE(recs[3].fields["message"].get<std::string>().find("extract_metadata"),
              std::string::npos);
    expect_verifies();
}

TEST_F(AuditedLoopTest, RefusedTokenIsRecorded) {
    hub_.on_request = [this](const std::string&) { stop_ = true; };
    // A 401 from the token endpoint: swap the fake's answer for this one request.
    class Refusing final : public egress::Transport {
      public:
        Result<egress::HttpResponse> send(const egress::HttpRequest&) override {
            return FakeHub::reply(401, testing::json{{"error", "invalid_client"}});
        }
    } refusing;
    auth::TokenClient tokens(
        refusing, stores_.reader("hub client secret"),
        auth::TokenClient::Options{
            .token_url = "https://hub.test/oauth2/token",
            .client_id = "cid_1",
            .client_secret = config_->hub.client_secret,
            .on_token = [this](const auth::TokenEvent& e) { audit_token_event(*auditor_, e); }},
        clock_);
    EXPECT_FALSE(tokens.access_token());
    const auto recs = records(closed_log_lines());
    // The secret was read (and audited) before the hub refused it.
    ASSERT_EQ(types(recs), (std::vector<std::string>{"secret.accessed", "token.refused"}));
    EXPECT_EQ(recs[0].fields["purpose"], "hub client secret");
    EXPECT_EQ(recs[1].fields["client_id"], "cid_1");
    EXPECT_NE(recs[1].fields["reason"].get<std::string>().find("401"), std::string::npos);
}

TEST_F(AuditedLoopTest, FailClosedStopsLeasingAndTurnsReadinessRed) {
    hub_.queue_job("J1", "L1", testing::sign_job(key_, "cid_1", "J1", "L1", "demo"));
    auditor_->on_failure("write failed: No space left on device");
    max_sleeps_ = 2;
    run_loop();
    EXPECT_TRUE(hub_.paths.empty());  // no token, no lease request
    EXPECT_TRUE(hub_.lease_requests.empty());
    ASSERT_EQ(sleeps_.size(), 2u);
    EXPECT_FALSE(readiness_.ready());
    EXPECT_EQ(readiness_.reason(),
              "audit log cannot be written: write failed: No space left on device");
    const std::string metrics = registry_.render();
    EXPECT_NE(metrics.find("secure_agent_audit_failed 1\n"), std::string::npos);
    EXPECT_NE(metrics.find("secure_agent_ready 0\n"), std::string::npos);
    readiness_.set_ready();  // a later hub success does not clear it
    EXPECT_FALSE(readiness_.ready());
}

TEST_F(AuditedLoopTest, FailClosedAbortsTheJobInProgressBeforeComplete) {
    hub_.queue_job("J1", "L1", testing::sign_job(key_, "cid_1", "J1", "L1", "demo"));
    hub_.on_request = [this](const std::string& path) {
        if (path.find("/chunks/") != std::string::npos) auditor_->on_failure("injected");
    };
    max_sleeps_ = 1;
    run_loop();
    EXPECT_TRUE(hub_.completions.empty());
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["outcome"], "failed");
    EXPECT_EQ(hub_.failures[0]["reason_code"], "delivery_failed");
    EXPECT_NE(hub_.failures[0]["message"].get<std::string>().find("audit log cannot be written"),
              std::string::npos);
    EXPECT_EQ(hub_.lease_requests.size(), 1u);  // no lease after the failure
    EXPECT_FALSE(readiness_.ready());
}

TEST_F(AuditedLoopTest, FailClosedRunsNoJobLeasedAfterTheFailure) {
    auditor_->on_failure("injected");
    runner_->run(jobs::LeaseEnvelope{"L1", "J1", util::unix_seconds() + 600,
                                     testing::sign_job(key_, "cid_1", "J1", "L1", "demo")});
    EXPECT_TRUE(hub_.uploads.empty());
    EXPECT_TRUE(hub_.completions.empty());
    ASSERT_EQ(hub_.failures.size(), 1u);
    EXPECT_EQ(hub_.failures[0]["reason_code"], "delivery_failed");
}

TEST_F(AuditedLoopTest, FailOpenKeepsWorking) {
    Auditor open_auditor(Auditor::Options{.fail_closed = false}, readiness_, metrics_, logger_);
    open_auditor.on_failure("injected");
    EXPECT_TRUE(open_auditor.failed());
    EXPECT_FALSE(open_auditor.blocked());
    readiness_.set_ready();
    EXPECT_TRUE(readiness_.ready());
    EXPECT_NE(registry_.render().find("secure_agent_audit_failed 1\n"), std::string::npos);
}

// A real write failure: RLIMIT_FSIZE in a forked child makes the log's writes
// fail with EFBIG; the auditor must end up blocked with readiness red.
TEST(AuditorTest, RealWriteFailureBlocksTheAgent) {
    const fs::path dir = fs::temp_directory_path() / ("sa-auditfail-" + crypto::random_token(8));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);
        auto key = identity::AgentKey::load_or_create((dir / "state").string());
        if (!key) ::_exit(10);
        observe::Logger logger{"edge-1", observe::Level::debug, [](std::string_view) {}};
        observe::Registry registry;
        observe::AgentMetrics metrics{registry, "test"};
        observe::Readiness readiness;
        readiness.set_ready();
        Auditor auditor(Auditor::Options{.fail_closed = true}, readiness, metrics, logger);
        audit::Options options;
        options.agent_id = "edge-1";
        options.batch_interval_ms = 1;
        options.on_failure = [&auditor](const std::string& reason) { auditor.on_failure(reason); };
        auto opened = audit::AuditLog::open((dir / "audit").string(), std::move(options), *key);
        if (!opened) ::_exit(11);
        auditor.attach(opened->log.get());
        rlimit limit{8192, 8192};
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(12);
        bool write_failed = false;
        for (int i = 0; i < 1000 && !write_failed; ++i) {
            write_failed = !auditor.record_durable("test.filler", {{"pad", std::string(200, 'x')}});
        }
        if (!write_failed) ::_exit(13);
        if (!auditor.blocked()) ::_exit(14);
        if (readiness.ready()) ::_exit(15);
        if (readiness.reason().rfind("audit log cannot be written: ", 0) != 0) ::_exit(16);
        if (registry.render().find("secure_agent_audit_failed 1\n") == std::string::npos) {
            ::_exit(17);
        }
        auditor.attach(nullptr);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    fs::remove_all(dir);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(AuditorTest, WithoutALogNothingIsRecordedAndNothingFails) {
    Auditor auditor;
    EXPECT_TRUE(auditor.record("x.y", {{"a", 1}}));
    EXPECT_TRUE(auditor.record_durable("x.y", {{"a", 1}}, "J1"));
    EXPECT_EQ(auditor.hmac("v"), "");
    EXPECT_FALSE(auditor.blocked());
}

}  // namespace
}  // namespace sa::agent::app
