#include "agent/observe/health_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/crypto/random.h"
#include "common/util/files.h"

namespace sa::agent::observe {
namespace {

namespace fs = std::filesystem;

class HealthServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("sa-health-" + crypto::random_token(8));
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    fs::path dir_;
    Registry registry_;
    Readiness readiness_;
    std::vector<std::string> log_lines_;
    Logger logger_{"edge-1", Level::info,
                   [this](std::string_view line) { log_lines_.emplace_back(line); }};
};

TEST_F(HealthServerTest, ServesHealthReadinessAndMetrics) {
    registry_.gauge("secure_agent_ready", "Ready.").set(0);
    auto server =
        HealthServer::start({"127.0.0.1", 0, dir_.string()}, registry_, readiness_, logger_);
    ASSERT_TRUE(server) << server.error().describe();
    ASSERT_GT((*server)->port(), 0);
    const std::string url = "http://127.0.0.1:" + std::to_string((*server)->port());
    EXPECT_EQ((*server)->url(), url);

    // The URL file is written for scripts, and the URL is logged.
    auto written = util::read_file((dir_ / "health-url").string());
    ASSERT_TRUE(written);
    EXPECT_EQ(*written, url);
    ASSERT_FALSE(log_lines_.empty());
    EXPECT_NE(log_lines_.back().find(url), std::string::npos);

    httplib::Client client("127.0.0.1", (*server)->port());
    auto health = client.Get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(health->body, "ok\n");

    auto not_ready = client.Get("/readyz");
    ASSERT_TRUE(not_ready);
    EXPECT_EQ(not_ready->status, 503);
    const auto body = nlohmann::json::parse(not_ready->body);
    EXPECT_EQ(body["ready"], false);
    EXPECT_EQ(body["reason"], "starting");

    readiness_.set_ready();
    auto ready = client.Get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);

    readiness_.set_not_ready("hub unreachable");
    auto again = client.Get("/readyz");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 503);
    EXPECT_EQ(nlohmann::json::parse(again->body)["reason"], "hub unreachable");

    auto metrics = client.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200);
    EXPECT_EQ(metrics->get_header_value("Content-Type"),
              "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(metrics->body, registry_.render());

    auto missing = client.Get("/admin");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);

    (*server)->stop();
    (*server)->stop();  // idempotent
    httplib::Client after("127.0.0.1", (*server)->port());
    after.set_connection_timeout(1);
    EXPECT_FALSE(after.Get("/healthz"));
}

TEST(ReadinessTest, NamedConditionsAndTheBaseFlagDoNotOverwriteEachOther) {
    Readiness readiness;
    EXPECT_FALSE(readiness.ready());
    EXPECT_EQ(readiness.reason(), "starting");
    readiness.set_condition("hub_probe", true);
    EXPECT_FALSE(readiness.ready());  // the base flag is still down
    readiness.set_ready();
    EXPECT_TRUE(readiness.ready());
    EXPECT_EQ(readiness.reason(), "");

    readiness.set_condition("hub_probe", false, "3 failed probes: connection refused");
    EXPECT_FALSE(readiness.ready());
    EXPECT_EQ(readiness.reason(), "hub_probe: 3 failed probes: connection refused");
    // The control loop succeeding again does not clear the probe's condition.
    readiness.set_ready();
    EXPECT_FALSE(readiness.ready());
    ASSERT_EQ(readiness.failing_conditions().size(), 1u);
    EXPECT_EQ(readiness.failing_conditions()[0].name, "hub_probe");
    EXPECT_EQ(readiness.failing_conditions()[0].reason, "3 failed probes: connection refused");

    // The base reason comes first while the base flag is down.
    readiness.set_not_ready("lease: unavailable");
    EXPECT_EQ(readiness.reason(), "lease: unavailable");
    readiness.set_ready();

    readiness.set_condition("other", false, "x");
    readiness.set_condition("hub_probe", true, "ignored when ok");
    EXPECT_FALSE(readiness.ready());
    EXPECT_EQ(readiness.reason(), "other: x");
    readiness.set_condition("other", true);
    EXPECT_TRUE(readiness.ready());
    EXPECT_TRUE(readiness.failing_conditions().empty());

    // block() wins over everything and stays.
    readiness.block("audit log cannot be written");
    readiness.set_condition("other", true);
    readiness.set_ready();
    EXPECT_FALSE(readiness.ready());
    EXPECT_EQ(readiness.reason(), "audit log cannot be written");
}

