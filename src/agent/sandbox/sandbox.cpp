#include "agent/sandbox/sandbox.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "agent/sandbox/sandbox_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace sa::agent::sandbox {

const char* layer_name(Layer layer) {
    switch (layer) {
        case Layer::no_new_privs:
            return "no_new_privs";
        case Layer::capabilities:
            return "capabilities";
        case Layer::rlimits:
            return "rlimits";
        case Layer::landlock_fs:
            return "landlock_fs";
        case Layer::landlock_net:
            return "landlock_net";
        case Layer::seccomp:
            return "seccomp";
    }
    return "unknown";
}

bool Report::all_applied() const {
    if (layers.empty()) return false;
    for (const auto& l : layers) {
        if (!l.applied) return false;
    }
    return true;
}

std::vector<std::string> default_read_only_paths() {
    // Not /etc as a whole (shadow, the agent's own configuration), not /proc
    // (other processes). Only the paths that exist on this host.
    const char* const candidates[] = {
        // Shared libraries, CA bundles, time zone data. On merged-/usr hosts
        // /lib* are symlinks into /usr; elsewhere they hold the libraries.
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        // The loader's cache (a late dlopen), the local time zone.
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/usr/share/zoneinfo",
        // TLS trust roots and OpenSSL's system policy (security level,
        // minimum protocol), so a worker's TLS behaves like the agent's.
        "/etc/ssl/certs",
        "/etc/ca-certificates",
        "/etc/ssl/openssl.cnf",
        // Files only, read-only.
        "/dev/null",
        "/dev/urandom",
    };
    std::vector<std::string> paths;
    for (const char* path : candidates) {
        std::error_code ec;
        if (std::filesystem::exists(path, ec)) paths.emplace_back(path);
    }
    return paths;
}

int landlock_abi_version() {
    return detail::probe_landlock_abi();
}

Result<Report> apply(const Spec& spec) {
    return detail::apply_with(spec, detail::detect_environment());
}

namespace detail {
namespace {

// Threads that exist before the drop would keep running unrestricted:
// seccomp and Landlock apply to the calling thread only. /proc is still
// readable here; without it the check is skipped.
Status check_single_threaded() {
    std::error_code ec;
    std::filesystem::directory_iterator it("/proc/self/task", ec);
    if (ec) return {};
    int threads = 0;
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
        if (ec) return {};
        ++threads;
    }
    if (threads > 1) {
        return fail(ErrorCode::invalid_argument,
                    "the sandbox must be applied by a single-threaded process (found " +
                        std::to_string(threads) + " threads)");
    }
    return {};
}

}  // namespace

Environment detect_environment() {
    Environment env;
    env.landlock_abi = probe_landlock_abi();
    // PR_GET_SECCOMP fails with EINVAL on kernels built without seccomp.
    env.seccomp_available = ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
    return env;
}

Result<Report> apply_with(const Spec& spec, const Environment& env) {
    // Strict mode refuses before changing anything, so a refusing worker
    // can still report cleanly. (The contract allows failing later; this is
    // the friendlier order.)
    if (spec.strict) {
        const char* missing = nullptr;
        if (env.landlock_abi < 1) {
            missing = "landlock_fs";
        } else if (env.landlock_abi < 4) {
            missing = "landlock_net";
        } else if (!env.seccomp_available) {
            missing = "seccomp";
        }
        if (missing) {
            return fail(ErrorCode::permission_denied,
                        std::string("sandbox layer ") + missing +
                            " is not available on this host and strict mode is on (landlock ABI " +
                            std::to_string(env.landlock_abi) + ")");
        }
    }
    if (auto st = check_single_threaded(); !st) return std::unexpected(st.error());

#if defined(__SANITIZE_ADDRESS__)
    // Sanitizer build only: LeakSanitizer's check at exit reads /proc and
    // stops the world with clone and ptrace, all of which the sandbox
    // forbids. Run the check now, while they are allowed; it then skips the
    // one at exit. Leaks made after this point go unreported in that build.
    if (env.leak_check_first) __lsan_do_leak_check();
#endif

    Report report;
    auto record = [&](Result<LayerStatus> status) -> Status {
        if (!status) return std::unexpected(status.error());
        if (!status->applied && spec.strict) {
            return fail(
                ErrorCode::permission_denied,
                std::string("sandbox layer ") + layer_name(status->layer) +
                    " is not available on this host and strict mode is on: " + status->detail);
        }
        report.layers.push_back(std::move(*status));
        return {};
    };
    // Fixed order: seccomp last, because it forbids the calls (prctl,
    // capset, setrlimit, landlock_*) the earlier layers make.
    if (auto st = record(apply_no_new_privs()); !st) return std::unexpected(st.error());
    if (auto st = record(apply_capabilities()); !st) return std::unexpected(st.error());
    if (auto st = record(apply_rlimits(spec.limits)); !st) return std::unexpected(st.error());
    if (auto st = record(apply_landlock_fs(spec, env.landlock_abi)); !st) {
        return std::unexpected(st.error());
    }
    if (auto st = record(apply_landlock_net(spec, env.landlock_abi)); !st) {
        return std::unexpected(st.error());
    }
    if (auto st = record(apply_seccomp(env.seccomp_available)); !st) {
        return std::unexpected(st.error());
    }
    return report;
}

}  // namespace detail
}  // namespace sa::agent::sandbox
