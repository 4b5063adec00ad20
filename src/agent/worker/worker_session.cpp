#include "agent/worker/worker_session.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace sa::agent::worker {
namespace {

constexpr int kChannelFd = 3;
// Bounds a wait so that now() + timeout cannot overflow.
constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24 * 365);

Error errno_error(ErrorCode code, const std::string& what) {
    return Error{code, what + ": " + std::strerror(errno)};
}

// Runs in the forked child of a possibly multi-threaded supervisor: only
// async-signal-safe calls, no allocation, until execve.
[[noreturn]] void exec_child(const char* path, char* const argv[], char* const envp[], int devnull,
                             int channel, int exec_error) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Ignored signals survive execve; the worker starts from the defaults
    // (so SIGTERM from terminate() ends it unless it chooses otherwise).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);

    // Move the sources above the target range first, so no dup2 below can
    // overwrite a source that happens to sit on 0..3.
    const int nul = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
    const int chan = fcntl(channel, F_DUPFD_CLOEXEC, 10);
    const int err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
    const int report = fcntl(exec_error, F_DUPFD_CLOEXEC, 10);
    int e = 0;
    if (nul < 0 || chan < 0 || report < 0) {
        e = errno;
    } else if (dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(err >= 0 ? err : nul, 2) < 0 ||
               dup2(chan, kChannelFd) < 0) {
        // dup2 onto a different number leaves the copy without FD_CLOEXEC.
        e = errno;
    } else {
        // Everything from 4 up closes at exec; the error pipe stays usable
        // until then. Kernels without CLOSE_RANGE_CLOEXEC: close around it.
        if (syscall(SYS_close_range, 4U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            syscall(SYS_close_range, 4U, static_cast<unsigned>(report - 1), 0U);
            syscall(SYS_close_range, static_cast<unsigned>(report + 1), ~0U, 0U);
        }
        execve(path, argv, envp);
        e = errno;
    }
    const int fd = report >= 0 ? report : exec_error;
    ssize_t ignored = write(fd, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

Exited exited_from(int status) {
    Exited e;
    if (WIFEXITED(status)) e.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
    e.description = describe_wait_status(status);
    return e;
}

}  // namespace

std::string describe_wait_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (!WIFSIGNALED(status)) return "ended with wait status " + std::to_string(status);
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    std::string name = abbrev != nullptr ? std::string("SIG") + abbrev : "unknown";
    switch (sig) {
        case SIGSYS:
            name += ", a system call the sandbox forbids";
            break;
        case SIGXCPU:
            name += ", the CPU time limit";
            break;
        case SIGXFSZ:
            name += ", the file size limit";
            break;
        default:
            break;
    }
    return "killed by signal " + std::to_string(sig) + " (" + name + ")";
}

WorkerSession::WorkerSession(pid_t pid, util::UniqueFd pidfd, Channel channel,
                             std::string spool_dir)
    : pid_(pid),
      pidfd_(std::move(pidfd)),
      channel_(std::move(channel)),
      spool_dir_(std::move(spool_dir)) {}

