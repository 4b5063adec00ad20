#include "agent/audit/retention.h"

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "agent/audit/proof.h"
#include "agent/audit/test_support.h"
#include "agent/audit/verify.h"
#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/merkle/merkle.h"
#include "common/util/time.h"

namespace sa::agent::audit {
namespace {

using namespace testing;
using nlohmann::json;

constexpr int64_t kDay = 86400000;

class FakeClock final : public Clock {
  public:
    int64_t now_millis() const override { return now.load(); }
    std::atomic<int64_t> now{0};
};

class RetentionTest : public ::testing::Test {
  protected:
    RetentionTest() : key_(make_key(tmp_.path() / "state")) {
        clock_.now = *parse_rfc3339_millis("2026-03-01T10:00:00.000Z");
        start_ = clock_.now.load();
    }
    std::string dir() const { return (tmp_.path() / "state" / "audit").string(); }
    fs::path file(const std::string& name) const { return fs::path(dir()) / name; }
    fs::path segment(uint64_t n) const { return file(segment_name(n)); }

    // Checkpoints every 3 records; records are appended one durable batch at
    // a time, so checkpoint sizes are exactly 3, 6, 9, ...
    Options options(int stop_after_step = 0) {
        Options o = test_options(3);
        o.retention_days = 5;
        o.prune_first_delay_ms = 3600 * 1000;  // only prune_now() in most tests
        o.prune_stop_after_step = stop_after_step;
        o.on_pruned = [this](const std::vector<std::string>& segments, uint64_t first,
                             uint64_t last) {
            std::lock_guard lk(mu_);
            pruned_.push_back({segments, first, last});
        };
        return o;
    }

    std::unique_ptr<AuditLog> open_log(Options o, std::vector<std::string>* warnings = nullptr) {
        auto opened = AuditLog::open(dir(), std::move(o), key_, &clock_);
        if (!opened) {
            ADD_FAILURE() << opened.error().describe();
            return nullptr;
        }
        if (warnings) *warnings = opened->warnings;
        return std::move(opened->log);
    }

    void write_day(AuditLog& log, int day, int n, const std::string& job = "") {
        clock_.now = start_ + day * kDay;
        for (int i = 0; i < n; ++i) {
            auto r = log.append_durable("test.event", json{{"day", day}, {"i", i}}, {job, "", ""});
            ASSERT_TRUE(r) << r.error().describe();
        }
    }

    // Segments 1..5 hold seq 0-2 (day 0), 3-5 (day 1), 6-8 (day 2), 9-11
    // (day 6), 12-13 (day 9, active); the clock stays at day 9.
    std::unique_ptr<AuditLog> build(Options o) {
        auto log = open_log(std::move(o));
        if (!log) return nullptr;
        write_day(*log, 0, 3, "job-a");
        write_day(*log, 1, 3);
        write_day(*log, 2, 3);
        write_day(*log, 6, 3, "job-b");
        write_day(*log, 9, 2);
        return log;
    }

    VerifyReport verify() {
        auto report = verify_log(dir(), key_.public_key());
        EXPECT_TRUE(report) << report.error().describe();
        return report ? *report : VerifyReport{};
    }

    std::vector<Record> records_of_type(const std::string& type) {
        std::vector<Record> out;
        auto st = for_each_line(dir(), [&](const Position&, std::string_view line, bool) {
            auto r = parse_record_line(line);
            EXPECT_TRUE(r) << line;
            if (r && r->type == type) out.push_back(*r);
            return true;
        });
        EXPECT_TRUE(st);
        return out;
    }

    std::vector<std::string> segments() {
        auto s = list_segments(dir());
        EXPECT_TRUE(s);
        return s ? *s : std::vector<std::string>{};
    }

    void edit_anchor(size_t index, const std::function<void(json&)>& edit) {
        auto lines = read_lines(file(kRetentionFile));
        ASSERT_LT(index, lines.size());
        json j = json::parse(lines[index]);
        edit(j);
        lines[index] = j.dump();
        write_lines(file(kRetentionFile), lines);
    }

