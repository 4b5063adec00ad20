#include "agent/audit/verify.h"

#include "agent/audit/test_support.h"
#include "common/crypto/encoding.h"

namespace sa::agent::audit {
namespace {

using namespace testing;
using nlohmann::json;

// 50 records "n": 0..49 in one segment, checkpoints at 10, 20, 30, 40, 50.
class VerifyTest : public ::testing::Test {
  protected:
    VerifyTest() : key_(make_key(tmp_.path() / "state")) {}

    void SetUp() override {
        auto opened = AuditLog::open(dir(), test_options(10), key_);
        ASSERT_TRUE(opened) << opened.error().describe();
        for (int i = 0; i < 50; ++i) {
            ASSERT_TRUE(opened->log->append("test.event", {{"n", i}, {"who", "op"}}));
            // Batches never straddle a multiple of 10, so checkpoints land exactly there.
            if (i % 10 == 9) {
                ASSERT_TRUE(opened->log->flush());
            }
        }
        ASSERT_TRUE(opened->log->close());
        ASSERT_EQ(read_lines(checkpoints()).size(), 5u);
    }

    std::string dir() const { return (tmp_.path() / "state" / "audit").string(); }
    fs::path segment() const { return fs::path(dir()) / segment_name(1); }
    fs::path checkpoints() const { return fs::path(dir()) / kCheckpointsFile; }

    Damage damage(const crypto::Ed25519PublicKey* other = nullptr) {
        auto report = verify_log(dir(), other ? *other : key_.public_key());
        EXPECT_TRUE(report) << report.error().describe();
        if (!report || report->intact()) {
            ADD_FAILURE() << "damage not detected";
            return Damage{};
        }
        return *report->damage;
    }

    void expect(const Damage& d, DamageKind kind, const std::string& file, uint64_t line,
                std::optional<uint64_t> seq) {
        EXPECT_EQ(to_string(d.kind), std::string(to_string(kind))) << d.describe();
        EXPECT_EQ(d.file, file) << d.describe();
        EXPECT_EQ(d.line, line) << d.describe();
        EXPECT_EQ(d.seq, seq) << d.describe();
    }

