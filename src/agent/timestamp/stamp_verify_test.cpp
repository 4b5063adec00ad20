#include "agent/timestamp/stamp_verify.h"

#include <nlohmann/json.hpp>

#include "agent/audit/audit_log.h"
#include "agent/egress/http_client.h"
#include "agent/egress/testing/test_pki.h"
#include "agent/egress/testing/tls_test_server.h"
#include "agent/identity/agent_key.h"
#include "agent/timestamp/checkpoint_stamper.h"
#include "agent/timestamp/tsa_test_support.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/util/time.h"

namespace sa::agent::timestamp {
namespace {

using namespace std::chrono_literals;
using namespace tsa_testing;
using nlohmann::json;

// One real, stamped audit log (3 checkpoints: tree sizes 2, 4, 6) built once;
// every test tampers with its own copy.
class StampVerifyTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        suite_ = new TempDir;
        make_test_tsa(suite_->path() / "tsa", "Test TSA CA");
        build_pristine();
    }
    static void TearDownTestSuite() { delete suite_; }

    static std::string tsa_ca() { return (suite_->path() / "tsa" / "ca.pem").string(); }
    static std::string other_ca() { return (suite_->path() / "other" / "ca.pem").string(); }
    static fs::path pristine() { return suite_->path() / "state" / "audit"; }
    static fs::path future() { return suite_->path() / "future"; }

    static void build_pristine() {
        auto pki = agent::testing::TestPki::generate();
        agent::testing::TlsTestServer server(pki);
        server.http().set_keep_alive_max_count(1);  // stop() need not wait out keep-alive
        serve_tsa(server, suite_->path() / "tsa");
        server.start();
        std::string https_ca = agent::testing::write_test_file(
            (suite_->path() / "https-ca.pem").string(), pki.ca.cert_pem);
        auto http = egress::HttpClient::create({.ca_file = https_ca});
        ASSERT_TRUE(http);
        TsaClient tsa(*http, server.url("/tsa"), tsa_ca());
        auto key = identity::AgentKey::load_or_create((suite_->path() / "state").string());
        ASSERT_TRUE(key);

        CheckpointStamper::Options so;
        so.tsa_url = server.url("/tsa");
        auto stamper = CheckpointStamper::open(tsa, pristine().string(), so);
        ASSERT_TRUE(stamper) << stamper.error().describe();
        audit::Options lo;
        lo.agent_id = "edge-1";
        lo.batch_interval_ms = 1;
        lo.checkpoint_every_records = 2;
        lo.checkpoint_interval_ms = 60000;
        CheckpointStamper* s = stamper->stamper.get();
        lo.on_checkpoint = [s](const audit::Checkpoint& cp) { s->submit(cp); };
        auto log = audit::AuditLog::open(pristine().string(), lo, *key);
        ASSERT_TRUE(log) << log.error().describe();
        for (uint64_t size = 2; size <= 6; size += 2) {
            for (int i = 0; i < 2; ++i) ASSERT_TRUE(log->log->append_durable("test.event", {}));
            ASSERT_TRUE(s->wait_for(
                [&](const auto& st) { return st.last_stamped_tree_size == size && !st.pending; },
                10s));
        }
        ASSERT_TRUE(log->log->close());
        s->close(5s);
        ASSERT_EQ(read_lines(pristine() / kTimestampsFile).size(), 3u);

        // A checkpoint dated far in the future, time-stamped now: genTime is
        // then long before the checkpoint's own time.
        fs::create_directories(future());
        audit::Checkpoint cp;
        cp.agent_id = "edge-1";
        cp.tree_size = 1;
        cp.root = crypto::base64_encode(crypto::sha256("root"));
        cp.ts = "2099-01-01T00:00:00.000Z";
        cp.key_id = "k";
        cp.signature = crypto::base64_encode(std::string(64, 'x'));
        std::string cp_line = *audit::canonical_dump(audit::to_json(cp));
        write_lines(future() / audit::kCheckpointsFile, {cp_line});
        auto token = tsa.timestamp(crypto::sha256(cp_line));
        ASSERT_TRUE(token) << token.error().describe();
        json t{{"tree_size", 1},
               {"checkpoint_sha256", crypto::base64_encode(crypto::sha256(cp_line))},
               {"token", crypto::base64_encode(token->der)},
               {"gen_time", util::rfc3339_millis(token->gen_time_unix * 1000)},
               {"tsa", "https://tsa.test"}};
        write_lines(future() / kTimestampsFile, {t.dump()});
        server.stop();
    }

    StampVerifyTest() {
        fs::copy(pristine(), dir(), fs::copy_options::recursive);
        lines_ = read_lines(file());
    }