    struct Pruned {
        std::vector<std::string> segments;
        uint64_t first;
        uint64_t last;
    };

    TempDir tmp_;
    identity::AgentKey key_;
    FakeClock clock_;
    int64_t start_ = 0;
    std::mutex mu_;
    std::vector<Pruned> pruned_;
};

std::vector<merkle::Hash> decode_path(const json& doc) {
    std::vector<merkle::Hash> out;
    for (const auto& h : doc["proof"]) out.push_back(*crypto::base64_decode(h.get<std::string>()));
    return out;
}

TEST(RetentionFormat, ParsesTheWritersTimestamps) {
    EXPECT_EQ(parse_rfc3339_millis("1970-01-01T00:00:00.000Z"), 0);
    EXPECT_EQ(parse_rfc3339_millis("2026-11-29T09:54:51.902Z"), 1795946091902);
    for (int64_t ms : {int64_t{0}, int64_t{951782400123}, int64_t{1795946091902}})
        EXPECT_EQ(parse_rfc3339_millis(util::rfc3339_millis(ms)), ms);
    EXPECT_FALSE(parse_rfc3339_millis("2026-11-29T09:54:51Z"));
    EXPECT_FALSE(parse_rfc3339_millis("2026-13-29T09:54:51.902Z"));
    EXPECT_FALSE(parse_rfc3339_millis("2026-11-29 09:54:51.902Z"));
}

TEST(RetentionFormat, AnchorShapeIsChecked) {
    RetentionAnchor a;
    a.first_seq = 5;  // 4 + 1: two perfect subtrees
    a.prev = crypto::base64_encode(crypto::sha256("p"));
    a.frontier = {crypto::base64_encode(crypto::sha256("a")),
                  crypto::base64_encode(crypto::sha256("b"))};
    a.removed = {segment_name(1)};
    a.removed_first_seq = 0;
    a.removed_last_seq = 4;
    a.ts = "2026-03-01T10:00:00.000Z";
    auto parsed = parse_anchor_line(to_json(a).dump());
    ASSERT_TRUE(parsed) << parsed.error().describe();
    EXPECT_EQ(parsed->frontier, a.frontier);
    a.frontier.pop_back();
    EXPECT_FALSE(parse_anchor_line(to_json(a).dump()));
    a.frontier.push_back(crypto::base64_encode(crypto::sha256("b")));
    a.removed_last_seq = 3;
    EXPECT_FALSE(parse_anchor_line(to_json(a).dump()));
    a.removed_last_seq = 4;
    a.removed = {"notes.txt"};
    EXPECT_FALSE(parse_anchor_line(to_json(a).dump()));
}

TEST_F(RetentionTest, RotatesAtTheFirstRecordOfANewUtcDay) {
    auto log = open_log(options());
    ASSERT_TRUE(log);
    clock_.now = *parse_rfc3339_millis("2026-03-01T23:59:59.000Z");
    ASSERT_TRUE(log->append_durable("a", {}));
    ASSERT_TRUE(log->append_durable("b", {}));
    clock_.now = *parse_rfc3339_millis("2026-03-02T00:00:00.500Z");
    ASSERT_TRUE(log->append_durable("c", {}));
    ASSERT_TRUE(log->close());
    ASSERT_EQ(segments(), (std::vector<std::string>{segment_name(1), segment_name(2)}));
    EXPECT_EQ(read_lines(segment(1)).size(), 2u);
    EXPECT_EQ(read_lines(segment(2)).size(), 1u);

    // Reopened on the same day: continues in segment 2; without
    // rotate_daily a new day does not start a segment.
    Options o = options();
    o.rotate_daily = false;
    log = open_log(o);
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append_durable("d", {}));
    clock_.now = *parse_rfc3339_millis("2026-03-03T00:00:00.500Z");
    ASSERT_TRUE(log->append_durable("e", {}));
    ASSERT_TRUE(log->close());
    EXPECT_EQ(segments().size(), 2u);
    EXPECT_EQ(read_lines(segment(2)).size(), 3u);
    EXPECT_TRUE(verify().intact());
}

TEST_F(RetentionTest, PrunesOldSegmentsKeepsActiveAndVerifies) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_EQ(segments().size(), 5u);
    auto result = log->prune_now();
    ASSERT_TRUE(result) << result.error().describe();
    EXPECT_EQ(result->removed,
              (std::vector<std::string>{segment_name(1), segment_name(2), segment_name(3)}));
    EXPECT_EQ(result->records, 9u);
    EXPECT_EQ(segments(), (std::vector<std::string>{segment_name(4), segment_name(5)}));
    {
        std::lock_guard lk(mu_);
        ASSERT_EQ(pruned_.size(), 1u);
        EXPECT_EQ(pruned_[0].segments, result->removed);
        EXPECT_EQ(pruned_[0].first, 0u);
        EXPECT_EQ(pruned_[0].last, 8u);
    }

