#include "agent/app/audit_commands.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/audit/audit_log.h"
#include "agent/audit/field_hasher.h"
#include "agent/audit/format.h"
#include "agent/audit/retention.h"
#include "agent/identity/agent_key.h"
#include "common/crypto/encoding.h"
#include "common/crypto/random.h"

namespace sa::agent::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class AuditCommandsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() / ("sa-audit-cli-" + crypto::random_token(8));
        auto key = identity::AgentKey::load_or_create(state());
        ASSERT_TRUE(key) << key.error().describe();
        audit::Options o;
        o.agent_id = "edge-1";
        o.batch_interval_ms = 1;
        o.checkpoint_every_records = 4;
        auto opened = audit::AuditLog::open(dir(), o, *key);
        ASSERT_TRUE(opened) << opened.error().describe();
        auto& log = *opened->log;
        ASSERT_TRUE(log.append_durable("agent.started", {{"version", "1.0"}}));
        for (int i = 0; i < 8; ++i)
            ASSERT_TRUE(log.append_durable("job.finished", {{"rows", i}},
                                           {i % 2 ? "job-odd" : "job-even", "", ""}));
        ASSERT_TRUE(log.append_durable("secret.accessed",
                                       {{"path", log.hmac("db/prod/password")},
                                        {"note", "line1\nforged 2026-01-01T00:00:00.000Z #0"}}));
        hashed_ = log.hmac("db/prod/password");
        ASSERT_TRUE(log.close());
    }
    void TearDown() override { fs::remove_all(root_); }

    std::string state() const { return (root_ / "state").string(); }
    std::string dir() const { return (root_ / "state" / "audit").string(); }
    std::string pub() const { return (root_ / "state" / identity::kPublicKeyFile).string(); }

    fs::path root_;
    std::string hashed_;
    std::ostringstream out_;
    std::ostringstream err_;
};

long count_lines(const std::string& text) {
    return std::count(text.begin(), text.end(), '\n');
}

std::vector<std::string> lines_of(const fs::path& p) {
    std::ifstream in(p);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
}

TEST_F(AuditCommandsTest, VerifyIntactPrintsSummary) {
    EXPECT_EQ(audit_verify(dir(), pub(), out_, err_), kExitOk) << err_.str();
    EXPECT_NE(out_.str().find("intact: 10 records"), std::string::npos) << out_.str();
    EXPECT_EQ(count_lines(out_.str()), 1);
}

TEST_F(AuditCommandsTest, VerifyNamesDamage) {
    fs::path seg = fs::path(dir()) / audit::segment_name(1);
    auto lines = lines_of(seg);
    auto pos = lines[3].find("\"rows\":2");
    ASSERT_NE(pos, std::string::npos);
    lines[3].replace(pos, 8, "\"rows\":7");
    std::ofstream(seg, std::ios::trunc) << [&] {
        std::string all;
        for (auto& l : lines) all += l + "\n";
        return all;
    }();
    EXPECT_EQ(audit_verify(dir(), pub(), out_, err_), kExitFailure);
    EXPECT_EQ(err_.str().rfind("audit verify: modified at segment-000001.jsonl:4 (seq 3): ", 0), 0u)
        << err_.str();
}

TEST_F(AuditCommandsTest, VerifyWithMissingKeyIsAnInputError) {
    EXPECT_EQ(audit_verify(dir(), (root_ / "nope.pem").string(), out_, err_), kExitConfig);
}

TEST_F(AuditCommandsTest, ProveAndVerifyProofs) {
    std::ostringstream proof;
    ASSERT_EQ(audit_prove_inclusion(dir(), 5, proof, err_), kExitOk) << err_.str();
    fs::path file = root_ / "inclusion.json";
    std::ofstream(file) << proof.str();
    EXPECT_EQ(audit_verify_proof(file.string(), pub(), out_, err_), kExitOk) << err_.str();
    EXPECT_NE(out_.str().find("inclusion proof OK (checkpoint signature verified)"),
              std::string::npos);
    EXPECT_EQ(audit_verify_proof(file.string(), "", out_, err_), kExitOk) << err_.str();

    json doc = json::parse(proof.str());
    doc["index"] = 4;
    std::ofstream(file, std::ios::trunc) << doc.dump();
    EXPECT_EQ(audit_verify_proof(file.string(), pub(), out_, err_), kExitFailure);

    std::ostringstream consistency;
    ASSERT_EQ(audit_prove_consistency(dir(), 4, 10, consistency, err_), kExitOk) << err_.str();
    std::ofstream(file, std::ios::trunc) << consistency.str();
    EXPECT_EQ(audit_verify_proof(file.string(), pub(), out_, err_), kExitOk) << err_.str();
    EXPECT_EQ(audit_prove_consistency(dir(), 3, 10, consistency, err_), kExitConfig);
}

