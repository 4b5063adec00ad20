// Layers 1-3: no_new_privs, capabilities, rlimits.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "agent/sandbox/sandbox_internal.h"

namespace sa::agent::sandbox::detail {
namespace {

LayerStatus applied(Layer layer, std::string detail) {
    return LayerStatus{layer, true, std::move(detail)};
}

// The highest capability number the kernel knows. /proc is still readable
// here (Landlock comes later); without it, probe the bounding set until the
// kernel says the number is out of range.
int last_capability() {
    std::ifstream in("/proc/sys/kernel/cap_last_cap");
    int last = -1;
    if (in >> last && last >= 0 && last < 64) return last;
    int cap = 0;
    while (cap < 64 && ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0) ++cap;
    return cap - 1;
}

bool sets_empty(const __user_cap_data_struct (&data)[2]) {
    for (const auto& d : data) {
        if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return false;
    }
    return true;
}

}  // namespace

Result<LayerStatus> apply_no_new_privs() {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return fail(ErrorCode::internal, "sandbox layer no_new_privs: " +
                                             errno_text("prctl(PR_SET_NO_NEW_PRIVS)", errno));
    }
    return applied(Layer::no_new_privs, "set");
}

Result<LayerStatus> apply_capabilities() {
    const std::string layer = "sandbox layer capabilities: ";
    // Ambient capabilities survive execve; clear them first. Kernels older
    // than 4.3 do not know the option (EINVAL) and so have none to clear.
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        return fail(ErrorCode::internal,
                    layer + errno_text("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno));
    }

    // The bounding set limits what any later execve could grant. Dropping
    // needs CAP_SETPCAP: a process without it (not root) gets EPERM on the
    // first drop and has nothing that capset below does not already remove.
    const int last = last_capability();
    std::string bounding = "bounding set dropped (0.." + std::to_string(last) + ")";
    for (int cap = 0; cap <= last; ++cap) {
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
        if (errno == EPERM && cap == 0) {
            bounding = "bounding set kept (no CAP_SETPCAP)";
            break;
        }
        if (errno == EINVAL) break;  // beyond what this kernel knows
        return fail(
            ErrorCode::internal,
            layer + errno_text("prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")", errno));
    }

    // Raw syscalls instead of libcap-ng: version 3 uses two 32-bit words.
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capset, &header, data) != 0) {
        return fail(ErrorCode::internal, layer + errno_text("capset", errno));
    }
    // Verify: a silent partial drop must not pass as applied.
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct check[2]{};
    if (::syscall(SYS_capget, &header, check) != 0) {
        return fail(ErrorCode::internal, layer + errno_text("capget", errno));
    }
    if (!sets_empty(check)) {
        return fail(ErrorCode::internal, layer + "capget shows capabilities left after capset");
    }
    return applied(Layer::capabilities,
                   "effective, permitted, inheritable and ambient sets empty; " + bounding);
}

Result<LayerStatus> apply_rlimits(const Limits& limits) {
    struct Entry {
        int resource;
        const char* name;
        uint64_t value;
    };
    // RLIMIT_NPROC counts the processes of the real uid. The kernel exempts
    // root (and CAP_SYS_RESOURCE/CAP_SYS_ADMIN holders) from it, so for a
    // root worker 0 does not stop fork: the seccomp layer (clone, fork,
    // vfork, clone3 are not allowed) is what forbids new processes.
    const Entry entries[] = {
        {RLIMIT_AS, "RLIMIT_AS", limits.address_space_bytes},
        {RLIMIT_CPU, "RLIMIT_CPU", limits.cpu_seconds},
        {RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.open_files},
        {RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.file_size_bytes},
        {RLIMIT_NPROC, "RLIMIT_NPROC", limits.processes},
    };
    std::string detail;
    for (const auto& e : entries) {
#if defined(__SANITIZE_ADDRESS__)
        // AddressSanitizer reserves terabytes of shadow address space up
        // front; any address-space limit makes its next mmap fail. Only the
        // sanitizer build leaves RLIMIT_AS alone.
        if (e.resource == RLIMIT_AS) {
            detail += "RLIMIT_AS not set (AddressSanitizer build); ";
            continue;
        }
#endif
        rlimit current{};
        if (::getrlimit(e.resource, &current) != 0) {
            return fail(ErrorCode::internal,
                        std::string("sandbox layer rlimits: ") +
                            errno_text(std::string("getrlimit(") + e.name + ")", errno));
        }
        // Never above the current hard limit: raising it needs a privilege
        // the worker should not use, and lowering is all we want.
        const rlim_t value = std::min<rlim_t>(static_cast<rlim_t>(e.value), current.rlim_max);
        const rlimit wanted{value, value};
        if (::setrlimit(e.resource, &wanted) != 0) {
            return fail(ErrorCode::internal,
                        std::string("sandbox layer rlimits: ") +
                            errno_text(std::string("setrlimit(") + e.name + ")", errno));
        }
        detail += std::string(e.name) + "=" + std::to_string(value) + " ";
    }
    if (!detail.empty() && detail.back() == ' ') detail.pop_back();
    return applied(Layer::rlimits, detail);
}

std::string errno_text(const std::string& what, int err) {
    return what + " failed: " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
}

}  // namespace sa::agent::sandbox::detail
