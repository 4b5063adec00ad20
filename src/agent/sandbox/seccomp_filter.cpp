// Layer 6: the seccomp-bpf syscall allowlist (libseccomp).
//
// Default action: kill the whole process (SIGSYS). libseccomp checks the
// architecture first and kills calls made through any other ABI (x32, the
// 32-bit int 0x80 entry), since only the native architecture is added.
#include <fcntl.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>
#include <memory>
#include <string>

#include "agent/sandbox/sandbox_internal.h"

namespace sa::agent::sandbox::detail {
namespace {

struct FilterDeleter {
    void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterPtr = std::unique_ptr<void, FilterDeleter>;

// Builds the allowlist into ctx. Argument-filtered rules say which argument
// values pass; any other value falls through to the default (kill). The
// first failure is kept and later additions are ignored, so the list below
// reads as a list.
class Allowlist final {
  public:
    explicit Allowlist(scmp_filter_ctx ctx) : ctx_(ctx) {}

    // Syscalls every architecture has: an unknown name is a bug here.
    void allow(std::initializer_list<const char*> names) {
        for (const char* name : names) add(name, SCMP_ACT_ALLOW, {}, false);
    }
    // Legacy syscalls (open, stat, rename ...) that x86_64's glibc still
    // uses and newer architectures do not have: skipped where absent.
    void allow_where_present(std::initializer_list<const char*> names) {
        for (const char* name : names) add(name, SCMP_ACT_ALLOW, {}, true);
    }
    void allow_if(const char* name, std::initializer_list<scmp_arg_cmp> args) {
        add(name, SCMP_ACT_ALLOW, args, false);
    }
    void error_if(const char* name, int err, std::initializer_list<scmp_arg_cmp> args) {
        add(name, SCMP_ACT_ERRNO(static_cast<uint32_t>(err)), args, false);
    }

    const Status& status() const { return status_; }
    int rules() const { return rules_; }

  private:
    void add(const char* name, uint32_t action, std::initializer_list<scmp_arg_cmp> args,
             bool optional) {
        if (!status_) return;
        const int nr = seccomp_syscall_resolve_name(name);
        if (nr < 0) {  // __NR_SCMP_ERROR, or a pseudo number: not on this architecture
            if (!optional) {
                status_ = fail(ErrorCode::internal,
                               std::string("sandbox layer seccomp: unknown syscall ") + name);
            }
            return;
        }
        const int rc = seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()),
                                              args.size() == 0 ? nullptr : args.begin());
        if (rc != 0) {
            status_ = fail(ErrorCode::internal,
                           std::string("sandbox layer seccomp: ") +
                               errno_text(std::string("seccomp_rule_add(") + name + ")", -rc));
            return;
        }
        ++rules_;
    }

    scmp_filter_ctx ctx_;
    Status status_;
    int rules_ = 0;
};

// THE allowlist: the only place that says what a sandboxed worker may call.
// A worker is single-threaded, starts nothing, listens on nothing, and only
// reads its inputs, writes its spool and talks TCP to its source.
void build_allowlist(Allowlist& a, pid_t self) {
    // Descriptors and files. Which files is Landlock's job; these only say
    // "file I/O is allowed at all". Renames and unlinks stay inside the
    // read-write spool because Landlock allows them nowhere else. fchmod
    // acts on descriptors the worker already holds (write_file_atomic).
    a.allow({"read",       "write",     "pread64",   "pwrite64",   "readv",      "writev",
             "openat",     "close",     "fstat",     "newfstatat", "statx",      "lseek",
             "fsync",      "fdatasync", "renameat",  "renameat2",  "unlinkat",   "mkdirat",
             "getdents64", "ftruncate", "faccessat", "faccessat2", "readlinkat", "fchmod",
             "dup",        "dup3",      "getcwd",    "msync"});
    a.allow_where_present({"open", "stat", "lstat", "access", "rename", "unlink", "mkdir", "rmdir",
                           "readlink", "dup2", "poll", "select"});
    // fcntl: descriptor flags, status flags and record locks (SQLite). Not
    // F_SETOWN/F_SETSIG/F_SETLEASE/F_NOTIFY: those make the kernel send
    // signals, possibly to other processes of the same uid.
    for (int cmd : {F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK,
                    F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW}) {
        a.allow_if("fcntl", {SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(cmd))});
    }
    // ioctl: FIONREAD (bytes available on a socket) and TCGETS, which is
    // how isatty() asks (it answers ENOTTY for our descriptors). Nothing
    // that configures a device or a terminal (TIOCSTI could type into one).
    a.allow_if("ioctl", {SCMP_A1(SCMP_CMP_EQ, FIONREAD)});
    a.allow_if("ioctl", {SCMP_A1(SCMP_CMP_EQ, TCGETS)});

    // Memory. mprotect and mmap may still ask for PROT_EXEC: libc and the
    // loader do not need it after start-up, but denying it is left for a
    // later hardening step (it breaks nothing we know of, and is untested).
    a.allow({"brk", "mmap", "munmap", "mremap", "mprotect", "madvise"});
    // munlock: a SecretValue (a database credential) unlocks its own pages when wiped.
    a.allow({"munlock"});

