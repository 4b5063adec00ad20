#include "agent/sandbox/probe.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>

namespace sa::agent::sandbox {
namespace {

TEST(SandboxProbeTest, ReportsEveryLayerAndLeavesTheCallerUnrestricted) {
    Spec spec;
    spec.read_write_paths = {};
    auto report = probe(spec);
    ASSERT_TRUE(report) << report.error().describe();
    ASSERT_EQ(report->layers.size(), 6u);
    EXPECT_EQ(report->layers[0].layer, Layer::no_new_privs);
    EXPECT_TRUE(report->layers[0].applied);
    EXPECT_EQ(report->layers[5].layer, Layer::seccomp);
    EXPECT_TRUE(report->layers[5].applied);
    // Landlock's layers follow what the kernel offers.
    const bool landlock = landlock_abi_version() >= 1;
    EXPECT_EQ(report->layers[3].applied, landlock);
    EXPECT_EQ(report->layers[4].applied, landlock_abi_version() >= 4);
    EXPECT_EQ(describe_missing(*report).empty(), report->all_applied());
    // The probe ran in a child: this process is not restricted.
    EXPECT_EQ(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);
}

TEST(SandboxProbeTest, DescribesMissingLayers) {
    Report report;
    report.layers = {{Layer::no_new_privs, true, ""},
                     {Layer::landlock_net, false, "Landlock ABI 3 has no TCP rules"},
                     {Layer::seccomp, false, ""}};
    EXPECT_EQ(describe_missing(report), "landlock_net (Landlock ABI 3 has no TCP rules), seccomp");
    EXPECT_FALSE(report.all_applied());
}

}  // namespace
}  // namespace sa::agent::sandbox
