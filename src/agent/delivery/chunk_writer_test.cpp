#include "agent/delivery/chunk_writer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/crypto/digest.h"
#include "common/crypto/encoding.h"
#include "common/protocol/protocol.h"

namespace sa::agent::delivery {
namespace {

metadata::Table make_table(const std::string& name, int columns = 2) {
    metadata::Table t{.database = "main", .schema = "main", .name = name, .kind = "table"};
    for (int i = 0; i < columns; ++i) {
        t.columns.push_back({.name = "c" + std::to_string(i),
                             .ordinal = i + 1,
                             .data_type = "TEXT",
                             .normalized_type = "string",
                             .nullable = true});
    }
    return t;
}

std::string line_of(const metadata::Table& t) {
    return metadata::to_json(t).dump() + "\n";
}

struct Collector {
    std::vector<Chunk> chunks;
    ChunkWriter::Emit emit() {
        return [this](Chunk&& c) -> Status {
            chunks.push_back(std::move(c));
            return {};
        };
    }
};

TEST(ChunkWriterTest, SmallTargetSplitsIntoChunksOfWholeLines) {
    std::vector<metadata::Table> tables;
    for (int i = 0; i < 20; ++i) tables.push_back(make_table("table_" + std::to_string(i)));
    const size_t line_size = line_of(tables[0]).size();
    // Room for three lines of this size, not four.
    const size_t target = line_size * 3 + line_size / 2;

    Collector out;
    ChunkWriter writer(target, out.emit());
    for (const auto& t : tables) ASSERT_TRUE(writer.write(t));
    ASSERT_TRUE(writer.finish());

    ASSERT_GT(out.chunks.size(), 2u);
    ASSERT_EQ(writer.chunks().size(), out.chunks.size());
    for (size_t i = 0; i < out.chunks.size(); ++i) {
        const Chunk& c = out.chunks[i];
        EXPECT_EQ(c.seq, static_cast<int64_t>(i));
        EXPECT_LE(c.body.size(), target);
        EXPECT_FALSE(c.body.empty());
        EXPECT_EQ(c.body.back(), '\n') << "chunk " << i << " ends mid-line";
        auto parsed = metadata::parse_chunk(c.body);
        ASSERT_TRUE(parsed) << parsed.error().message;
        EXPECT_FALSE(parsed->empty());
        // Digests: raw bytes in the chunk, hex in the recorded info.
        EXPECT_EQ(c.sha256, crypto::sha256(c.body));
        EXPECT_EQ(writer.chunks()[i].seq, c.seq);
        EXPECT_EQ(writer.chunks()[i].sha256_hex, crypto::sha256_hex(c.body));
        EXPECT_EQ(writer.chunks()[i].size, static_cast<int64_t>(c.body.size()));
    }
    // Every chunk but the last was as full as whole lines allow.
    for (size_t i = 0; i + 1 < out.chunks.size(); ++i) {
        EXPECT_GT(out.chunks[i].body.size() + line_size, target);
    }
}

TEST(ChunkWriterTest, ConcatenatedChunksParseBackToTheSameRecords) {
    std::vector<metadata::Record> records;
    for (int i = 0; i < 50; ++i) {
        metadata::Table t = make_table("t" + std::to_string(i), i % 7 + 1);
        if (i == 3) {
            t.kind = "view";
            t.definition = "SELECT 1";
        }
        if (i == 4) {
            t.indexes.push_back({.name = "idx",
                                 .unique = true,
                                 .origin = "create_index",
                                 .method = "btree",
                                 .predicate = "c0 > 1",
                                 .keys = {{.column = "c0"}, {.expression = "lower(c0)"}}});
        }
        if (i == 5) {
            t.constraints.push_back({.type = "foreign_key",
                                     .columns = {"c0"},
                                     .references = metadata::ObjectRef{"main", "t4"},
                                     .referenced_columns = {""},
                                     .on_update = "NO ACTION",
                                     .on_delete = "CASCADE"});
        }
        records.push_back(std::move(t));
        if (i % 10 == 0) {
            records.push_back(metadata::Routine{.database = "main",
                                                .schema = "main",
                                                .name = "f" + std::to_string(i),
                                                .kind = "function",
                                                .signature = "integer",
                                                .return_type = "integer",
                                                .language = "sql"});
        }
    }

    Collector out;
    ChunkWriter writer(1000, out.emit());
    for (const auto& r : records) {
        ASSERT_TRUE(std::visit([&](const auto& x) { return writer.write(x); }, r));
    }
    ASSERT_TRUE(writer.write(metadata::Removal{
        .object = "table", .database = "main", .schema = "main", .name = "gone"}));
    records.push_back(
        metadata::Removal{.object = "table", .database = "main", .schema = "main", .name = "gone"});
    ASSERT_TRUE(writer.finish());
    ASSERT_GT(out.chunks.size(), 1u);

    std::string all;
    for (const auto& c : out.chunks) all += c.body;
    auto parsed = metadata::parse_chunk(all);
    ASSERT_TRUE(parsed) << parsed.error().message;
    ASSERT_EQ(*parsed, records);
}

TEST(ChunkWriterTest, EmptyInputGivesNoChunks) {
    Collector out;
    ChunkWriter writer(1024, out.emit());
    ASSERT_TRUE(writer.finish());
    EXPECT_TRUE(out.chunks.empty());
    EXPECT_TRUE(writer.chunks().empty());
}

TEST(ChunkWriterTest, OversizeLineIsAChunkOfItsOwn) {
    metadata::Table small_a = make_table("a");
    metadata::Table big = make_table("big", 200);
    metadata::Table small_b = make_table("b");
    const size_t target = line_of(small_a).size() * 2 + 10;
    ASSERT_GT(line_of(big).size(), target);

    Collector out;
    ChunkWriter writer(target, out.emit());
    ASSERT_TRUE(writer.write(small_a));
    ASSERT_TRUE(writer.write(big));
    ASSERT_TRUE(writer.write(small_b));
    ASSERT_TRUE(writer.finish());

    ASSERT_EQ(out.chunks.size(), 3u);
    EXPECT_EQ(out.chunks[0].body, line_of(small_a));
    EXPECT_EQ(out.chunks[1].body, line_of(big));
    EXPECT_EQ(out.chunks[2].body, line_of(small_b));
}

TEST(ChunkWriterTest, FullChunkIsEmittedWithoutWaitingForTheNextTable) {
    metadata::Table t = make_table("a");
    Collector out;
    ChunkWriter writer(line_of(t).size(), out.emit());
    ASSERT_TRUE(writer.write(t));
    EXPECT_EQ(out.chunks.size(), 1u);
    ASSERT_TRUE(writer.finish());
    EXPECT_EQ(out.chunks.size(), 1u);
}

TEST(ChunkWriterTest, EmitErrorPropagatesAndIsNotRecorded) {
    int calls = 0;
    ChunkWriter writer(10, [&](Chunk&&) -> Status {
        ++calls;
        if (calls == 2) return fail(ErrorCode::unavailable, "hub unreachable");
        return {};
    });
    ASSERT_TRUE(writer.write(make_table("a")));
    auto st = writer.write(make_table("b"));
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::unavailable);
    EXPECT_EQ(st.error().message, "hub unreachable");
    ASSERT_EQ(writer.chunks().size(), 1u);
    EXPECT_EQ(writer.chunks()[0].seq, 0);
    // The stream is broken: later calls keep failing without emitting.
    EXPECT_FALSE(writer.write(make_table("c")));
    auto fin = writer.finish();
    ASSERT_FALSE(fin);
    EXPECT_EQ(fin.error().message, "hub unreachable");
    EXPECT_EQ(calls, 2);
}

TEST(ChunkWriterTest, EmitErrorFromFinishPropagates) {
    ChunkWriter writer(1 << 20,
                       [](Chunk&&) -> Status { return fail(ErrorCode::io, "spool full"); });
    ASSERT_TRUE(writer.write(make_table("a")));
    auto st = writer.finish();
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::io);
    EXPECT_TRUE(writer.chunks().empty());
}

