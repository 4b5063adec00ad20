#include "agent/secrets/secret_value.h"

#include "agent/secrets/json_wipe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <type_traits>

namespace sa::agent::secrets {
namespace {

static_assert(!std::is_copy_constructible_v<SecretValue>);
static_assert(!std::is_copy_assignable_v<SecretValue>);
static_assert(std::is_nothrow_move_constructible_v<SecretValue>);
static_assert(!std::is_convertible_v<SecretValue, std::string>);
static_assert(!std::is_convertible_v<SecretValue, std::string_view>);

// What the release observer saw, per release.
struct Released {
    size_t length = 0;
    bool all_zero = false;
};
std::vector<Released> g_released;

void record_release(const unsigned char* bytes, size_t length) {
    g_released.push_back(
        {length, std::all_of(bytes, bytes + length, [](unsigned char c) { return c == 0; })});
}

class SecretValueTest : public ::testing::Test {
  protected:
    void SetUp() override {
        g_released.clear();
        SecretValue::set_release_observer_for_testing(&record_release);
    }
    void TearDown() override { SecretValue::set_release_observer_for_testing(nullptr); }
};

TEST_F(SecretValueTest, RoundTripsContent) {
    std::string binary("a\0b\xff secret", 11);
    SecretValue v = SecretValue::copy_of(binary);
    EXPECT_EQ(v.reveal(), binary);
    EXPECT_EQ(v.size(), binary.size());
    EXPECT_FALSE(v.empty());
}

TEST_F(SecretValueTest, EmptyValueHasNoMapping) {
    SecretValue v = SecretValue::copy_of("");
    EXPECT_TRUE(v.empty());
    EXPECT_EQ(v.reveal(), "");
    SecretValue d;
    EXPECT_EQ(d.size(), 0u);
}

TEST_F(SecretValueTest, FromWipesTheSourceString) {
    std::string s(200, 'k');  // long enough to live on the heap, not in SSO
    const char* buffer = s.data();
    const size_t capacity = s.capacity();
    SecretValue v = SecretValue::from(std::move(s));
    EXPECT_EQ(v.reveal(), std::string(200, 'k'));
    EXPECT_TRUE(s.empty());  // NOLINT(bugprone-use-after-move): from() documents this
    // The string still owns its buffer (clear() keeps capacity): every byte is zero.
    ASSERT_EQ(s.data(), buffer);
    EXPECT_TRUE(std::all_of(buffer, buffer + capacity, [](char c) { return c == 0; }));
}

TEST_F(SecretValueTest, MoveLeavesSourceEmpty) {
    SecretValue a = SecretValue::copy_of("token-value");
    SecretValue b(std::move(a));
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(a.reveal(), "");
    EXPECT_EQ(b.reveal(), "token-value");

    SecretValue c;
    c = std::move(b);
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(c.reveal(), "token-value");
    EXPECT_TRUE(g_released.empty());  // moves transfer the mapping, nothing released yet
}

TEST_F(SecretValueTest, DestructionWipesBeforeUnmapping) {
    {
        SecretValue v = SecretValue::copy_of(std::string(5000, 'z'));
        EXPECT_TRUE(g_released.empty());
    }
    ASSERT_EQ(g_released.size(), 1u);
    EXPECT_GE(g_released[0].length, 5000u);
    EXPECT_EQ(g_released[0].length % 4096, 0u);  // whole pages
    EXPECT_TRUE(g_released[0].all_zero);
}

TEST_F(SecretValueTest, AssignmentWipesThePreviousValue) {
    SecretValue v = SecretValue::copy_of("first");
    v = SecretValue::copy_of("second");
    ASSERT_EQ(g_released.size(), 1u);
    EXPECT_TRUE(g_released[0].all_zero);
    EXPECT_EQ(v.reveal(), "second");
}

TEST_F(SecretValueTest, WipeClearsWholeCapacity) {
    std::string s(100, 'x');
    s.resize(10);  // bytes 10..99 still hold 'x'
    const char* buffer = s.data();
    const size_t capacity = s.capacity();
    wipe(s);
    EXPECT_TRUE(s.empty());
    EXPECT_TRUE(std::all_of(buffer, buffer + capacity, [](char c) { return c == 0; }));
}

TEST(RedactLiveSecretsTest, ReplacesLiveValuesOnlyWhileTheyLive) {
    std::string text;
    {
        const SecretValue token = SecretValue::copy_of("tok-3f9a2c71");
        text = "bearer tok-3f9a2c71 and again tok-3f9a2c71.";
        EXPECT_TRUE(redact_live_secrets(text));
        EXPECT_EQ(text, "bearer [REDACTED] and again [REDACTED].");
    }
    // Released: the bytes are gone, nothing is known to redact any more.
    text = "bearer tok-3f9a2c71";
    EXPECT_FALSE(redact_live_secrets(text));
    EXPECT_EQ(text, "bearer tok-3f9a2c71");
}

TEST(RedactLiveSecretsTest, MovedValuesStayKnownAndShortOnesAreIgnored) {
    SecretValue moved_from = SecretValue::copy_of("p@ss\"word9");
    const SecretValue value = std::move(moved_from);
    const SecretValue tiny = SecretValue::copy_of("abc");
    std::string text = "password p@ss\"word9 in JSON: \"p@ss\\\"word9\" abc";
    const auto json_escape = [](std::string_view raw) {
        std::string out;
        for (char c : raw) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        return out;
    };
    EXPECT_TRUE(redact_live_secrets(text, json_escape));
    EXPECT_EQ(text, "password [REDACTED] in JSON: \"[REDACTED]\" abc");
}

TEST(JsonEscapeTest, MatchesWhatJsonDumpWritesForEveryAsciiByte) {
    std::string all;
    for (int c = 0; c < 128; ++c) all += static_cast<char>(c);
    all += "\xC3\xA9";  // UTF-8 passes unchanged, as dump() writes it
    std::string out;
    out.reserve(json_escaped_size(all) + 2);
    const char* const buffer = out.data();
    out += '"';
    append_json_escaped(out, all);
    out += '"';
    EXPECT_EQ(out, nlohmann::json(all).dump());
    EXPECT_EQ(out.data(), buffer);  // never reallocated: no copy left behind
    EXPECT_EQ(json_escaped_size("plain"), 5u);
    EXPECT_EQ(json_escaped_size("a\"\n\x01"), 1u + 2u + 2u + 6u);
}

}  // namespace
}  // namespace sa::agent::secrets