    auto anchors = read_anchors(dir());
    ASSERT_TRUE(anchors) << anchors.error().describe();
    ASSERT_EQ(anchors->size(), 1u);
    const RetentionAnchor& a = (*anchors)[0].anchor;
    EXPECT_EQ(a.first_seq, 9u);
    EXPECT_EQ(a.removed_first_seq, 0u);
    EXPECT_EQ(a.removed_last_seq, 8u);
    EXPECT_EQ(a.removed, result->removed);
    EXPECT_EQ(a.frontier.size(), 2u);  // 9 = 8 + 1

    auto pruned = records_of_type(kPrunedEventType);
    ASSERT_EQ(pruned.size(), 1u);
    EXPECT_EQ(pruned[0].seq, 14u);
    EXPECT_EQ(pruned[0].fields["first_seq"], 0);
    EXPECT_EQ(pruned[0].fields["last_seq"], 8);
    EXPECT_EQ(pruned[0].fields["count"], 9);
    EXPECT_EQ(pruned[0].fields["retention_days"], 5);
    EXPECT_EQ(pruned[0].fields["segments"], json(result->removed));
    EXPECT_EQ(pruned[0].fields["oldest_ts"], util::rfc3339_millis(start_));
    EXPECT_EQ(pruned[0].fields["newest_ts"], util::rfc3339_millis(start_ + 2 * kDay));

    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 9u);
    EXPECT_EQ(report.anchors, 1u);
    EXPECT_EQ(report.records, 15u);
    EXPECT_EQ(report.removed_by_retention, 9u);
    EXPECT_EQ(report.checkpoints_before_retention, 2u);  // sizes 3 and 6; 9 is checked

    // Nothing more is old enough; the active segment is never removed, even
    // when it is old itself.
    auto again = log->prune_now();
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->removed.empty());
    clock_.now = start_ + 40 * kDay;
    again = log->prune_now();
    ASSERT_TRUE(again);
    EXPECT_EQ(again->removed, std::vector<std::string>{segment_name(4)});
    // The audit.pruned record of a new day started segment 6.
    EXPECT_EQ(segments(), (std::vector<std::string>{segment_name(5), segment_name(6)}));

    // Later records and the checkpoint at close verify; reopening continues.
    ASSERT_TRUE(log->append_durable("after", {}));
    ASSERT_TRUE(log->close());
    report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 12u);
    EXPECT_EQ(report.checkpointed_size, report.records);
    std::vector<std::string> warnings;
    log = open_log(options(), &warnings);
    ASSERT_TRUE(log);
    EXPECT_TRUE(warnings.empty());
    ASSERT_TRUE(log->append_durable("reopened", {}));
    ASSERT_TRUE(log->close());
    report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
}

