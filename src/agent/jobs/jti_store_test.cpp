#include "agent/jobs/jti_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/crypto/random.h"

namespace sa::agent::jobs {
namespace {

constexpr int64_t kNow = 1'764'403'200;
constexpr int64_t kGrace = 60;

class JtiStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("sa-jti-" + crypto::random_token(8));
        std::filesystem::create_directories(dir_);
        path_ = (dir_ / "replay.log").string();
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    void write_raw(const std::string& content) const {
        std::ofstream(path_, std::ios::binary) << content;
    }
    std::string read_raw() const {
        std::ifstream in(path_, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    JtiStore open_ok(int64_t now = kNow) const {
        auto store = JtiStore::open(path_, now, kGrace);
        EXPECT_TRUE(store) << store.error().message;
        return store ? std::move(*store) : JtiStore();
    }

    std::filesystem::path dir_;
    std::string path_;
};

TEST_F(JtiStoreTest, RemembersAcrossReopenInAPrivateFile) {
    {
        JtiStore store = open_ok();
        EXPECT_TRUE(store.persistent());
        ASSERT_TRUE(store.remember("lease-1", kNow + 600));
        ASSERT_TRUE(store.remember("lease-2", kNow + 600));
        EXPECT_TRUE(store.contains("lease-1"));
        EXPECT_FALSE(store.contains("lease-3"));
    }
    EXPECT_EQ(read_raw(), std::to_string(kNow + 600) + " lease-1\n" + std::to_string(kNow + 600) +
                              " lease-2\n");
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    JtiStore again = open_ok(kNow + 100);
    EXPECT_EQ(again.load_stats().loaded, 2u);
    EXPECT_EQ(again.load_stats().bad_lines, 0u);
    EXPECT_TRUE(again.contains("lease-1"));
    EXPECT_TRUE(again.contains("lease-2"));
}

TEST_F(JtiStoreTest, CreatesTheDirectory) {
    path_ = (dir_ / "state" / "jobs" / "replay.log").string();
    JtiStore store = open_ok();
    ASSERT_TRUE(store.remember("x", kNow));
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / "state" / "jobs").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(JtiStoreTest, TruncatedLastLineIsSkippedAndTrimmed) {
    const std::string good = std::to_string(kNow + 600) + " lease-1\n";
    write_raw(good + std::to_string(kNow + 600) + " lease-");
    {
        JtiStore store = open_ok();
        EXPECT_EQ(store.load_stats().loaded, 1u);
        EXPECT_EQ(store.load_stats().bad_lines, 1u);
        EXPECT_TRUE(store.contains("lease-1"));
        EXPECT_FALSE(store.contains("lease-"));
        // The next append starts on a fresh line, so it survives a reopen.
        ASSERT_TRUE(store.remember("lease-2", kNow + 600));
    }
    EXPECT_EQ(read_raw(), good + std::to_string(kNow + 600) + " lease-2\n");
    JtiStore again = open_ok();
    EXPECT_EQ(again.load_stats().bad_lines, 0u);
    EXPECT_TRUE(again.contains("lease-2"));
}

TEST_F(JtiStoreTest, MalformedLinesAnywhereAreSkipped) {
    const std::string exp = std::to_string(kNow + 600);
    write_raw(exp + " a\n" + "garbage\n" + "\n" + " b\n" + "12x c\n" + exp + " \n" + exp +
              " two words\n" + "-5 d\n" + std::string("\x00\x01", 2) + "\n" + exp + " e\n");
    JtiStore store = open_ok();
    EXPECT_EQ(store.load_stats().loaded, 2u);
    EXPECT_EQ(store.load_stats().bad_lines, 8u);
    EXPECT_TRUE(store.contains("a"));
    EXPECT_TRUE(store.contains("e"));
    EXPECT_EQ(store.file_lines(), 10u);
}

TEST_F(JtiStoreTest, ExpiredEntriesAreDroppedAtLoad) {
    // Live means EXP + grace >= now.
    write_raw(std::to_string(kNow - kGrace - 1) + " old\n" + std::to_string(kNow - kGrace) +
              " edge\n" + std::to_string(kNow + 1) + " new\n");
    JtiStore store = open_ok();
    EXPECT_EQ(store.load_stats().expired, 1u);
    EXPECT_EQ(store.load_stats().loaded, 2u);
    EXPECT_FALSE(store.contains("old"));
    EXPECT_TRUE(store.contains("edge"));
    EXPECT_TRUE(store.contains("new"));
    store.forget_expired(kNow + 1);
    EXPECT_FALSE(store.contains("edge"));
    EXPECT_TRUE(store.contains("new"));
}

TEST_F(JtiStoreTest, CompactionAtOpenKeepsOnlyLiveEntries) {
    std::string content;
    for (int i = 0; i < 1500; ++i)
        content += std::to_string(kNow - 1000) + " dead-" + std::to_string(i) + "\n";
    for (int i = 0; i < 10; ++i)
        content += std::to_string(kNow + 600) + " live-" + std::to_string(i) + "\n";
    write_raw(content);
    JtiStore store = open_ok();
    EXPECT_EQ(store.load_stats().expired, 1500u);
    EXPECT_EQ(store.live_entries(), 10u);
    EXPECT_EQ(store.file_lines(), 10u);
    // Appends go to the rewritten file.
    ASSERT_TRUE(store.remember("after", kNow + 600));
    JtiStore again = open_ok();
    EXPECT_EQ(again.file_lines(), 11u);
    EXPECT_EQ(again.load_stats().loaded, 11u);
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(again.contains("live-" + std::to_string(i)));
    EXPECT_TRUE(again.contains("after"));
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    // No temporary file left behind.
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_),
                            std::filesystem::directory_iterator()),
              1);
}

