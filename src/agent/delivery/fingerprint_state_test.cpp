#include "agent/delivery/fingerprint_state.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::delivery {
namespace {

namespace fs = std::filesystem;

const std::string kHex(64, 'a');

FingerprintState sample() {
    metadata::Table orders{.database = "main", .schema = "main", .name = "orders", .kind = "table"};
    metadata::Routine f{.database = "db",
                        .schema = "public",
                        .name = "f",
                        .kind = "function",
                        .signature = "a integer"};
    return {"job-1", kHex, {entry_of(orders), entry_of(f)}};
}

TEST(FingerprintStateTest, EntriesCarryTheRecordsIdentityAndFingerprint) {
    metadata::Table t{.database = "d", .schema = "s", .name = "t", .kind = "view"};
    const auto entry = entry_of(t);
    EXPECT_EQ(entry.object, "table");
    EXPECT_EQ(entry.signature, "");
    EXPECT_EQ(entry.fingerprint, metadata::fingerprint(metadata::Record{t}));
    EXPECT_EQ(removal_of(entry), (metadata::Removal{"table", "d", "s", "t", ""}));
    // Statistics are not structure: the fingerprint ignores them.
    t.estimated_rows = 42;
    EXPECT_EQ(entry_of(t).fingerprint, entry.fingerprint);
    t.comment = "changed";
    EXPECT_NE(entry_of(t).fingerprint, entry.fingerprint);
    // A table and a routine of the same printed name are different objects.
    FingerprintEntry routine{"routine", "d", "s", "f", "x", kHex};
    FingerprintEntry table{"table", "d", "s", "f(x)", "", kHex};
    EXPECT_NE(identity_of(routine), identity_of(table));
}

TEST(FingerprintStateTest, StateRoundTripsThroughItsFileAtomicallyWithMode0600) {
    const fs::path dir = fs::temp_directory_path() / ("sa-fp-" + crypto::random_token(8));
    const std::string path = state_path(dir.string(), "demo");
    EXPECT_EQ(path, dir.string() + "/fingerprints/demo.ndjson");
    const auto missing = read_state(path);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::not_found);

    const FingerprintState state = sample();
    ASSERT_TRUE(write_state(path, state));
    auto back = read_state(path);
    ASSERT_TRUE(back) << back.error().describe();
    EXPECT_EQ(back->job_id, "job-1");
    EXPECT_EQ(back->filters_sha256, kHex);
    EXPECT_EQ(back->objects, state.objects);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir / "fingerprints").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    // The file is exactly the header and one line per object.
    auto text = util::read_file(path);
    ASSERT_TRUE(text);
    EXPECT_EQ(*text, serialize_state(state));
    EXPECT_EQ(std::count(text->begin(), text->end(), '\n'), 3);
    EXPECT_TRUE(text->starts_with(R"({"filters_sha256":")")) << *text;

    // Replaced whole, nothing left behind.
    FingerprintState next{"job-2", kHex, {}};
    ASSERT_TRUE(write_state(path, next));
    back = read_state(path);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->job_id, "job-2");
    EXPECT_TRUE(back->objects.empty());
    size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "fingerprints")) ++files;
    EXPECT_EQ(files, 1u);
    fs::remove_all(dir);
}

TEST(FingerprintStateTest, CorruptStateIsAnErrorNeverACrash) {
    const std::string good = serialize_state(sample());
    const std::string object = entry_line(sample().objects[0]);
    const std::string header = good.substr(0, good.find('\n') + 1);
    const std::vector<std::string> bad{
        "",
        "\n",
        "not json\n",
        header.substr(0, header.size() - 1),  // no newline
        R"({"job_id":"j"})"
        "\n",
        R"({"job_id":"","filters_sha256":")" + kHex + "\"}\n",
        R"({"job_id":"j","filters_sha256":"ABC"})"
        "\n",
        R"({"job_id":"j","filters_sha256":")" + kHex +
            R"(","extra":1})"
            "\n",
        R"({"job_id":7,"filters_sha256":")" + kHex + "\"}\n",
        "[1,2]\n",
        header + "\n",                  // an empty line
        header + object + object,       // the same object twice
        header + object.substr(0, 40),  // cut short
        header +
            R"({"object":"view","database":"d","schema":"s","name":"n","signature":"","fingerprint":")" +
            kHex + "\"}\n",
        header +
            R"({"object":"table","database":"d","schema":"s","name":"n","signature":"x","fingerprint":")" +
            kHex + "\"}\n",
        header +
            R"({"object":"table","database":"d","schema":"s","name":"n","signature":"","fingerprint":"zz"})"
            "\n",
        header + R"({"object":"table","database":"d","schema":"s","name":"n","signature":""})"
                 "\n",
        header +
            R"({"object":"table","database":1,"schema":"s","name":"n","signature":"","fingerprint":")" +
            kHex + "\"}\n",
        header +
            R"({"object":"table","database":"d","schema":"s","name":"","signature":"","fingerprint":")" +
            kHex + "\"}\n",
        std::string("\xff\xfe\x00garbage\n", 11),
    };
    for (const auto& text : bad) {
        auto parsed = parse_state(text);
        EXPECT_FALSE(parsed) << text;
        if (!parsed) {
            EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument);
        }
    }
    // The error names the line of the whole file.
    auto dup = parse_state(header + object + object);
    ASSERT_FALSE(dup);
    EXPECT_NE(dup.error().message.find("line 3"), std::string::npos) << dup.error().message;
    EXPECT_TRUE(parse_state(good));
    EXPECT_TRUE(parse_state(header));

    // read_state says which file is corrupt.
    const fs::path dir = fs::temp_directory_path() / ("sa-fp-" + crypto::random_token(8));
    const std::string path = state_path(dir.string(), "demo");
    ASSERT_TRUE(write_state(path, sample()));
    ASSERT_TRUE(util::write_file_atomic(path, good.substr(0, good.size() - 7), 0600));
    auto corrupt = read_state(path);
    ASSERT_FALSE(corrupt);
    EXPECT_EQ(corrupt.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(corrupt.error().message.find("corrupt"), std::string::npos);
    fs::remove_all(dir);
}

TEST(FingerprintStateTest, EntryLinesParseBackInOrder) {
    const auto state = sample();
    std::string lines;
    for (const auto& e : state.objects) lines += entry_line(e);
    auto parsed = parse_entries(lines);
    ASSERT_TRUE(parsed) << parsed.error().describe();
    EXPECT_EQ(*parsed, state.objects);
    auto empty = parse_entries("");
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->empty());
    EXPECT_FALSE(parse_entries(lines + lines));
}

}  // namespace
}  // namespace sa::agent::delivery
