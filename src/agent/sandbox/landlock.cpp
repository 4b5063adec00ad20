// Layers 4-5: Landlock file system and TCP rules.
//
// Debian 12's <linux/landlock.h> stops at ABI 2; the running kernels go
// further. Everything newer is defined here from the kernel's UAPI, and the
// structures are our own copies so the size we pass matches what we fill.
#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/sandbox/sandbox_internal.h"

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)  // ABI 2
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)  // ABI 4
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)  // ABI 4
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6
#endif

namespace sa::agent::sandbox::detail {
namespace {

constexpr int kRulePathBeneath = 1;  // LANDLOCK_RULE_PATH_BENEATH
constexpr int kRuleNetPort = 2;      // LANDLOCK_RULE_NET_PORT

// struct landlock_ruleset_attr as of ABI 6. The kernel accepts a shorter
// size from older callers, so a file-system-only ruleset passes 8 bytes and
// runs on ABI 1 kernels too.
struct RulesetAttr {
    uint64_t handled_access_fs = 0;
    uint64_t handled_access_net = 0;  // ABI 4
    uint64_t scoped = 0;              // ABI 6
};

struct __attribute__((packed)) PathBeneathAttr {
    uint64_t allowed_access;
    int32_t parent_fd;
};

struct NetPortAttr {
    uint64_t allowed_access;
    uint64_t port;
};

// Owns a descriptor for the few lines it is needed.
class Fd final {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

  private:
    int fd_;
};

int create_ruleset(const RulesetAttr& attr, size_t size) {
    return static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0));
}

// The file-system rights an ABI knows. No right may be named that the
// kernel does not know (EINVAL), and every known right is handled, so what
// no rule grants is denied.
uint64_t fs_rights_for(int abi) {
    uint64_t rights = (1ULL << 13) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
    if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return rights;
}

// Rights that apply to a file itself (not a directory); anything else on a
// file's rule is EINVAL.
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                 LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                 LANDLOCK_ACCESS_FS_IOCTL_DEV;

// Adds one path-beneath rule. Returns false (skipped) for a path that does
// not exist.
Result<bool> add_path_rule(int ruleset, const std::string& path, uint64_t rights) {
    Fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (fd.get() < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return false;
        return fail(ErrorCode::internal,
                    "sandbox layer landlock_fs: " + errno_text("open(" + path + ")", errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return fail(ErrorCode::internal,
                    "sandbox layer landlock_fs: " + errno_text("fstat(" + path + ")", errno));
    }
    if (!S_ISDIR(st.st_mode)) rights &= kFileRights;
    if (rights == 0) return false;
    const PathBeneathAttr attr{rights, fd.get()};
    if (::syscall(SYS_landlock_add_rule, ruleset, kRulePathBeneath, &attr, 0) != 0) {
        return fail(ErrorCode::internal, "sandbox layer landlock_fs: " +
                                             errno_text("landlock_add_rule(" + path + ")", errno));
    }
    return true;
}

Status restrict_self(int ruleset, const char* layer) {
    if (::syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
        return fail(ErrorCode::internal, std::string("sandbox layer ") + layer + ": " +
                                             errno_text("landlock_restrict_self", errno));
    }
    return {};
}

}  // namespace

int probe_landlock_abi() {
    const long abi =
        ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    // ENOSYS: kernel without Landlock; EOPNOTSUPP: built in but disabled at boot.
    return abi < 0 ? 0 : static_cast<int>(abi);
}

Result<LayerStatus> apply_landlock_fs(const Spec& spec, int abi) {
    if (abi < 1) {
        return LayerStatus{
            Layer::landlock_fs, false,
            "Landlock not available on this kernel (not built in or disabled at boot)"};
    }
    const uint64_t handled = fs_rights_for(abi);
    RulesetAttr attr;
    attr.handled_access_fs = handled;
    Fd ruleset(create_ruleset(attr, sizeof(attr.handled_access_fs)));
    if (ruleset.get() < 0) {
        return fail(ErrorCode::internal,
                    "sandbox layer landlock_fs: " + errno_text("landlock_create_ruleset", errno));
    }

    // Read-only: read files and list directories; never execute (the worker
    // is already running and must not start anything).
    const uint64_t read_only = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    // Read-write: everything but execute. Creating device nodes would also
    // need CAP_MKNOD, which the capabilities layer has dropped.
    const uint64_t read_write = handled & ~LANDLOCK_ACCESS_FS_EXECUTE;

    const auto& ro_paths =
        spec.read_only_paths.empty() ? default_read_only_paths() : spec.read_only_paths;
    int ro = 0;
    int rw = 0;
    int skipped = 0;
    for (const auto& path : ro_paths) {
        auto added = add_path_rule(ruleset.get(), path, read_only);
        if (!added) return std::unexpected(added.error());
        *added ? ++ro : ++skipped;
    }
    for (const auto& path : spec.read_write_paths) {
        auto added = add_path_rule(ruleset.get(), path, read_write);
        if (!added) return std::unexpected(added.error());
        *added ? ++rw : ++skipped;
    }
    if (auto st = restrict_self(ruleset.get(), "landlock_fs"); !st) {
        return std::unexpected(st.error());
    }
    return LayerStatus{Layer::landlock_fs, true,
                       "landlock ABI " + std::to_string(abi) + ": " + std::to_string(ro) +
                           " read-only, " + std::to_string(rw) + " read-write paths (" +
                           std::to_string(skipped) + " not found, skipped)"};
}

Result<LayerStatus> apply_landlock_net(const Spec& spec, int abi) {
    if (abi < 4) {
        return LayerStatus{
            Layer::landlock_net, false,
            abi < 1 ? std::string("Landlock not available on this kernel")
                    : "landlock ABI " + std::to_string(abi) + " has no TCP rules (needs ABI 4)"};
    }
    // Handle bind as well as connect: no rule grants bind, so the worker can
    // never listen. UDP is not covered by Landlock; the seccomp layer allows
    // only stream sockets.
    RulesetAttr attr;
    attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
    size_t size = offsetof(RulesetAttr, scoped);
    std::string scoped;
    if (abi >= 6) {
        // Abstract UNIX sockets and signals of processes outside this
        // sandbox are out of reach too (belt and braces for seccomp).
        attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
        size = sizeof(attr);
        scoped = "; abstract UNIX sockets and signals scoped";
    }
    Fd ruleset(create_ruleset(attr, size));
    if (ruleset.get() < 0) {
        return fail(ErrorCode::internal,
                    "sandbox layer landlock_net: " + errno_text("landlock_create_ruleset", errno));
    }
    std::string ports;
    for (uint16_t port : spec.connect_ports) {
        const NetPortAttr rule{LANDLOCK_ACCESS_NET_CONNECT_TCP, port};
        if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRuleNetPort, &rule, 0) != 0) {
            return fail(
                ErrorCode::internal,
                "sandbox layer landlock_net: " +
                    errno_text("landlock_add_rule(port " + std::to_string(port) + ")", errno));
        }
        ports += (ports.empty() ? "" : ",") + std::to_string(port);
    }
    if (auto st = restrict_self(ruleset.get(), "landlock_net"); !st) {
        return std::unexpected(st.error());
    }
    return LayerStatus{Layer::landlock_net, true,
                       "landlock ABI " + std::to_string(abi) + ": TCP connect to " +
                           (ports.empty() ? std::string("no port") : "port " + ports) +
                           ", bind denied" + scoped};
}

}  // namespace sa::agent::sandbox::detail