    TempDir tmp_;
    identity::AgentKey key_;
};

TEST_F(VerifyTest, IntactLogVerifies) {
    auto report = verify_log(dir(), key_.public_key());
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->intact()) << report->damage->describe();
    EXPECT_EQ(report->records, 50u);
    EXPECT_EQ(report->checkpoints, 5u);
    EXPECT_EQ(report->checkpointed_size, 50u);
    auto cps = read_checkpoints(dir());
    ASSERT_TRUE(cps);
    EXPECT_EQ(report->root, cps->back().root);
}

TEST_F(VerifyTest, ModifiedFieldInMiddleRecord) {
    auto lines = read_lines(segment());
    auto pos = lines[20].find("\"who\":\"op\"");
    ASSERT_NE(pos, std::string::npos);
    lines[20].replace(pos, 10, "\"who\":\"me\"");
    write_lines(segment(), lines);
    Damage d = damage();
    expect(d, DamageKind::modified, "segment-000001.jsonl", 21, 20);
    EXPECT_EQ(d.describe().rfind("modified at segment-000001.jsonl:21 (seq 20): ", 0), 0u)
        << d.describe();
}

TEST_F(VerifyTest, ModifiedLastRecordCaughtByCheckpointRoot) {
    auto lines = read_lines(segment());
    auto pos = lines[49].find("\"who\":\"op\"");
    ASSERT_NE(pos, std::string::npos);
    lines[49].replace(pos, 10, "\"who\":\"me\"");
    write_lines(segment(), lines);
    expect(damage(), DamageKind::modified, "segment-000001.jsonl", 50, 49);
}

TEST_F(VerifyTest, ModifiedPrevFieldBlamesThatRecord) {
    auto lines = read_lines(segment());
    auto rec = parse_record_line(lines[30]);
    ASSERT_TRUE(rec);
    auto pos = lines[30].find(rec->prev);
    ASSERT_NE(pos, std::string::npos);
    lines[30].replace(pos, rec->prev.size(), crypto::base64_encode(std::string(32, 'A')));
    write_lines(segment(), lines);
    expect(damage(), DamageKind::modified, "segment-000001.jsonl", 31, 30);
}

TEST_F(VerifyTest, RemovedMiddleLine) {
    auto lines = read_lines(segment());
    lines.erase(lines.begin() + 20);
    write_lines(segment(), lines);
    expect(damage(), DamageKind::removed, "segment-000001.jsonl", 21, 21);
}

TEST_F(VerifyTest, SwappedLines) {
    auto lines = read_lines(segment());
    std::swap(lines[20], lines[21]);
    write_lines(segment(), lines);
    expect(damage(), DamageKind::reordered, "segment-000001.jsonl", 21, 21);
}

TEST_F(VerifyTest, InsertedCopiedLine) {
    auto lines = read_lines(segment());
    lines.insert(lines.begin() + 30, lines[10]);  // copy of seq 10 after seq 29
    write_lines(segment(), lines);
    expect(damage(), DamageKind::inserted, "segment-000001.jsonl", 31, 10);
}

TEST_F(VerifyTest, InsertedCopyOfALaterLine) {
    auto lines = read_lines(segment());
    lines.insert(lines.begin() + 5, lines[40]);  // copy of seq 40 before seq 5
    write_lines(segment(), lines);
    expect(damage(), DamageKind::inserted, "segment-000001.jsonl", 6, 40);
}

TEST_F(VerifyTest, TruncatedBelowLastCheckpoint) {
    auto lines = read_lines(segment());
    lines.resize(45);
    write_lines(segment(), lines);
    Damage d = damage();
    expect(d, DamageKind::truncated, "segment-000001.jsonl", 45, 44);
    EXPECT_NE(d.detail.find("covers 50 records; the log holds 45"), std::string::npos) << d.detail;
}

TEST_F(VerifyTest, FlippedSignatureByte) {
    auto lines = read_lines(checkpoints());
    json cp = json::parse(lines[1]);
    auto sig = crypto::base64_decode(cp["signature"].get<std::string>());
    ASSERT_TRUE(sig);
    (*sig)[7] = static_cast<char>((*sig)[7] ^ 0x01);
    cp["signature"] = crypto::base64_encode(*sig);
    lines[1] = cp.dump();
    write_lines(checkpoints(), lines);
    expect(damage(), DamageKind::bad_signature, "checkpoints.jsonl", 2, 19);
}

TEST_F(VerifyTest, CheckpointSignedByAnotherKey) {
    auto other = make_key(tmp_.path() / "other");
    auto lines = read_lines(checkpoints());
    auto cp = parse_checkpoint_line(lines[2]);
    ASSERT_TRUE(cp);
    cp->key_id = other.key_id();
    cp->signature = crypto::base64_encode(
        other.sign(checkpoint_note(cp->agent_id, cp->tree_size, cp->root, cp->ts)));
    lines[2] = to_json(*cp).dump();
    write_lines(checkpoints(), lines);
    Damage d = damage();
    expect(d, DamageKind::bad_signature, "checkpoints.jsonl", 3, 29);
    EXPECT_NE(d.detail.find(other.key_id()), std::string::npos) << d.detail;

    // Same forgery, but claiming the right key id: the signature itself fails.
    cp->key_id = key_.key_id();
    lines[2] = to_json(*cp).dump();
    write_lines(checkpoints(), lines);
    expect(damage(), DamageKind::bad_signature, "checkpoints.jsonl", 3, 29);
}

TEST_F(VerifyTest, WrongPublicKeyFailsFirstCheckpoint) {
    auto other = make_key(tmp_.path() / "other");
    auto pub = other.public_key();
    expect(damage(&pub), DamageKind::bad_signature, "checkpoints.jsonl", 1, 9);
}

TEST_F(VerifyTest, MalformedRecordLine) {
    auto lines = read_lines(segment());
    lines[3] = "not json";
    write_lines(segment(), lines);
    expect(damage(), DamageKind::malformed, "segment-000001.jsonl", 4, 3);
}

TEST_F(VerifyTest, NonCanonicalRecordIsMalformed) {
    auto lines = read_lines(segment());
    lines[3].insert(1, " ");
    write_lines(segment(), lines);
    expect(damage(), DamageKind::malformed, "segment-000001.jsonl", 4, 3);
}

TEST_F(VerifyTest, CheckpointRootForgedWithoutKeyIsBadSignature) {
    auto lines = read_lines(checkpoints());
    json cp = json::parse(lines[0]);
    cp["root"] = crypto::base64_encode(std::string(32, 'Z'));
    lines[0] = cp.dump();
    write_lines(checkpoints(), lines);
    expect(damage(), DamageKind::bad_signature, "checkpoints.jsonl", 1, 9);
}

TEST_F(VerifyTest, CheckpointsOutOfOrder) {
    auto lines = read_lines(checkpoints());
    std::swap(lines[1], lines[2]);
    write_lines(checkpoints(), lines);
    expect(damage(), DamageKind::reordered, "checkpoints.jsonl", 3, 19);
}

TEST_F(VerifyTest, MalformedCheckpointLine) {
    auto lines = read_lines(checkpoints());
    lines[3] = "{\"tree_size\":40}";
    write_lines(checkpoints(), lines);
    expect(damage(), DamageKind::malformed, "checkpoints.jsonl", 4, std::nullopt);
}

TEST(VerifySegments, RemovedWholeSegmentIsNamed) {
    TempDir tmp;
    auto key = make_key(tmp.path() / "state");
    const std::string dir = (tmp.path() / "audit").string();
    Options o = test_options(1000);
    o.segment_max_bytes = 600;
    auto opened = AuditLog::open(dir, o, key);
    ASSERT_TRUE(opened);
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(opened->log->append("seg.test", {{"i", i}}));
    ASSERT_TRUE(opened->log->close());
    auto segments = list_segments(dir);
    ASSERT_TRUE(segments);
    ASSERT_GE(segments->size(), 4u);
    auto intact = verify_log(dir, key.public_key());
    ASSERT_TRUE(intact);
    EXPECT_TRUE(intact->intact());

    // Records of segment 2 are missing: the gap is named at segment 3's first line.
    auto first_of_3 = parse_record_line(read_lines(fs::path(dir) / (*segments)[2])[0]);
    auto first_of_2 = parse_record_line(read_lines(fs::path(dir) / (*segments)[1])[0]);
    ASSERT_TRUE(first_of_2 && first_of_3);
    fs::remove(fs::path(dir) / (*segments)[1]);
    auto report = verify_log(dir, key.public_key());
    ASSERT_TRUE(report);
    ASSERT_FALSE(report->intact());
    EXPECT_EQ(report->damage->kind, DamageKind::removed) << report->damage->describe();
    EXPECT_EQ(report->damage->file, (*segments)[2]);
    EXPECT_EQ(report->damage->line, 1u);
    EXPECT_EQ(report->damage->seq, first_of_3->seq);
    EXPECT_NE(report->damage->detail.find("seq " + std::to_string(first_of_2->seq) + ".."),
              std::string::npos)
        << report->damage->detail;
}

TEST(VerifyMissingDir, IsAnError) {
    TempDir tmp;
    auto key = make_key(tmp.path() / "state");
    auto report = verify_log((tmp.path() / "nope").string(), key.public_key());
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, ErrorCode::not_found);
}

}  // namespace
}  // namespace sa::agent::audit
