#include "agent/control/backoff.h"

#include <gtest/gtest.h>

namespace sa::agent::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(BackoffTest, FullJitterUnderADoublingCeiling) {
    Backoff backoff(milliseconds(1000), milliseconds(30'000), 42);
    const milliseconds ceilings[] = {milliseconds(1000), milliseconds(2000),  milliseconds(4000),
                                     milliseconds(8000), milliseconds(16000), milliseconds(30000),
                                     milliseconds(30000)};
    for (const auto ceiling : ceilings) {
        EXPECT_EQ(backoff.ceiling(), ceiling);
        const auto delay = backoff.next();
        EXPECT_GE(delay, milliseconds(0));
        EXPECT_LE(delay, ceiling);
    }
    backoff.reset();
    EXPECT_EQ(backoff.ceiling(), milliseconds(1000));
}

TEST(BackoffTest, DelaysAreSpreadOut) {
    Backoff backoff(milliseconds(10'000), milliseconds(10'000), 7);
    milliseconds low = milliseconds::max(), high = milliseconds::min();
    for (int i = 0; i < 200; ++i) {
        const auto delay = backoff.next();
        low = std::min(low, delay);
        high = std::max(high, delay);
    }
    EXPECT_LT(low, milliseconds(2000));
    EXPECT_GT(high, milliseconds(8000));
}

TEST(BackoffTest, ManyAttemptsDoNotOverflow) {
    Backoff backoff(milliseconds(1000), milliseconds(30'000), 1);
    for (int i = 0; i < 500; ++i) EXPECT_LE(backoff.next(), milliseconds(30'000));
}

TEST(RetryAfterTest, DelaySeconds) {
    EXPECT_EQ(parse_retry_after("7", 0), seconds(7));
    EXPECT_EQ(parse_retry_after(" 0 ", 0), seconds(0));
    EXPECT_EQ(parse_retry_after("100000", 0), seconds(300));  // capped
    EXPECT_EQ(parse_retry_after("99999999999999999999999", 0), seconds(300));
    EXPECT_EQ(parse_retry_after("-1", 0), std::nullopt);
    EXPECT_EQ(parse_retry_after("soon", 0), std::nullopt);
    EXPECT_EQ(parse_retry_after("", 0), std::nullopt);
}

TEST(RetryAfterTest, HttpDate) {
    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), seconds(7));
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800), seconds(0));
    EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37", 0), std::nullopt);
}

}  // namespace
}  // namespace sa::agent::control