TEST_F(RetentionTest, PruningWhileOtherThreadsAppendKeepsTheLogIntact) {
    auto log = build(options());
    ASSERT_TRUE(log);
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 3; ++t)
        writers.emplace_back([&, t] {
            for (int i = 0; !stop && i < 2000; ++i)
                ASSERT_TRUE(log->append("concurrent", json{{"t", t}, {"i", i}}));
        });
    auto result = log->prune_now();
    stop = true;
    for (auto& w : writers) w.join();
    ASSERT_TRUE(result) << result.error().describe();
    EXPECT_EQ(result->removed.size(), 3u);
    ASSERT_TRUE(log->close());
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 9u);
    EXPECT_EQ(records_of_type(kPrunedEventType).size(), 1u);
}

TEST_F(RetentionTest, PrunesPeriodicallyOnTheWriterThread) {
    {
        auto log = build(options());
        ASSERT_TRUE(log);
        ASSERT_TRUE(log->close());
    }
    std::promise<std::vector<std::string>> done;
    Options o = options();
    o.prune_first_delay_ms = 0;
    o.on_pruned = [&](const std::vector<std::string>& segs, uint64_t, uint64_t) {
        done.set_value(segs);
    };
    auto log = open_log(o);
    ASSERT_TRUE(log);
    auto fut = done.get_future();
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_EQ(fut.get().size(), 3u);
    ASSERT_TRUE(log->close());
    EXPECT_TRUE(verify().intact());
}

TEST_F(RetentionTest, PreservedSegmentIsKeptAndTheMiddleGapVerifies) {
    auto log = build(options());
    ASSERT_TRUE(log);
    EXPECT_EQ(preserve_segment(dir(), "nonsense", "x").error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(preserve_segment(dir(), segment_name(99), "x").error().code, ErrorCode::not_found);
    ASSERT_TRUE(preserve_segment(dir(), segment_name(1), "incident INC-7"));
    EXPECT_TRUE(is_preserved(dir(), segment_name(1)));
    EXPECT_EQ(segments().size(), 5u);  // the marker is not a segment
    auto preserved = list_preserved(dir());
    ASSERT_TRUE(preserved);
    ASSERT_EQ(preserved->size(), 1u);
    EXPECT_EQ((*preserved)[0].segment, segment_name(1));
    EXPECT_EQ((*preserved)[0].reason, "incident INC-7");
    EXPECT_EQ((fs::status(file(segment_name(1) + kPreservedSuffix)).permissions() & fs::perms::all),
              fs::perms::owner_read | fs::perms::owner_write);

    auto result = log->prune_now();
    ASSERT_TRUE(result) << result.error().describe();
    EXPECT_EQ(result->removed, (std::vector<std::string>{segment_name(2), segment_name(3)}));
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 0u);
    EXPECT_EQ(report.anchors, 1u);
    EXPECT_EQ(report.removed_by_retention, 6u);
    EXPECT_EQ(report.checkpoints_before_retention, 1u);  // size 6

    // Proofs: a record of the preserved segment against the checkpoint that
    // ends within it; a later record against the latest one.
    ASSERT_TRUE(log->append_durable("more", {}));  // checkpoint at 15
    auto inc = inclusion_proof(dir(), 1);
    ASSERT_TRUE(inc) << inc.error().describe();
    EXPECT_EQ((*inc)["tree_size"], 3);
    EXPECT_TRUE(verify_proof(*inc, &key_.public_key()));
    inc = inclusion_proof(dir(), 10);
    ASSERT_TRUE(inc) << inc.error().describe();
    EXPECT_EQ((*inc)["tree_size"], 15);
    EXPECT_TRUE(verify_proof(*inc, &key_.public_key()));
    auto gone = inclusion_proof(dir(), 4);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ErrorCode::not_found);
    EXPECT_NE(gone.error().message.find("record 4 was removed by retention on"), std::string::npos);
    EXPECT_FALSE(consistency_proof(dir(), 3, 12));

    // Unpreserved, it goes too; the new anchor bridges the whole gap.
    ASSERT_TRUE(unpreserve_segment(dir(), segment_name(1)));
    ASSERT_TRUE(unpreserve_segment(dir(), segment_name(1)));  // idempotent
    result = log->prune_now();
    ASSERT_TRUE(result);
    EXPECT_EQ(result->removed, std::vector<std::string>{segment_name(1)});
    auto anchors = read_anchors(dir());
    ASSERT_TRUE(anchors);
    ASSERT_EQ(anchors->size(), 2u);
    EXPECT_EQ((*anchors)[1].anchor.first_seq, 9u);
    EXPECT_EQ((*anchors)[1].anchor.removed_first_seq, 0u);
    ASSERT_TRUE(log->close());
    report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 9u);
    EXPECT_EQ(records_of_type(kPrunedEventType).size(), 2u);
}