TEST(ChunkWriterTest, InvalidUtf8InNamesDoesNotThrow) {
    Collector out;
    ChunkWriter writer(1 << 20, out.emit());
    ASSERT_TRUE(writer.write(make_table("bad\xff\xfename")));
    ASSERT_TRUE(writer.finish());
    ASSERT_EQ(out.chunks.size(), 1u);
    auto parsed = metadata::parse_chunk(out.chunks[0].body);
    ASSERT_TRUE(parsed) << parsed.error().message;
    EXPECT_EQ(std::get<metadata::Table>((*parsed)[0]).name.substr(0, 3), "bad");
}

TEST(ChunkWriterTest, TableBeyondTheProtocolLimitIsRefused) {
    metadata::Table huge = make_table("huge");
    huge.definition = std::string(protocol::kMaxChunkBytes + 1, 'x');
    Collector out;
    ChunkWriter writer(1024, out.emit());
    auto st = writer.write(huge);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(st.error().message.find("huge"), std::string::npos);
    EXPECT_TRUE(out.chunks.empty());
}

TEST(ChunksRootTest, IsTheRfc9162RootOverTheRawChunkDigests) {
    const std::string d0 = crypto::sha256("chunk zero");
    const std::string d1 = crypto::sha256("chunk one");
    const std::string d2 = crypto::sha256("chunk two");
    auto info = [](int64_t seq, const std::string& raw) {
        return ChunkInfo{seq, crypto::hex_encode(raw), 10};
    };
    // One leaf: SHA-256(0x00 || digest).
    auto one = chunks_root({info(0, d0)});
    ASSERT_TRUE(one) << one.error().message;
    EXPECT_EQ(*one, crypto::base64_encode(crypto::sha256(std::string(1, '\0') + d0)));
    // Three leaves: node(node(l0, l1), l2), spelled out by hand.
    auto leaf = [](const std::string& raw) { return crypto::sha256(std::string(1, '\0') + raw); };
    auto node = [](const std::string& l, const std::string& r) {
        return crypto::sha256(std::string(1, '\1') + l + r);
    };
    auto three = chunks_root({info(0, d0), info(1, d1), info(2, d2)});
    ASSERT_TRUE(three);
    EXPECT_EQ(*three, crypto::base64_encode(node(node(leaf(d0), leaf(d1)), leaf(d2))));
    // Order matters: the same chunks in another order give another root.
    auto swapped = chunks_root({info(0, d1), info(1, d0), info(2, d2)});
    ASSERT_TRUE(swapped);
    EXPECT_NE(*swapped, *three);
}

TEST(ChunksRootTest, RefusesADigestThatIsNotHex) {
    auto bad = chunks_root({ChunkInfo{3, std::string(64, 'z'), 1}});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(bad.error().message.find("chunk 3"), std::string::npos);
    EXPECT_FALSE(chunks_root({ChunkInfo{0, "abc", 1}}));
}

}  // namespace
}  // namespace sa::agent::delivery