TEST_F(JtiStoreTest, CompactionOnRememberOnceEntriesExpire) {
    std::string content;
    for (int i = 0; i < 1200; ++i) {
        // Half expire early, half late.
        const int64_t exp = i % 2 == 0 ? kNow + 10 : kNow + 6000;
        content += std::to_string(exp) + " j-" + std::to_string(i) + "\n";
    }
    write_raw(content);
    JtiStore store = open_ok();
    // All live, nothing to compact yet.
    EXPECT_EQ(store.file_lines(), 1200u);
    store.forget_expired(kNow + 1000);
    EXPECT_EQ(store.live_entries(), 600u);
    // 1200 lines is not more than 2 x 600 live: still no rewrite.
    ASSERT_TRUE(store.remember("one", kNow + 6000));
    EXPECT_EQ(store.file_lines(), 1201u);
    EXPECT_EQ(store.live_entries(), 601u);
    // Every entry expires: the next remember finds 1201 lines for 1 live
    // entry and rewrites the file.
    store.forget_expired(kNow + 6000 + kGrace + 1);
    EXPECT_EQ(store.live_entries(), 0u);
    ASSERT_TRUE(store.remember("two", kNow + 9000));
    EXPECT_EQ(store.file_lines(), 1u);
    EXPECT_EQ(read_raw(), std::to_string(kNow + 9000) + " two\n");
}

TEST_F(JtiStoreTest, RefusesJtisThatWouldBreakTheLineFormat) {
    JtiStore store = open_ok();
    for (std::string bad :
         {std::string(), std::string("a b"), std::string("a\nb"), std::string("a\rb"),
          std::string("a\tb"), std::string(1025, 'j'), std::string("a\x7f")}) {
        auto st = store.remember(bad, kNow);
        ASSERT_FALSE(st);
        EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);
    }
    EXPECT_TRUE(store.remember(std::string(1024, 'j'), kNow));
    EXPECT_EQ(read_raw().size(), std::to_string(kNow).size() + 1 + 1024 + 1);
}

TEST_F(JtiStoreTest, MemoryOnlyStore) {
    JtiStore store(kGrace);
    EXPECT_FALSE(store.persistent());
    ASSERT_TRUE(store.remember("a", kNow));
    EXPECT_TRUE(store.contains("a"));
    store.forget_expired(kNow + kGrace);
    EXPECT_TRUE(store.contains("a"));
    store.forget_expired(kNow + kGrace + 1);
    EXPECT_FALSE(store.contains("a"));
}

TEST_F(JtiStoreTest, OpenErrors) {
    std::filesystem::create_directories(path_);  // a directory where the file should be
    auto store = JtiStore::open(path_, kNow, kGrace);
    ASSERT_FALSE(store);
    EXPECT_NE(store.error().message.find(path_), std::string::npos);

    const auto link = dir_ / "link.log";
    std::filesystem::create_symlink(dir_ / "elsewhere.log", link);
    EXPECT_FALSE(JtiStore::open(link.string(), kNow, kGrace));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "elsewhere.log"));
}

}  // namespace
}  // namespace sa::agent::jobs