TEST_F(AuditCommandsTest, ShowFiltersAndEscapes) {
    ASSERT_EQ(audit_show(dir(), {"job-odd", "", ""}, out_, err_), kExitOk) << err_.str();
    auto text = out_.str();
    EXPECT_EQ(count_lines(text), 4) << text;
    EXPECT_NE(text.find(" job.finished agent:edge-1 job=job-odd rows=1\n"), std::string::npos)
        << text;

    std::ostringstream typed;
    ASSERT_EQ(audit_show(dir(), {"", "secret.*", ""}, typed, err_), kExitOk);
    EXPECT_EQ(count_lines(typed.str()), 1) << typed.str();
    EXPECT_NE(typed.str().find("\\n"), std::string::npos) << typed.str();
    EXPECT_EQ(typed.str().find("db/prod/password"), std::string::npos);

    std::ostringstream future;
    ASSERT_EQ(audit_show(dir(), {"", "", "2999-01-01T00:00:00Z"}, future, err_), kExitOk);
    EXPECT_EQ(future.str(), "");
    std::ostringstream past;
    ASSERT_EQ(audit_show(dir(), {"", "", "2000-01-01T00:00:00.5+02:00"}, past, err_), kExitOk);
    EXPECT_EQ(count_lines(past.str()), 10);
    EXPECT_EQ(audit_show(dir(), {"", "", "yesterday"}, past, err_), kExitConfig);
}

TEST_F(AuditCommandsTest, HashMatchesRecordedValue) {
    ASSERT_EQ(audit_hash(dir(), "db/prod/password", out_, err_), kExitOk) << err_.str();
    EXPECT_EQ(out_.str(), hashed_ + "\n");
    std::ostringstream none;
    EXPECT_EQ(audit_hash((root_ / "empty").string(), "x", none, err_), kExitConfig);
}

// An audit directory whose salt comes from a file secret store
// (audit.hmac_salt), and the agent config that names it.
TEST(AuditHashStoreSaltTest, HashNeedsTheConfigToReadTheSaltFromTheStore) {
    const fs::path root = fs::temp_directory_path() / ("sa-audit-salt-" + crypto::random_token(8));
    const std::string state = (root / "state").string();
    const std::string dir = state + "/audit";
    const std::string salt = "a-salt-of-more-than-32-bytes-shared-by-agents";
    fs::create_directories(root / "secrets");
    std::ofstream(root / "secrets" / "audit-salt") << crypto::base64_encode(salt) << "\n";
    std::ofstream(root / "agent.yaml")
        << "agent: {id: edge-1, state_dir: " << state << "}\n"
        << "hub: {url: \"https://hub.example.com\", job_signing_public_key: /k.pem, "
           "client_id: c, client_secret: {secret: files/hub}}\n"
        << "secret_stores: {files: {type: file, path: " << (root / "secrets").string() << "}}\n"
        << "audit: {dir: " << dir << ", hmac_salt: {secret: files/audit-salt}}\n";
    const std::string config = (root / "agent.yaml").string();

    std::string hashed;
    {
        auto key = identity::AgentKey::load_or_create(state);
        ASSERT_TRUE(key);
        auto hasher = audit::FieldHasher::from_secret(
            secrets::SecretValue::from(crypto::base64_encode(salt)), "files/audit-salt");
        ASSERT_TRUE(hasher) << hasher.error().describe();
        audit::Options o;
        o.agent_id = "edge-1";
        o.batch_interval_ms = 1;
        o.hasher = std::make_shared<const audit::FieldHasher>(std::move(*hasher));
        auto opened = audit::AuditLog::open(dir, o, *key);
        ASSERT_TRUE(opened) << opened.error().describe();
        hashed = opened->log->hmac("db/prod/password");
        ASSERT_TRUE(opened->log->append_durable("secret.accessed", {{"path", hashed}}));
        ASSERT_TRUE(opened->log->close());
    }
    ASSERT_FALSE(fs::exists(fs::path(dir) / audit::kSaltFile));

    std::ostringstream out;
    std::ostringstream err;
    ASSERT_EQ(audit_hash(dir, "db/prod/password", out, err, config), kExitOk) << err.str();
    EXPECT_EQ(out.str(), hashed + "\n");

    std::ostringstream none;
    std::ostringstream why;
    EXPECT_EQ(audit_hash(dir, "db/prod/password", none, why), kExitConfig);
    EXPECT_EQ(none.str(), "");
    EXPECT_NE(why.str().find("has no hmac.salt"), std::string::npos) << why.str();
    EXPECT_NE(why.str().find("pass --config"), std::string::npos) << why.str();

    // Another salt in the store: refused, not a silently different HMAC.
    std::ofstream(root / "secrets" / "audit-salt", std::ios::trunc)
        << crypto::base64_encode(salt + "-rotated") << "\n";
    std::ostringstream changed;
    std::ostringstream refused;
    EXPECT_EQ(audit_hash(dir, "db/prod/password", changed, refused, config), kExitConfig);
    EXPECT_EQ(changed.str(), "");
    EXPECT_NE(refused.str().find("now holds a different salt"), std::string::npos) << refused.str();
    EXPECT_EQ(refused.str().find(crypto::base64_encode(salt)), std::string::npos);
    fs::remove_all(root);
}