TEST_F(RetentionTest, SegmentsForJobAndTimeRange) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->close());
    auto by_job = segments_for(dir(), SegmentQuery{"job-b", std::nullopt, std::nullopt});
    ASSERT_TRUE(by_job);
    EXPECT_EQ(*by_job, std::vector<std::string>{segment_name(4)});
    auto by_time = segments_for(dir(), SegmentQuery{"", start_ + kDay, start_ + 2 * kDay});
    ASSERT_TRUE(by_time);
    EXPECT_EQ(*by_time, (std::vector<std::string>{segment_name(2), segment_name(3)}));
    auto both = segments_for(dir(), SegmentQuery{"job-a", start_ + kDay, std::nullopt});
    ASSERT_TRUE(both);
    EXPECT_TRUE(both->empty());
}

TEST_F(RetentionTest, HandDeletedSegmentIsRemovedEvenAfterPruning) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    fs::remove(segment(4));
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::removed) << report.damage->describe();
    EXPECT_EQ(report.damage->file, segment_name(5));
    EXPECT_EQ(report.damage->line, 1u);
    EXPECT_EQ(report.damage->seq, 12u);
}

TEST_F(RetentionTest, AnchorWithoutPrunedRecordIsRemoved) {
    auto log = build(options(/*stop_after_step=*/1));
    ASSERT_TRUE(log);
    auto result = log->prune_now();
    ASSERT_TRUE(result);
    EXPECT_TRUE(result->removed.empty());
    ASSERT_TRUE(log->close());
    // The anchor alone, with its records still present, is consistent.
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.anchors, 0u);
    // Deleting the segments on the strength of it is not retention.
    for (int n : {1, 2, 3}) fs::remove(segment(n));
    report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::removed) << report.damage->describe();
    EXPECT_EQ(report.damage->file, segment_name(4));
    EXPECT_EQ(report.damage->line, 1u);
    EXPECT_EQ(report.damage->seq, 9u);
    EXPECT_NE(report.damage->detail.find("without an audit.pruned record"), std::string::npos);
}

TEST_F(RetentionTest, ForgedFrontierIsModified) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    edit_anchor(0, [](json& j) { j["frontier"][0] = crypto::base64_encode(crypto::sha256("x")); });
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::modified) << report.damage->describe();
    EXPECT_EQ(report.damage->file, kRetentionFile);
    EXPECT_EQ(report.damage->line, 1u);
    EXPECT_NE(report.damage->detail.find("frontier"), std::string::npos);
}

TEST_F(RetentionTest, ForgedFrontierWithoutACheckpointAtTheAnchorIsCaughtLater) {
    // Checkpoints every 4: sizes 4, 8, 12, ... never 9, the anchor's size.
    Options o = options();
    o.checkpoint_every_records = 4;
    auto log = build(o);
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    edit_anchor(0, [](json& j) { j["frontier"][1] = crypto::base64_encode(crypto::sha256("x")); });
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::modified) << report.damage->describe();
    EXPECT_NE(report.damage->detail.find("retention anchor"), std::string::npos);
}

TEST_F(RetentionTest, TamperedAnchorPrevNamesTheAnchor) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    edit_anchor(0, [](json& j) { j["prev"] = crypto::base64_encode(crypto::sha256("x")); });
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::modified) << report.damage->describe();
    EXPECT_EQ(report.damage->file, kRetentionFile);
    EXPECT_EQ(report.damage->line, 1u);
    EXPECT_EQ(report.damage->seq, 9u);
}