WorkerSession::WorkerSession(WorkerSession&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      channel_(std::move(other.channel_)),
      spool_dir_(std::move(other.spool_dir_)),
      phase_(other.phase_),
      next_seq_(other.next_seq_),
      exited_(std::move(other.exited_)) {
    other.channel_.reset();
}

WorkerSession& WorkerSession::operator=(WorkerSession&& other) noexcept {
    if (this != &other) {
        kill_and_reap();
        pid_ = std::exchange(other.pid_, -1);
        pidfd_ = std::move(other.pidfd_);
        channel_ = std::move(other.channel_);
        other.channel_.reset();
        spool_dir_ = std::move(other.spool_dir_);
        phase_ = other.phase_;
        next_seq_ = other.next_seq_;
        exited_ = std::move(other.exited_);
    }
    return *this;
}

WorkerSession::~WorkerSession() {
    kill_and_reap();
}

void WorkerSession::kill_and_reap() noexcept {
    if (pid_ <= 0 || exited_) return;
    // Not reaped yet, so the pid cannot have been reused: the signal reaches our child.
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    exited_ = exited_from(status);
}

Result<WorkerSession> WorkerSession::start(const std::string& executable, const WorkerJob& job,
                                           std::vector<Credential> credentials) {
    if (credentials.size() > kMaxCredentials) {
        return fail(ErrorCode::invalid_argument,
                    "a worker takes at most " + std::to_string(kMaxCredentials) + " credentials");
    }
    for (const auto& credential : credentials) {
        if (credential.name != "user" && credential.name != "password") {
            return fail(ErrorCode::invalid_argument,
                        "a worker credential is named \"user\" or \"password\", not \"" +
                            credential.name + "\"");
        }
    }
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return std::unexpected(errno_error(ErrorCode::io, "cannot create the worker channel"));
    }
    util::UniqueFd parent_end(sv[0]);
    util::UniqueFd child_end(sv[1]);
    util::UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull.valid()) {
        return std::unexpected(errno_error(ErrorCode::io, "cannot open /dev/null"));
    }
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        return std::unexpected(errno_error(ErrorCode::io, "cannot create a pipe"));
    }
    util::UniqueFd exec_read(pipe_fds[0]);
    util::UniqueFd exec_write(pipe_fds[1]);

    // Everything the child needs is built before fork: it must not allocate.
    std::string path = executable;
    std::string mode = "worker";
    std::string lang = "LANG=C.UTF-8";
    char* argv[] = {path.data(), mode.data(), nullptr};
    char* envp[] = {lang.data(), nullptr};

    const pid_t pid = ::fork();
    if (pid < 0) return std::unexpected(errno_error(ErrorCode::io, "cannot fork the worker"));
    if (pid == 0) {
        exec_child(path.c_str(), argv, envp, devnull.get(), child_end.get(), exec_write.get());
    }
    child_end.reset();
    exec_write.reset();
    devnull.reset();

    // EOF: execve succeeded (the pipe closed with it); an int: its errno.
    int exec_errno = 0;
    ssize_t n = 0;
    do {
        n = ::read(exec_read.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return fail(ErrorCode::io,
                    "cannot execute worker " + executable + ": " + std::strerror(exec_errno));
    }

    // A pidfd makes waiting for the exit pollable; kernels before 5.3 poll waitpid.
    util::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    WorkerSession session(pid, std::move(pidfd), Channel(std::move(parent_end)), job.spool_dir);

    auto gone = [](const Error& e) {
        return Error{ErrorCode::unavailable,
                     "the worker went away before it took its job: " + e.message};
    };
    if (auto st = session.channel_->send(static_cast<uint8_t>(FrameType::job), encode_job(job));
        !st) {
        return std::unexpected(gone(st.error()));
    }
    for (auto& credential : credentials) {
        if (auto st = send_credential(*session.channel_, credential); !st) {
            return std::unexpected(gone(st.error()));
        }
        // Wiped now, not when the caller's frame unwinds.
        credential.value = secrets::SecretValue();
    }
    credentials.clear();
    if (auto st = session.channel_->send(static_cast<uint8_t>(FrameType::start), ""); !st) {
        return std::unexpected(gone(st.error()));
    }
    return session;
}