TEST_F(AuditCommandsTest, PreserveMarksSegmentsByJobAndLists) {
    AuditPreserveRequest request;
    request.job_id = "job-odd";
    EXPECT_EQ(audit_preserve(dir(), request, out_, err_), kExitConfig);
    EXPECT_NE(err_.str().find("--reason is required"), std::string::npos);

    request.reason = "incident 4711";
    ASSERT_EQ(audit_preserve(dir(), request, out_, err_), kExitOk) << err_.str();
    EXPECT_EQ(out_.str(), audit::segment_name(1) + "  preserved\n");
    EXPECT_TRUE(audit::is_preserved(dir(), audit::segment_name(1)));

    std::ostringstream listed;
    ASSERT_EQ(audit_preserve(dir(), {.list = true}, listed, err_), kExitOk);
    EXPECT_NE(listed.str().find(audit::segment_name(1) + "  preserved "), std::string::npos);
    EXPECT_NE(listed.str().find(": incident 4711"), std::string::npos) << listed.str();

    std::ostringstream none;
    EXPECT_EQ(audit_preserve(dir(), {.job_id = "job-404", .reason = "x"}, none, err_),
              kExitFailure);
    EXPECT_EQ(audit_preserve(dir(), {.since = "last week", .reason = "x"}, none, err_),
              kExitConfig);
    EXPECT_EQ(audit_preserve(dir(), {.segment = "passwd", .reason = "x"}, none, err_), kExitConfig);

    ASSERT_EQ(audit_unpreserve(dir(), audit::segment_name(1), out_, err_), kExitOk);
    EXPECT_FALSE(audit::is_preserved(dir(), audit::segment_name(1)));
}

// A clock the test moves: records on day 0, then 40 days later.
class MovableClock final : public audit::Clock {
  public:
    int64_t now_millis() const override { return now.load(); }
    std::atomic<int64_t> now{1'700'000'000'000};
};

TEST(AuditRetentionCommandsTest, VerifyAndProveAfterRetention) {
    const fs::path root = fs::temp_directory_path() / ("sa-audit-ret-" + crypto::random_token(8));
    const std::string state = (root / "state").string();
    const std::string dir = state + "/audit";
    auto key = identity::AgentKey::load_or_create(state);
    ASSERT_TRUE(key);
    MovableClock clock;
    audit::Options o;
    o.agent_id = "edge-1";
    o.batch_interval_ms = 1;
    o.retention_days = 30;
    o.prune_first_delay_ms = 3600 * 1000;  // only when the test asks
    auto opened = audit::AuditLog::open(dir, o, *key, &clock);
    ASSERT_TRUE(opened) << opened.error().describe();
    auto& log = *opened->log;
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(log.append_durable("old.event", {{"i", i}}));
    clock.now += 40ll * 24 * 3600 * 1000;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(log.append_durable("new.event", {{"i", i}}));
    auto pruned = log.prune_now();
    ASSERT_TRUE(pruned) << pruned.error().describe();
    EXPECT_EQ(pruned->records, 5u);
    ASSERT_TRUE(log.close());

    std::ostringstream out, err;
    const std::string pub = state + "/" + identity::kPublicKeyFile;
    ASSERT_EQ(audit_verify(dir, pub, out, err), kExitOk) << err.str();
    EXPECT_NE(out.str().find("(5 of them removed by retention, 1 anchor; oldest kept seq 5)"),
              std::string::npos)
        << out.str();
    std::ostringstream shown;
    ASSERT_EQ(audit_show(dir, {"", "audit.pruned", ""}, shown, err), kExitOk);
    EXPECT_EQ(count_lines(shown.str()), 1) << shown.str();

    std::ostringstream removed;
    EXPECT_NE(audit_prove_inclusion(dir, 2, removed, err), kExitOk);
    EXPECT_NE(err.str().find("removed by retention"), std::string::npos) << err.str();
    std::ostringstream proof;
    ASSERT_EQ(audit_prove_inclusion(dir, 6, proof, err), kExitOk) << err.str();
    const fs::path file = root / "p.json";
    std::ofstream(file) << proof.str();
    EXPECT_EQ(audit_verify_proof(file.string(), pub, out, err), kExitOk) << err.str();
    fs::remove_all(root);
}

}  // namespace
}  // namespace sa::agent::app