    std::string dir() const { return (tmp_.path() / "audit").string(); }
    fs::path file() const { return fs::path(dir()) / kTimestampsFile; }
    json line(size_t n) const { return json::parse(lines_.at(n - 1)); }
    void set_line(size_t n, const json& j) {
        lines_.at(n - 1) = j.dump();
        write_lines(file(), lines_);
    }
    void set_raw_line(size_t n, const std::string& text) {
        lines_.at(n - 1) = text;
        write_lines(file(), lines_);
    }

    TimestampDamage damage(const std::optional<std::string>& ca) {
        auto report = verify_timestamps(dir(), ca);
        EXPECT_TRUE(report) << report.error().describe();
        if (!report || report->intact()) {
            ADD_FAILURE() << "no damage reported";
            return {};
        }
        return *report->damage;
    }

    static TempDir* suite_;
    TempDir tmp_;
    std::vector<std::string> lines_;
};

TempDir* StampVerifyTest::suite_ = nullptr;

TEST_F(StampVerifyTest, IntactLogReportsItsTokens) {
    for (const auto& ca : {std::optional<std::string>(tsa_ca()), std::optional<std::string>()}) {
        auto report = verify_timestamps(dir(), ca);
        ASSERT_TRUE(report) << report.error().describe();
        EXPECT_TRUE(report->intact()) << report->damage->describe();
        EXPECT_EQ(report->tokens, 3u);
        EXPECT_EQ(report->signatures_checked, ca.has_value());
        EXPECT_EQ(report->last_stamped_tree_size, 6u);
        EXPECT_EQ(report->last_gen_time, line(3).at("gen_time").get<std::string>());
    }
}

TEST_F(StampVerifyTest, NoTimestampsFileMeansNoTokens) {
    fs::remove(file());
    auto report = verify_timestamps(dir(), tsa_ca());
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->intact());
    EXPECT_EQ(report->tokens, 0u);
    EXPECT_EQ(report->last_stamped_tree_size, 0u);
}

TEST_F(StampVerifyTest, FlippedSignatureByteIsCaughtWithTheCa) {
    json j = line(2);
    auto der = *crypto::base64_decode(j["token"].get<std::string>());
    // The last byte belongs to the signature value (a byte in the embedded
    // copy of the CA certificate would rightly be ignored).
    der.back() ^= 0x01;
    j["token"] = crypto::base64_encode(der);
    set_line(2, j);
    auto d = damage(tsa_ca());
    EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
    EXPECT_EQ(d.line, 2u);
    EXPECT_EQ(d.tree_size, 4u);
    EXPECT_EQ(d.describe().rfind("bad_timestamp at timestamps.jsonl:2 (tree size 4): token "
                                 "signature",
                                 0),
              0u)
        << d.describe();
    // Without the CA only structure and imprint are checked: that cannot see it.
    auto report = verify_timestamps(dir(), std::nullopt);
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->intact());
    EXPECT_FALSE(report->signatures_checked);
}

TEST_F(StampVerifyTest, ChangedCheckpointHashIsATokenForNoCheckpoint) {
    json j = line(2);
    j["checkpoint_sha256"] = crypto::base64_encode(crypto::sha256("another checkpoint"));
    set_line(2, j);
    for (const auto& ca : {std::optional<std::string>(tsa_ca()), std::optional<std::string>()}) {
        auto d = damage(ca);
        EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
        EXPECT_EQ(d.line, 2u);
        EXPECT_NE(d.detail.find("token for a checkpoint that is not in the log"), std::string::npos)
            << d.describe();
    }
}

TEST_F(StampVerifyTest, ChangedCheckpointLineNoLongerMatchesItsToken) {
    auto cp_file = fs::path(dir()) / audit::kCheckpointsFile;
    auto cps = read_lines(cp_file);
    ASSERT_EQ(cps.size(), 3u);
    json cp = json::parse(cps[1]);
    cp["ts"] = "2026-01-01T00:00:00.000Z";
    cps[1] = cp.dump();
    write_lines(cp_file, cps);
    auto d = damage(std::nullopt);
    EXPECT_EQ(d.line, 2u);
    EXPECT_EQ(d.tree_size, 4u);
    EXPECT_NE(d.detail.find("another SHA-256"), std::string::npos) << d.describe();
}

TEST_F(StampVerifyTest, TokenForACheckpointThatDoesNotExist) {
    json j = line(3);
    j["tree_size"] = 99;
    lines_.push_back(j.dump());
    write_lines(file(), lines_);
    auto d = damage(tsa_ca());
    EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
    EXPECT_EQ(d.line, 4u);
    EXPECT_EQ(d.tree_size, 99u);
    EXPECT_NE(d.detail.find("not in the log (no checkpoint with this tree size)"),
              std::string::npos)
        << d.describe();
}

