#include "agent/observe/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/observe/agent_metrics.h"
#include "common/crypto/random.h"

namespace sa::agent::observe {
namespace {

namespace fs = std::filesystem;

TEST(MetricsTest, RendersCountersGaugesAndHistogramsExactly) {
    Registry registry;
    registry.counter("b_requests_total", "Requests.", {{"endpoint", "lease"}, {"code", "200"}})
        .inc(2);
    registry.counter("b_requests_total", "Requests.", {{"endpoint", "chunk"}, {"code", "201"}})
        .inc();
    registry.gauge("a_ready", "Ready.\nSecond line with \\ backslash.").set(1);
    auto& h = registry.histogram("c_latency_seconds", "Latency.", {0.1, 1, 2.5});
    h.observe(0.05);
    h.observe(0.1);  // on a bound: counted in that bucket (le = less or equal)
    h.observe(2);
    h.observe(10);

    EXPECT_EQ(registry.render(),
              "# HELP a_ready Ready.\\nSecond line with \\\\ backslash.\n"
              "# TYPE a_ready gauge\n"
              "a_ready 1\n"
              "# HELP b_requests_total Requests.\n"
              "# TYPE b_requests_total counter\n"
              "b_requests_total{endpoint=\"chunk\",code=\"201\"} 1\n"
              "b_requests_total{endpoint=\"lease\",code=\"200\"} 2\n"
              "# HELP c_latency_seconds Latency.\n"
              "# TYPE c_latency_seconds histogram\n"
              "c_latency_seconds_bucket{le=\"0.1\"} 2\n"
              "c_latency_seconds_bucket{le=\"1\"} 2\n"
              "c_latency_seconds_bucket{le=\"2.5\"} 3\n"
              "c_latency_seconds_bucket{le=\"+Inf\"} 4\n"
              "c_latency_seconds_sum 12.15\n"
              "c_latency_seconds_count 4\n");
}

TEST(MetricsTest, CollectorsRefreshValuesBeforeEachRender) {
    Registry registry;
    Gauge& lag = registry.gauge("test_lag", "Lag.");
    int calls = 0;
    const uint64_t id = registry.add_collector([&] { lag.set(++calls * 10); });
    EXPECT_NE(registry.render().find("test_lag 10\n"), std::string::npos);
    EXPECT_NE(registry.render().find("test_lag 20\n"), std::string::npos);
    registry.remove_collector(id);
    EXPECT_NE(registry.render().find("test_lag 20\n"), std::string::npos);
    EXPECT_EQ(calls, 2);
}

TEST(MetricsTest, EscapesLabelValues) {
    EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    Registry registry;
    registry.counter("x_total", "X.", {{"reason", "say \"hi\"\n\\"}}).inc();
    EXPECT_NE(registry.render().find("x_total{reason=\"say \\\"hi\\\"\\n\\\\\"} 1\n"),
              std::string::npos);
}

TEST(MetricsTest, FormatsValues) {
    EXPECT_EQ(format_value(0), "0");
    EXPECT_EQ(format_value(42), "42");
    EXPECT_EQ(format_value(-3), "-3");
    EXPECT_EQ(format_value(0.25), "0.25");
    EXPECT_EQ(format_value(1.0 / 0.0), "+Inf");
    EXPECT_EQ(format_value(0.0 / 0.0), "NaN");
}

TEST(MetricsTest, SameSeriesIsSameObjectAndShapeMismatchThrows) {
    Registry registry;
    Counter& a = registry.counter("x_total", "X.", {{"k", "v"}});
    Counter& b = registry.counter("x_total", "X.", {{"k", "v"}});
    EXPECT_EQ(&a, &b);
    EXPECT_THROW(registry.gauge("x_total", "X."), std::logic_error);
    EXPECT_THROW(registry.counter("x_total", "X.", {{"other", "v"}}), std::logic_error);
    EXPECT_THROW(Histogram({1, 1}), std::logic_error);
}

TEST(AgentMetricsTest, RequiredSeriesExistFromTheStart) {
    Registry registry;
    AgentMetrics metrics(registry, "1.2.3");
    metrics.job_finished("succeeded");
    metrics.job_refused("bad_signature");
    metrics.hub_request("lease", 204);
    metrics.hub_request("token", 0);
    metrics.lease_latency(0.02);
    metrics.job_duration(1.5);
    metrics.set_ready(true);
    const std::string text = registry.render();
    for (const char* line : {
             "secure_agent_build_info{version=\"1.2.3\"} 1\n",
             "secure_agent_ready 1\n",
             "secure_agent_jobs_total{outcome=\"succeeded\"} 1\n",
             "secure_agent_jobs_total{outcome=\"failed\"} 0\n",
             "secure_agent_jobs_total{outcome=\"refused\"} 0\n",
             "secure_agent_job_refusals_total{reason=\"bad_signature\"} 1\n",
             "secure_agent_hub_requests_total{endpoint=\"lease\",code=\"204\"} 1\n",
             "secure_agent_hub_requests_total{endpoint=\"token\",code=\"error\"} 1\n",
             "secure_agent_lease_latency_seconds_bucket{le=\"0.025\"} 1\n",
             "secure_agent_lease_latency_seconds_count 1\n",
             "secure_agent_job_duration_seconds_count 1\n",
         }) {
        EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
    }
}

// Runs `promtool check metrics` on the rendered text when promtool exists.
TEST(AgentMetricsTest, PromtoolAcceptsTheOutput) {
    if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
        GTEST_SKIP() << "promtool is not on PATH";
    }
    Registry registry;
    AgentMetrics metrics(registry, "0.1.0");
    metrics.job_finished("failed");
    metrics.job_refused("expired");
    metrics.hub_request("chunk", 201);
    metrics.lease_latency(3);
    metrics.job_duration(0.3);
    registry
        .counter("secure_agent_test_escapes_total", "Escapes: \\ and\nnewline.",
                 {{"reason", "a\"b\\c\nd"}})
        .inc();
    const fs::path file = fs::temp_directory_path() / ("sa-metrics-" + crypto::random_token(8));
    std::ofstream(file) << registry.render();
    const std::string command = "promtool check metrics < '" + file.string() + "' >&2";
    const int status = std::system(command.c_str());
    fs::remove(file);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace sa::agent::observe
