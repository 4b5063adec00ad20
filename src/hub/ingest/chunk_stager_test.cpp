#include "hub/ingest/chunk_stager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/crypto/digest.h"
#include "hub/testing/test_support.h"

namespace sa::hub::ingest {
namespace {

using testing::chunk_of;
using testing::sample_table;

std::string digest(const std::string& body) {
    return crypto::sha256_hex(body);
}

// What the catalog would store for a chunk: each record's JSON and fingerprint.
std::vector<std::pair<std::string, std::string>> stored_form(
    const Result<std::vector<PreparedRecord>>& prepared) {
    std::vector<std::pair<std::string, std::string>> out;
    if (!prepared) return out;
    for (const auto& r : *prepared) out.emplace_back(r.text, r.fingerprint);
    return out;
}

TEST(ChunkStagerTest, AStagedParseIsExactlyTheParseAtCompletion) {
    ChunkStager stager;
    const std::string body = chunk_of({sample_table("orders", 3), sample_table("items", 2)});
    ASSERT_TRUE(stager.submit("j1", 0, digest(body), body));
    auto staged = stager.take("j1", 0, digest(body));
    ASSERT_TRUE(staged.has_value());
    ASSERT_TRUE(staged->has_value()) << staged->error().describe();
    auto direct = prepare_chunk(body);
    ASSERT_TRUE(direct.has_value());
    EXPECT_EQ(stored_form(*staged), stored_form(direct));
    ASSERT_EQ((*staged)->size(), 2u);
    EXPECT_EQ(std::get<metadata::Table>((**staged)[0].record).name, "orders");
    EXPECT_EQ((**staged)[0].fingerprint, metadata::fingerprint((**staged)[0].record));
    // Handed out once.
    EXPECT_FALSE(stager.take("j1", 0, digest(body)).has_value());
    EXPECT_EQ(stager.stats().staged_bytes, 0);
    EXPECT_EQ(stager.stats().entries, 0);
}

TEST(ChunkStagerTest, OnlyTheExactJobSeqAndDigestMatch) {
    ChunkStager stager;
    const std::string body = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(stager.submit("j1", 4, digest(body), body));
    EXPECT_FALSE(stager.take("j1", 4, digest("other bytes")).has_value());
    EXPECT_FALSE(stager.take("j1", 5, digest(body)).has_value());
    EXPECT_FALSE(stager.take("j2", 4, digest(body)).has_value());
    EXPECT_TRUE(stager.take("j1", 4, digest(body)).has_value());
}

TEST(ChunkStagerTest, ABadChunkIsStagedAsTheSameErrorTheCompletionWouldFind) {
    ChunkStager stager;
    const std::string body = chunk_of({sample_table("a", 1)}) + "{\"not\": \"a record\"}\n";
    ASSERT_TRUE(stager.submit("j1", 0, digest(body), body));
    auto staged = stager.take("j1", 0, digest(body));
    ASSERT_TRUE(staged.has_value());
    ASSERT_FALSE(staged->has_value());
    auto direct = prepare_chunk(body);
    ASSERT_FALSE(direct.has_value());
    EXPECT_EQ(staged->error().message, direct.error().message);
    EXPECT_NE(staged->error().message.find("line 2"), std::string::npos) << staged->error().message;
}

TEST(ChunkStagerTest, ChunksOverTheBudgetAreNotStagedUntilRoomIsMade) {
    const std::string body = chunk_of({sample_table("a", 5)});
    ChunkStager::Options options;
    options.max_staged_bytes = static_cast<int64_t>(body.size()) * 2;
    ChunkStager stager(options);
    EXPECT_TRUE(stager.submit("j1", 0, digest(body), body));
    EXPECT_TRUE(stager.submit("j1", 1, digest(body), body));
    EXPECT_FALSE(stager.submit("j1", 2, digest(body), body));
    EXPECT_EQ(stager.stats().refused, 1);
    EXPECT_EQ(stager.stats().staged_bytes, static_cast<int64_t>(body.size()) * 2);
    // The same chunk again is already staged: no second charge.
    EXPECT_TRUE(stager.submit("j1", 1, digest(body), body));
    EXPECT_EQ(stager.stats().staged_bytes, static_cast<int64_t>(body.size()) * 2);
    ASSERT_TRUE(stager.take("j1", 0, digest(body)).has_value());
    EXPECT_TRUE(stager.submit("j1", 2, digest(body), body));
    EXPECT_FALSE(stager.take("j1", 3, digest(body)).has_value());
}

TEST(ChunkStagerTest, DropForgetsEveryChunkOfTheJobOnly) {
    ChunkStager stager;
    const std::string body = chunk_of({sample_table("a", 1)});
    for (int64_t seq = 0; seq < 3; ++seq) ASSERT_TRUE(stager.submit("j1", seq, digest(body), body));
    ASSERT_TRUE(stager.submit("j2", 0, digest(body), body));
    stager.drop("j1");
    for (int64_t seq = 0; seq < 3; ++seq) {
        EXPECT_FALSE(stager.take("j1", seq, digest(body)).has_value()) << seq;
    }
    EXPECT_TRUE(stager.take("j2", 0, digest(body)).has_value());
    EXPECT_EQ(stager.stats().staged_bytes, 0);
}

TEST(ChunkStagerTest, AnotherDigestForTheSameChunkReplacesTheOldParse) {
    ChunkStager stager;
    const std::string first = chunk_of({sample_table("first", 1)});
    const std::string second = chunk_of({sample_table("second", 1)});
    ASSERT_TRUE(stager.submit("j1", 0, digest(first), first));
    ASSERT_TRUE(stager.submit("j1", 0, digest(second), second));
    EXPECT_FALSE(stager.take("j1", 0, digest(first)).has_value());
    auto staged = stager.take("j1", 0, digest(second));
    ASSERT_TRUE(staged.has_value() && staged->has_value());
    EXPECT_EQ(std::get<metadata::Table>((**staged)[0].record).name, "second");
    EXPECT_EQ(stager.stats().staged_bytes, 0);
}

TEST(ChunkStagerTest, ChunksOfAbandonedJobsExpire) {
    ChunkStager::Options options;
    options.max_age = std::chrono::milliseconds(1);
    ChunkStager stager(options);
    const std::string body = chunk_of({sample_table("a", 1)});
    ASSERT_TRUE(stager.submit("abandoned", 0, digest(body), body));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // older than max_age
    ASSERT_TRUE(stager.submit("next", 0, digest(body), body));   // expiry runs on submit
    EXPECT_GE(stager.stats().expired, 1);
    EXPECT_FALSE(stager.take("abandoned", 0, digest(body)).has_value());
}

TEST(ChunkStagerTest, ManyChunksTakenFromSeveralThreadsWhileParsing) {
    ChunkStager stager;
    constexpr int kChunks = 64;
    std::vector<std::string> bodies;
    for (int i = 0; i < kChunks; ++i) {
        bodies.push_back(chunk_of({sample_table("t" + std::to_string(i), 1 + i % 7)}));
        ASSERT_TRUE(stager.submit("j", i, digest(bodies.back()), bodies.back()));
    }
    std::atomic<int> right{0};
    std::vector<std::thread> takers;
    for (int t = 0; t < 4; ++t) {
        takers.emplace_back([&, t] {
            for (int i = t; i < kChunks; i += 4) {
                auto staged = stager.take("j", i, digest(bodies[i]));
                if (staged && *staged && (*staged)->size() == 1 &&
                    std::get<metadata::Table>((**staged)[0].record).name ==
                        "t" + std::to_string(i) &&
                    std::get<metadata::Table>((**staged)[0].record).columns.size() ==
                        static_cast<size_t>(1 + i % 7)) {
                    ++right;
                }
            }
        });
    }
    for (auto& t : takers) t.join();
    EXPECT_EQ(right.load(), kChunks);
    EXPECT_EQ(stager.stats().entries, 0);
    EXPECT_EQ(stager.stats().staged_bytes, 0);
}

}  // namespace
}  // namespace sa::hub::ingest