TEST_F(HealthServerTest, ReadyzNamesTheFailingCondition) {
    auto server = HealthServer::start({"127.0.0.1", 0, ""}, registry_, readiness_, logger_);
    ASSERT_TRUE(server) << server.error().describe();
    httplib::Client client("127.0.0.1", (*server)->port());
    readiness_.set_ready();
    readiness_.set_condition("hub_probe", false, "hub: 3 probes failed in a row");
    auto r = client.Get("/readyz");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    const auto body = nlohmann::json::parse(r->body);
    EXPECT_EQ(body["ready"], false);
    EXPECT_EQ(body["reason"], "hub_probe: hub: 3 probes failed in a row");
    EXPECT_EQ(body["conditions"],
              nlohmann::json::parse(
                  R"([{"name":"hub_probe","reason":"hub: 3 probes failed in a row"}])"));

    readiness_.set_condition("hub_probe", true);
    auto ok = client.Get("/readyz");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200);
    EXPECT_FALSE(nlohmann::json::parse(ok->body).contains("conditions"));
}

TEST_F(HealthServerTest, LivezTurnsRedWhenASlotStopsMoving) {
    auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
    Liveness liveness(std::chrono::seconds(60), [&now] { return now; });
    const size_t loop = liveness.add("control slot 0");
    const size_t other = liveness.add("control slot 1");
    auto server =
        HealthServer::start({"127.0.0.1", 0, ""}, registry_, readiness_, logger_, &liveness);
    ASSERT_TRUE(server) << server.error().describe();
    httplib::Client client("127.0.0.1", (*server)->port());

    auto live = client.Get("/livez");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
    EXPECT_EQ(nlohmann::json::parse(live->body)["live"], true);

    // Slot 1 keeps beating; slot 0 is stuck (e.g. in a call that never returns).
    now += std::chrono::seconds(50);
    liveness.beat(other);
    now += std::chrono::seconds(20);
    liveness.beat(other);
    auto stuck = client.Get("/livez");
    ASSERT_TRUE(stuck);
    EXPECT_EQ(stuck->status, 503);
    const auto body = nlohmann::json::parse(stuck->body);
    EXPECT_EQ(body["live"], false);
    EXPECT_EQ(body["reason"], "control slot 0 has not moved for 70 s (limit 60 s)");

    liveness.beat(loop);
    auto again = client.Get("/livez");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 200);
}

TEST_F(HealthServerTest, LivezWithoutAWatchdogIsAlwaysLive) {
    auto server = HealthServer::start({"127.0.0.1", 0, ""}, registry_, readiness_, logger_);
    ASSERT_TRUE(server) << server.error().describe();
    httplib::Client client("127.0.0.1", (*server)->port());
    auto live = client.Get("/livez");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
}

TEST_F(HealthServerTest, RefusesNonLoopbackAddresses) {
    for (const char* host : {"0.0.0.0", "::", "192.168.1.1", "localhost"}) {
        auto server = HealthServer::start({host, 0, ""}, registry_, readiness_, logger_);
        ASSERT_FALSE(server) << host;
        EXPECT_EQ(server.error().code, ErrorCode::permission_denied);
    }
}

TEST_F(HealthServerTest, BindsIpv6LoopbackToo) {
    auto server = HealthServer::start({"::1", 0, ""}, registry_, readiness_, logger_);
    if (!server) GTEST_SKIP() << "no IPv6 loopback here: " << server.error().describe();
    EXPECT_EQ((*server)->url(), "http://[::1]:" + std::to_string((*server)->port()));
}

TEST_F(HealthServerTest, BusyPortIsUnavailable) {
    auto first = HealthServer::start({"127.0.0.1", 0, ""}, registry_, readiness_, logger_);
    ASSERT_TRUE(first);
    auto second =
        HealthServer::start({"127.0.0.1", (*first)->port(), ""}, registry_, readiness_, logger_);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, ErrorCode::unavailable);
}

}  // namespace
}  // namespace sa::agent::observe