TEST_F(RetentionTest, AnchorForAnotherGapDoesNotExcuseOne) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(preserve_segment(dir(), segment_name(1), "keep"));
    ASSERT_TRUE(log->prune_now());  // removes 2 and 3: gap 3..8
    ASSERT_TRUE(log->close());
    // Claiming the gap started later than it did does not cover seq 3..5.
    edit_anchor(0, [](json& j) { j["removed_first_seq"] = 6; });
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::removed) << report.damage->describe();
    EXPECT_EQ(report.damage->file, segment_name(4));
    EXPECT_EQ(report.damage->seq, 9u);
}

TEST_F(RetentionTest, MalformedAnchorLine) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    edit_anchor(0, [](json& j) { j["frontier"].erase(0); });
    auto report = verify();
    ASSERT_TRUE(report.damage);
    EXPECT_EQ(report.damage->kind, DamageKind::malformed) << report.damage->describe();
    EXPECT_EQ(report.damage->file, kRetentionFile);
}

TEST_F(RetentionTest, CrashAfterAnchorConvergesOnReopen) {
    auto log = build(options(/*stop_after_step=*/1));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    EXPECT_EQ(segments().size(), 5u);
    EXPECT_TRUE(records_of_type(kPrunedEventType).empty());

    std::vector<std::string> warnings;
    log = open_log(options(), &warnings);
    ASSERT_TRUE(log);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("interrupted"), std::string::npos);
    EXPECT_EQ(segments(), (std::vector<std::string>{segment_name(4), segment_name(5)}));
    ASSERT_TRUE(log->close());
    auto pruned = records_of_type(kPrunedEventType);
    ASSERT_EQ(pruned.size(), 1u);
    EXPECT_EQ(pruned[0].fields["first_seq"], 0);
    EXPECT_EQ(pruned[0].fields["last_seq"], 8);
    EXPECT_EQ(pruned[0].fields["count"], 9);
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 9u);
    EXPECT_EQ(report.anchors, 1u);
}

TEST_F(RetentionTest, CrashAfterPrunedRecordConvergesWithoutASecondRecord) {
    auto log = build(options(/*stop_after_step=*/2));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    EXPECT_EQ(segments().size(), 5u);
    ASSERT_EQ(records_of_type(kPrunedEventType).size(), 1u);
    EXPECT_TRUE(verify().intact());

    // And a crash in the middle of the unlinking (newest first).
    fs::remove(segment(3));
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();

    log = open_log(options());
    ASSERT_TRUE(log);
    EXPECT_EQ(segments(), (std::vector<std::string>{segment_name(4), segment_name(5)}));
    ASSERT_TRUE(log->close());
    EXPECT_EQ(records_of_type(kPrunedEventType).size(), 1u);
    report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 9u);
}

TEST_F(RetentionTest, SegmentPreservedBeforeItsUnlinkingStopsTheUnlinkingThere) {
    auto log = build(options(/*stop_after_step=*/2));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());
    ASSERT_TRUE(log->close());
    // Segment 2 marked while the pruning was under way: 3 (newer) still
    // goes, 2 and the older 1 stay, so no gap opens without an anchor.
    ASSERT_TRUE(preserve_segment(dir(), segment_name(2), "late hold"));
    std::vector<std::string> warnings;
    log = open_log(options(), &warnings);
    ASSERT_TRUE(log);
    EXPECT_EQ(segments(), (std::vector<std::string>{segment_name(1), segment_name(2),
                                                    segment_name(4), segment_name(5)}));
    ASSERT_TRUE(log->close());
    auto report = verify();
    EXPECT_TRUE(report.intact()) << report.damage->describe();
    EXPECT_EQ(report.first_seq, 0u);
    EXPECT_EQ(report.anchors, 1u);
    EXPECT_EQ(report.removed_by_retention, 3u);
}

