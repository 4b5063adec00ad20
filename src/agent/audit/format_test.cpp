#include "agent/audit/format.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "agent/audit/test_support.h"

namespace sa::agent::audit {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

struct Line {
    std::string text;
    bool complete;
};

std::vector<Line> read_views(const std::string& path, uint64_t& offset) {
    auto reader = LineViewReader::open(path);
    EXPECT_TRUE(reader);
    std::vector<Line> out;
    if (!reader) return out;
    std::string_view line;
    bool complete = true;
    while (reader->next(line, complete)) out.push_back({std::string(line), complete});
    EXPECT_FALSE(reader->error());
    offset = reader->offset();
    return out;
}

void write_file(const fs::path& path, const std::string& data) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

TEST(LineViewReaderTest, LinesAcrossBlockBoundariesAndLongerThanTheBuffer) {
    TempDir dir;
    const fs::path path = dir.path() / "lines";
    // Lines of varied length so that many straddle the 1 MiB block edges,
    // one line of 3 MiB (longer than the buffer), empty lines, and a torn tail.
    std::vector<std::string> lines;
    std::string data;
    for (int i = 0; i < 6000; ++i) {
        lines.push_back(std::string(static_cast<size_t>((i * 7919) % 700), 'a' + i % 26));
        if (i == 3000) lines.back() = std::string(3u << 20, 'L');
        if (i % 1000 == 1) lines.back().clear();
        data += lines.back() + "\n";
    }
    data += "torn";
    write_file(path, data);
    uint64_t offset = 0;
    auto got = read_views(path.string(), offset);
    ASSERT_EQ(got.size(), lines.size() + 1);
    for (size_t i = 0; i < lines.size(); ++i) {
        ASSERT_EQ(got[i].text, lines[i]) << "line " << i + 1;
        ASSERT_TRUE(got[i].complete);
    }
    EXPECT_EQ(got.back().text, "torn");
    EXPECT_FALSE(got.back().complete);
    EXPECT_EQ(offset, data.size());

    // The copying reader sees the same lines and offsets.
    auto reader = LineReader::open(path.string());
    ASSERT_TRUE(reader);
    std::string line;
    bool complete = true;
    size_t n = 0;
    while (reader->next(line, complete)) {
        ASSERT_LT(n, got.size());
        EXPECT_EQ(line, got[n].text);
        EXPECT_EQ(complete, got[n].complete);
        ++n;
    }
    EXPECT_EQ(n, got.size());
    EXPECT_EQ(reader->offset(), data.size());
}

TEST(LineViewReaderTest, EmptyFileAndMissingFile) {
    TempDir dir;
    write_file(dir.path() / "empty", "");
    uint64_t offset = 1;
    EXPECT_TRUE(read_views((dir.path() / "empty").string(), offset).empty());
    EXPECT_EQ(offset, 0u);
    write_file(dir.path() / "newline", "\n");
    auto one = read_views((dir.path() / "newline").string(), offset);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].text, "");
    EXPECT_TRUE(one[0].complete);
    auto missing = LineViewReader::open((dir.path() / "missing").string());
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);
}

TEST(LineViewReaderTest, ReadErrorIsReported) {
    TempDir dir;
    // A directory opens but cannot be read: the error must not look like EOF.
    auto reader = LineViewReader::open(dir.str());
    ASSERT_TRUE(reader);
    std::string_view line;
    bool complete = true;
    EXPECT_FALSE(reader->next(line, complete));
    ASSERT_TRUE(reader->error().has_value());
    EXPECT_EQ(reader->error()->code, ErrorCode::io);
}

}  // namespace
}  // namespace sa::agent::audit
