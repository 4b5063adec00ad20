#include "agent/observe/logger.h"

#include <gtest/gtest.h>

#include <thread>
#include <type_traits>

#include "agent/secrets/secret_value.h"

namespace sa::agent::observe {
namespace {

using nlohmann::json;

// A SecretValue cannot become a log field or message.
static_assert(!std::is_constructible_v<json, secrets::SecretValue>);
static_assert(!std::is_constructible_v<json, const secrets::SecretValue&>);
static_assert(!std::is_convertible_v<const secrets::SecretValue&, std::string_view>);

TEST(LoggerTest, FormatsFixedKeysFirst) {
    Logger logger("edge-1", Level::info, [](std::string_view) {});
    const std::string line =
        logger.format(1764403200123, Level::info, "job started",
                      {{"tables", 3}, {"lease_id", "L1"}, {"job_id", "J1"}, {"source", "demo"}});
    EXPECT_EQ(line,
              R"({"ts":"2025-11-29T08:00:00.123Z","level":"info","msg":"job started",)"
              R"("agent_id":"edge-1","job_id":"J1","lease_id":"L1","source":"demo","tables":3})");
}

TEST(LoggerTest, WritesOneParsableLinePerCall) {
    std::vector<std::string> lines;
    Logger logger("edge-1", Level::debug, [&](std::string_view line) { lines.emplace_back(line); });
    logger.info("a \"quoted\"\nmessage", {{"n", 1}});
    logger.error("plain");
    ASSERT_EQ(lines.size(), 2u);
    for (const auto& line : lines) {
        ASSERT_EQ(line.back(), '\n');
        EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
    }
    const json first = json::parse(lines[0]);
    EXPECT_EQ(first["msg"], "a \"quoted\"\nmessage");
    EXPECT_EQ(first["level"], "info");
    EXPECT_EQ(first["agent_id"], "edge-1");
    EXPECT_EQ(first["n"], 1);
    EXPECT_EQ(json::parse(lines[1])["level"], "error");
}

TEST(LoggerTest, ALiveSecretThatSlipsIntoALineIsRedacted) {
    std::vector<std::string> lines;
    Logger logger("edge-1", Level::debug, [&](std::string_view line) { lines.emplace_back(line); });
    {
        const auto secret = secrets::SecretValue::copy_of("s3cr\"et-value");
        // As if an error text had quoted it: raw in the message, JSON-escaped in the line.
        logger.error("token request failed: s3cr\"et-value",
                     {{"error", "upstream said s3cr\"et-value"}});
    }
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].find("et-value"), std::string::npos) << lines[0];
    const json line = json::parse(lines[0]);
    EXPECT_EQ(line["msg"], "token request failed: [REDACTED]");
    EXPECT_EQ(line["error"], "upstream said [REDACTED]");
}

TEST(LoggerTest, SecretsWithControlCharactersAndBackslashesAreRedactedToo) {
    std::vector<std::string> lines;
    Logger logger("edge-1", Level::debug, [&](std::string_view line) { lines.emplace_back(line); });
    {
        const auto secret = secrets::SecretValue::copy_of(
            "ab\\cd\n\x01"
            "ef-secret");
        logger.warn("failed", {{"detail",
                                "x ab\\cd\n\x01"
                                "ef-secret y"}});
    }
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].find("ef-secret"), std::string::npos) << lines[0];
    EXPECT_EQ(json::parse(lines[0])["detail"], "x [REDACTED] y");
}

TEST(LoggerTest, FiltersByLevel) {
    std::vector<std::string> lines;
    Logger logger("a", Level::warn, [&](std::string_view line) { lines.emplace_back(line); });
    logger.debug("no");
    logger.info("no");
    logger.warn("yes");
    logger.error("yes");
    EXPECT_EQ(lines.size(), 2u);
    logger.set_level(Level::debug);
    logger.debug("now yes");
    EXPECT_EQ(lines.size(), 3u);
}

TEST(LoggerTest, InvalidUtf8IsReplacedNotFatal) {
    std::vector<std::string> lines;
    Logger logger("a", Level::info, [&](std::string_view line) { lines.emplace_back(line); });
    logger.info("bad \xff byte", {{"path", std::string("x\xfe")}});
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NO_THROW(json::parse(lines[0]));
}

TEST(LoggerTest, ReservedFieldNamesCannotOverrideFixedKeys) {
    std::vector<std::string> lines;
    Logger logger("edge-1", Level::info, [&](std::string_view line) { lines.emplace_back(line); });
    logger.info("m", {{"agent_id", "spoofed"}, {"level", "debug"}});
    const json record = json::parse(lines.at(0));
    EXPECT_EQ(record["agent_id"], "edge-1");
    EXPECT_EQ(record["level"], "info");
}

TEST(LoggerTest, ConcurrentLinesDoNotInterleave) {
    std::vector<std::string> lines;
    Logger logger("a", Level::info, [&](std::string_view line) { lines.emplace_back(line); });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) logger.info("m", {{"t", t}, {"i", i}});
        });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_EQ(lines.size(), 800u);
    for (const auto& line : lines) EXPECT_NO_THROW(json::parse(line));
}

}  // namespace
}  // namespace sa::agent::observe