Result<Event> WorkerSession::decode(Frame& frame) {
    const auto type = static_cast<FrameType>(frame.type);
    const std::string name = frame_type_name(frame.type);
    auto malformed = [&](const Error& e) {
        return Error{ErrorCode::invalid_argument,
                     "worker sent a malformed " + name + " frame: " + e.message};
    };
    auto unexpected = [&](const char* when) {
        return Error{ErrorCode::invalid_argument,
                     "worker sent an unexpected " + name + " frame " + when};
    };
    switch (type) {
        case FrameType::job:
        case FrameType::credential:
        case FrameType::start:
            return std::unexpected(
                Error{ErrorCode::invalid_argument,
                      "worker sent a " + name + " frame, which only the supervisor sends"});
        default:
            break;
    }
    if (name.starts_with("unknown")) {
        return std::unexpected(Error{ErrorCode::invalid_argument, "worker sent an " + name});
    }
    if (phase_ == Phase::ended) return std::unexpected(unexpected("after its result"));

    if (type == FrameType::log) {
        auto line = decode_log(frame.payload);
        if (!line) return std::unexpected(malformed(line.error()));
        return Event{std::move(*line)};
    }
    if (type == FrameType::failure) {
        auto failed = decode_failure(frame.payload);
        if (!failed) return std::unexpected(malformed(failed.error()));
        phase_ = Phase::ended;
        return Event{std::move(*failed)};
    }
    if (phase_ == Phase::awaiting_ready) {
        if (type != FrameType::ready) return std::unexpected(unexpected("before ready"));
        auto ready = decode_ready(frame.payload);
        if (!ready) return std::unexpected(malformed(ready.error()));
        phase_ = Phase::running;
        return Event{std::move(*ready)};
    }
    switch (type) {
        case FrameType::progress: {
            auto progress = decode_progress(frame.payload);
            if (!progress) return std::unexpected(malformed(progress.error()));
            return Event{*progress};
        }
        case FrameType::chunk: {
            auto chunk = decode_chunk(frame.payload);
            if (!chunk) return std::unexpected(malformed(chunk.error()));
            if (chunk->seq != next_seq_) {
                return std::unexpected(Error{ErrorCode::invalid_argument,
                                             "worker sent chunk " + std::to_string(chunk->seq) +
                                                 " out of order (expected " +
                                                 std::to_string(next_seq_) + ")"});
            }
            ++next_seq_;
            // decode_chunk allowed only chunk_file_name(seq): no '/', no "..".
            return Event{ChunkReady{chunk->seq, std::move(chunk->sha256_hex), chunk->size,
                                    spool_dir_ + "/" + chunk->file}};
        }
        case FrameType::result: {
            auto finished = decode_finished(frame.payload);
            if (!finished) return std::unexpected(malformed(finished.error()));
            phase_ = Phase::ended;
            return Event{std::move(*finished)};
        }
        default:
            return std::unexpected(unexpected("after ready"));
    }
}

std::optional<Exited> WorkerSession::reap(std::chrono::milliseconds timeout) {
    if (exited_) return exited_;
    const auto deadline = std::chrono::steady_clock::now() + std::min(timeout, kMaxWait);
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exited_ = exited_from(status);
            return exited_;
        }
        if (r < 0 && errno != EINTR) {
            // ECHILD: someone else reaped it (a SIGCHLD handler set to
            // SIG_IGN); nothing is left to wait for.
            exited_ =
                Exited{-1, 0, "was reaped elsewhere (" + std::string(std::strerror(errno)) + ")"};
            return exited_;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return std::nullopt;
        if (pidfd_.valid()) {
            pollfd p{pidfd_.get(), POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
        } else {
            std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(5)));
        }
    }
}

Result<std::optional<Event>> WorkerSession::next(std::chrono::milliseconds timeout) {
    if (phase_ == Phase::failed || phase_ == Phase::reaped) {
        return fail(ErrorCode::conflict, "the worker session has ended");
    }
    timeout = std::min(timeout, kMaxWait);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (phase_ != Phase::closed) {
        auto received = channel_->receive(timeout);
        if (!received) {
            phase_ = Phase::failed;
            return std::unexpected(received.error());
        }
        if (std::holds_alternative<TimedOut>(*received)) return std::optional<Event>{};
        if (auto* frame = std::get_if<Frame>(&*received)) {
            auto event = decode(*frame);
            if (!event) {
                phase_ = Phase::failed;
                return std::unexpected(event.error());
            }
            return std::optional<Event>{std::move(*event)};
        }
        phase_ = Phase::closed;
        channel_.reset();
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto exited = reap(std::max(left, std::chrono::milliseconds(0)));
    if (!exited) return std::optional<Event>{};
    phase_ = Phase::reaped;
    return std::optional<Event>{Event{*exited}};
}

Exited WorkerSession::terminate(std::chrono::milliseconds grace) {
    phase_ = Phase::reaped;
    channel_.reset();
    if (pid_ <= 0) return Exited{-1, 0, "was never started"};
    if (exited_) return *exited_;
    ::kill(pid_, SIGTERM);
    if (auto exited = reap(grace)) return *exited;
    kill_and_reap();
    return *exited_;
}

}  // namespace sa::agent::worker
