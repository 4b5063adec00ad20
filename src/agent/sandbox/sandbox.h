#pragma once
// The job worker's sandbox: the layers a worker process applies to itself,
// in a fixed order, before it touches untrusted data (docs/jobs.md,
// "Sandbox layers"):
//
//   1. no_new_privs      prctl(PR_SET_NO_NEW_PRIVS): no setuid gain through exec
//   2. capabilities      bounding, ambient, effective/permitted/inheritable sets emptied
//   3. rlimits           address space, CPU time, open files, file size, processes
//   4. landlock_fs       read-only system paths and inputs, read-write spool only
//   5. landlock_net      TCP connect only to the listed ports (Landlock ABI 4+)
//   6. seccomp           syscall allowlist, default action: kill the process
//
// Each layer reports whether it was applied. A layer the kernel cannot give
// (no Landlock, ABI < 4 for the network rules) is skipped and reported; in
// strict mode any skipped layer makes apply() fail, and the caller must not
// go on. A layer that is available but fails to apply is always an error.
// Irreversible: call only in the worker, after everything it needs before
// the drop (the channel, its job) has been read.
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace sa::agent::sandbox {

struct Limits {
    uint64_t address_space_bytes = 4ull << 30;  // RLIMIT_AS
    uint64_t cpu_seconds = 3600;                // RLIMIT_CPU (SIGXCPU, then SIGKILL)
    uint64_t open_files = 256;                  // RLIMIT_NOFILE
    uint64_t file_size_bytes = 1ull << 30;      // RLIMIT_FSIZE (a spool file)
    uint64_t processes = 0;                     // RLIMIT_NPROC; 0: no new processes
};

struct Spec {
    Limits limits;
    // Readable (and for directories, everything below them); files and
    // directories that do not exist are skipped. Empty: default_read_only_paths().
    std::vector<std::string> read_only_paths;
    // Readable and writable (the job's spool directory).
    std::vector<std::string> read_write_paths;
    // TCP ports the worker may connect to; empty: no TCP connect at all.
    std::vector<uint16_t> connect_ports;
    // Refuse to run when any layer is unavailable.
    bool strict = false;
};

enum class Layer { no_new_privs, capabilities, rlimits, landlock_fs, landlock_net, seccomp };

// "no_new_privs", "capabilities", "rlimits", "landlock_fs", "landlock_net", "seccomp"
const char* layer_name(Layer layer);

struct LayerStatus {
    Layer layer;
    bool applied = false;
    std::string detail;  // why it was skipped, or what was applied (e.g. "landlock ABI 7")
};

struct Report {
    std::vector<LayerStatus> layers;  // every layer, in the order applied
    bool all_applied() const;
};

// Read-only system paths a worker needs to run: the dynamic loader's
// libraries and configuration, time zone data, TLS trust roots (only the
// ones that exist on this host; never /etc as a whole, never /proc).
std::vector<std::string> default_read_only_paths();

// Applies every layer in the order above. Errors: permission_denied in
// strict mode when a layer is unavailable (the message names it), internal
// when an available layer fails (the message names it and errno). On error
// the process is in an undefined, partly restricted state: exit.
// Also invalid_argument when the process has more than one thread (Landlock
// and seccomp restrict only the calling thread). The strict-mode refusal and
// the thread check happen before any layer is applied. In the
// AddressSanitizer build, LeakSanitizer's exit-time check runs inside
// apply(), before the layers forbid what it needs.
//
// After apply() the process cannot start a process or thread, exec, listen,
// trace, open sockets other than TCP (UDP and UNIX sockets: EACCES), or
// change its limits; any forbidden system call kills it with SIGSYS. The
// full allowlist is in seccomp_filter.cpp.
Result<Report> apply(const Spec& spec);

// The Landlock ABI version the running kernel offers; 0 when none.
int landlock_abi_version();

}  // namespace sa::agent::sandbox
