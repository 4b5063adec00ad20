#pragma once
// Private to the sandbox library and its tests: one function per layer and
// the seam that lets tests pretend a layer is unavailable. Not part of the
// contract in sandbox.h; other capabilities must not include this header.
#include <string>

#include "agent/sandbox/sandbox.h"
#include "common/result.h"

namespace sa::agent::sandbox::detail {

// What the running kernel offers. detect_environment() asks the kernel;
// tests construct one by hand to simulate an older or restricted host.
struct Environment {
    int landlock_abi = 0;            // 0: no Landlock
    bool seccomp_available = false;  // seccomp filter mode compiled in
    // Sanitizer builds: run LeakSanitizer's check before the drop (see
    // apply_with). Off for the probe's forked child: a copy of a
    // multi-threaded process only sees false leaks, and it leaves by _exit.
    bool leak_check_first = true;
};

Environment detect_environment();

// The Landlock ABI the kernel reports; 0 when Landlock is absent or disabled.
int probe_landlock_abi();

// apply() is apply_with(spec, detect_environment()).
Result<Report> apply_with(const Spec& spec, const Environment& env);

// The layers, in the order apply_with() calls them. Each returns its status
// (applied, or skipped with the reason) or an internal error naming itself
// and errno when an available layer fails.
Result<LayerStatus> apply_no_new_privs();
Result<LayerStatus> apply_capabilities();
Result<LayerStatus> apply_rlimits(const Limits& limits);
Result<LayerStatus> apply_landlock_fs(const Spec& spec, int abi);
Result<LayerStatus> apply_landlock_net(const Spec& spec, int abi);
Result<LayerStatus> apply_seccomp(bool available);

// "what failed: strerror(err) (errno N)", the one place errno becomes text.
std::string errno_text(const std::string& what, int err);

}  // namespace sa::agent::sandbox::detail