TEST_F(StampVerifyTest, MalformedLinesAreNamed) {
    const std::string good = lines_[1];
    json extra = line(2);
    extra["note"] = "x";
    json missing = line(2);
    missing.erase("tsa");
    json bad_b64 = line(2);
    bad_b64["checkpoint_sha256"] = "not base64!";
    json short_hash = line(2);
    short_hash["checkpoint_sha256"] = crypto::base64_encode("short");
    json bad_time = line(2);
    bad_time["gen_time"] = "yesterday";
    json negative = line(2);
    negative["tree_size"] = -4;
    std::string spaced = good;
    spaced.insert(spaced.find(':') + 1, " ");
    for (const std::string& text :
         {std::string("{not json"), std::string("[]"), spaced, extra.dump(), missing.dump(),
          bad_b64.dump(), short_hash.dump(), bad_time.dump(), negative.dump()}) {
        set_raw_line(2, text);
        auto d = damage(tsa_ca());
        EXPECT_EQ(d.kind, TimestampDamageKind::malformed) << text;
        EXPECT_EQ(d.line, 2u) << text;
        EXPECT_EQ(d.describe().rfind("malformed at timestamps.jsonl:2", 0), 0u) << d.describe();
    }
    // A token that is not DER is not a timestamp either.
    json not_der = json::parse(good);
    not_der["token"] = crypto::base64_encode("not DER");
    set_line(2, not_der);
    auto d = damage(std::nullopt);
    EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
    EXPECT_EQ(d.line, 2u);
    EXPECT_NE(d.detail.find("not a DER timestamp token"), std::string::npos) << d.describe();
}

TEST_F(StampVerifyTest, TokenFromAnotherTsaCaIsRefused) {
    make_test_tsa(suite_->path() / "other", "Other TSA CA");  // only this test needs it
    auto d = damage(other_ca());
    EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
    EXPECT_EQ(d.line, 1u);
    EXPECT_EQ(d.tree_size, 2u);
    EXPECT_NE(d.detail.find("token signature"), std::string::npos) << d.describe();
}

TEST_F(StampVerifyTest, TokenMovedToAnotherCheckpointIsCaughtWithoutTheCa) {
    json first = line(1);
    first["token"] = line(2)["token"];
    set_line(1, first);
    for (const auto& ca : {std::optional<std::string>(tsa_ca()), std::optional<std::string>()}) {
        auto d = damage(ca);
        EXPECT_EQ(d.kind, TimestampDamageKind::bad_timestamp);
        EXPECT_EQ(d.line, 1u);
        EXPECT_NE(d.detail.find("another hash"), std::string::npos) << d.describe();
    }
}

TEST_F(StampVerifyTest, StoredGenTimeMustBeTheTokens) {
    json j = line(3);
    j["gen_time"] = "2020-01-01T00:00:00.000Z";
    set_line(3, j);
    auto d = damage(tsa_ca());
    EXPECT_EQ(d.line, 3u);
    EXPECT_NE(d.detail.find("differs from the token's genTime"), std::string::npos) << d.describe();
}

TEST_F(StampVerifyTest, GenTimeBeforeTheCheckpointIsRefused) {
    auto report = verify_timestamps(future().string(), tsa_ca());
    ASSERT_TRUE(report) << report.error().describe();
    ASSERT_FALSE(report->intact());
    EXPECT_EQ(report->damage->kind, TimestampDamageKind::bad_timestamp);
    EXPECT_EQ(report->damage->line, 1u);
    EXPECT_NE(report->damage->detail.find("more than 5 minutes before"), std::string::npos)
        << report->damage->describe();
}

TEST_F(StampVerifyTest, TornLastLineIsReported) {
    std::string text = read_all(file()) + R"({"checkpoint_sha256":"ab)";
    std::ofstream(file(), std::ios::binary | std::ios::trunc) << text;
    auto d = damage(tsa_ca());
    EXPECT_EQ(d.kind, TimestampDamageKind::malformed);
    EXPECT_EQ(d.line, 4u);
    EXPECT_NE(d.detail.find("incomplete"), std::string::npos);
}

TEST_F(StampVerifyTest, UnreadableCaFileIsAnError) {
    auto report = verify_timestamps(dir(), (tmp_.path() / "missing.pem").string());
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, ErrorCode::io);
}

}  // namespace
}  // namespace sa::agent::timestamp