TEST_F(RetentionTest, RetentionFailureFailsTheLogClosed) {
    std::atomic<int> failures{0};
    Options o = options();
    o.on_failure = [&](const std::string&) { ++failures; };
    auto log = build(o);
    ASSERT_TRUE(log);
    fs::create_directories(file(kRetentionFile));  // the anchor cannot be written
    auto result = log->prune_now();
    ASSERT_FALSE(result);
    EXPECT_TRUE(log->failed());
    // on_failure runs on the writer thread, possibly just after prune_now()
    // returned; wait for it (the bound is never reached when it works).
    for (int i = 0; i < 500 && failures.load() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(failures.load(), 1);
    EXPECT_NE(log->failure_reason().find("retention"), std::string::npos);
    EXPECT_EQ(segments().size(), 5u);  // nothing removed without its anchor
    EXPECT_FALSE(log->append("after", {}));
}

TEST_F(RetentionTest, TornAnchorLineIsDroppedOnOpen) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->close());
    {
        std::ofstream out(file(kRetentionFile), std::ios::binary | std::ios::app);
        out << "{\"first_seq\":9,\"fron";
    }
    EXPECT_EQ(verify().damage->kind, DamageKind::malformed);
    std::vector<std::string> warnings;
    log = open_log(options(), &warnings);
    ASSERT_TRUE(log);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(fs::file_size(file(kRetentionFile)), 0u);
    ASSERT_TRUE(log->close());
    EXPECT_TRUE(verify().intact());
}

TEST_F(RetentionTest, ProofsOnAPrunedLogVerify) {
    auto log = build(options());
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->prune_now());  // first kept seq 9; audit.pruned is seq 14
    for (int i = 0; i < 7; ++i) ASSERT_TRUE(log->append_durable("more", {}));
    ASSERT_TRUE(log->close());  // checkpoints 3, 6, ..., 21
    auto cps = read_checkpoints(dir());
    ASSERT_TRUE(cps);
    const auto& latest = cps->back();
    ASSERT_EQ(latest.tree_size, 22u);
    const merkle::Hash root = *crypto::base64_decode(latest.root);

    for (uint64_t index = 9; index < latest.tree_size; ++index) {
        auto doc = inclusion_proof(dir(), index);
        ASSERT_TRUE(doc) << index << ": " << doc.error().describe();
        EXPECT_EQ((*doc)["tree_size"], latest.tree_size);
        const merkle::Hash leaf = *crypto::base64_decode((*doc)["leaf_hash"].get<std::string>());
        EXPECT_EQ(leaf, merkle::leaf_hash((*doc)["record"].get<std::string>()));
        EXPECT_TRUE(
            merkle::verify_inclusion(index, latest.tree_size, leaf, decode_path(*doc), root))
            << index;
        EXPECT_TRUE(verify_proof(*doc, &key_.public_key())) << index;
    }
    for (uint64_t index : {0, 5, 8}) {
        auto doc = inclusion_proof(dir(), index);
        ASSERT_FALSE(doc);
        EXPECT_EQ(doc.error().code, ErrorCode::not_found);
        EXPECT_NE(doc.error().message.find("record " + std::to_string(index) +
                                           " was removed by retention on "),
                  std::string::npos)
            << doc.error().message;
    }

    for (uint64_t from : {9, 12, 15, 18}) {
        for (uint64_t to : {15, 18, 21}) {
            if (to < from) continue;
            auto doc = consistency_proof(dir(), from, to);
            ASSERT_TRUE(doc) << from << "->" << to << ": " << doc.error().describe();
            EXPECT_TRUE(merkle::verify_consistency(
                from, to, *crypto::base64_decode((*doc)["root_1"].get<std::string>()),
                *crypto::base64_decode((*doc)["root_2"].get<std::string>()), decode_path(*doc)))
                << from << "->" << to;
            EXPECT_TRUE(verify_proof(*doc, &key_.public_key())) << from << "->" << to;
        }
    }
    auto early = consistency_proof(dir(), 6, 21);
    ASSERT_FALSE(early);
    EXPECT_EQ(early.error().code, ErrorCode::not_found);
}

}  // namespace
}  // namespace sa::agent::audit
