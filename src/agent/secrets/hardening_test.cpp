#include "agent/secrets/hardening.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sa::agent::secrets {
namespace {

// The hardening is irreversible, so it runs in a forked child that reports
// through its exit code: 0 ok, 1 call failed, 2 core limit not 0, 3 still dumpable.
TEST(HardeningTest, DisablesCoreDumpsInChild) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (!harden_process()) ::_exit(1);
        rlimit limit{};
        if (::getrlimit(RLIMIT_CORE, &limit) != 0 || limit.rlim_cur != 0 || limit.rlim_max != 0) {
            ::_exit(2);
        }
        if (::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) ::_exit(3);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace sa::agent::secrets