    // Time, randomness, signals of its own, thread bookkeeping that glibc
    // does for the one thread (robust futex list, rseq).
    a.allow_where_present({"pause"});
    a.allow({"futex", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
             "gettimeofday", "getrandom", "sched_yield", "rt_sigaction", "rt_sigprocmask",
             "rt_sigreturn", "rt_sigsuspend", "sigaltstack", "set_robust_list", "rseq",
             "restart_syscall"});
    // Consuming its own pending SIGPIPE (the MariaDB connector's TLS
    // pre-check writes to a socket the server may have closed).
    a.allow({"rt_sigpending", "rt_sigtimedwait"});

    // Process: exit, who am I, read-only resource and system information.
    a.allow({"exit", "exit_group", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
             "uname", "getrusage", "sysinfo", "sched_getaffinity", "capget"});
    // prlimit64 only to read a limit (new_limit NULL): getrlimit() is this
    // call; raising or changing a limit is not.
    a.allow_if("prlimit64", {SCMP_A2(SCMP_CMP_EQ, 0)});
    // Signals only to itself: raise() and abort() use tgkill(getpid(), ...).
    // The pid cannot change afterwards, because nothing can fork.
    const auto pid = static_cast<scmp_datum_t>(self);
    a.allow_if("kill", {SCMP_A0(SCMP_CMP_EQ, pid)});
    a.allow_if("tgkill", {SCMP_A0(SCMP_CMP_EQ, pid)});
    // prctl only to read its own state (diagnostics and tests), never to set.
    for (int option : {PR_GET_NO_NEW_PRIVS, PR_CAPBSET_READ, PR_GET_DUMPABLE}) {
        a.allow_if("prctl", {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(option))});
    }

    // Network client. socket() only for TCP over IPv4/IPv6 (the type's low
    // bits; SOCK_NONBLOCK/SOCK_CLOEXEC may be set). Landlock limits the
    // ports; it does not cover UDP, and it does not cover connecting to UNIX
    // socket files (a root worker could otherwise reach e.g. a container
    // runtime's socket). UDP and UNIX sockets fail with EACCES instead of a
    // kill, so glibc's probes (nscd, DNS) fail softly; every other family
    // (netlink, packet, ...) kills.
    constexpr scmp_datum_t kTypeMask = 0xf;
    for (int family : {AF_INET, AF_INET6}) {
        const auto fam = static_cast<scmp_datum_t>(family);
        a.allow_if("socket", {SCMP_A0(SCMP_CMP_EQ, fam),
                              SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_STREAM)});
        a.error_if("socket", EACCES,
                   {SCMP_A0(SCMP_CMP_EQ, fam), SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_DGRAM)});
    }
    a.error_if("socket", EACCES, {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)});
    a.allow({"connect", "getsockopt", "setsockopt", "getsockname", "getpeername", "sendto",
             "recvfrom", "sendmsg", "recvmsg", "shutdown", "ppoll", "pselect6", "epoll_create1",
             "epoll_ctl", "epoll_pwait"});
    a.allow_where_present({"epoll_create", "epoll_wait", "epoll_pwait2"});

#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer build only: at exit its runtime probes whether memory
    // is readable by writing it into a pipe (IsAccessibleMemoryRange). The
    // product build never allows pipe2.
    a.allow({"pipe2"});
#endif

    // NOT allowed, so killed by the default action (listed for the reader):
    // execve, execveat (no new program), fork, vfork, clone, clone3 (no new
    // process and no thread: the worker is single-threaded), ptrace,
    // process_vm_readv/writev (no other process's memory), mount, setns,
    // unshare, bpf, perf_event_open, keyctl, personality, bind, listen,
    // accept/accept4, setrlimit and prlimit64 with a new limit, any prctl
    // that sets something, chmod/chown by path, link/symlink.
}

}  // namespace

Result<LayerStatus> apply_seccomp(bool available) {
    if (!available) {
        return LayerStatus{Layer::seccomp, false, "seccomp filters not available on this kernel"};
    }
    FilterPtr ctx(seccomp_init(SCMP_ACT_KILL_PROCESS));
    if (!ctx) {
        return fail(ErrorCode::internal, "sandbox layer seccomp: seccomp_init failed");
    }
    // A call through a foreign ABI is as fatal as a forbidden one.
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        rc != 0) {
        return fail(ErrorCode::internal,
                    "sandbox layer seccomp: " + errno_text("seccomp_attr_set(ACT_BADARCH)", -rc));
    }
    Allowlist allowlist(ctx.get());
    build_allowlist(allowlist, ::getpid());
    if (!allowlist.status()) return std::unexpected(allowlist.status().error());
    if (int rc = seccomp_load(ctx.get()); rc != 0) {
        return fail(ErrorCode::internal,
                    "sandbox layer seccomp: " + errno_text("seccomp_load", -rc));
    }
    return LayerStatus{Layer::seccomp, true,
                       "allowlist of " + std::to_string(allowlist.rules()) +
                           " rules, default action: kill process"};
}

}  // namespace sa::agent::sandbox::detail
