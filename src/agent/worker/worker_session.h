#pragma once
// The supervisor's side of one job worker: starts the worker process with a
// fixed descriptor layout, hands it the job and its credentials over the
// channel, then turns the worker's frames into events. The worker's frames
// are untrusted: each is checked against what the current phase allows
// (ready first; then log/progress/chunk; then one result or failure; then
// nothing), and anything else ends the session with an error naming it. The
// caller then terminate()s the worker.
//
// Not thread-safe: one owner drives a session (next/terminate) at a time.
// RAII: a session that is destroyed (also by an exception unwinding through
// its owner) kills and reaps its worker: no child outlives it, no zombie.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "agent/worker/channel.h"
#include "agent/worker/messages.h"
#include "common/result.h"
#include "common/util/unique_fd.h"

namespace sa::agent::worker {

// A chunk file the worker finished, at an absolute path inside the job's
// spool dir (its name checked against seq before the path was built).
struct ChunkReady {
    int64_t seq = 0;
    std::string sha256_hex;
    int64_t size = 0;
    std::string path;
};

struct Exited {
    int exit_code = -1;  // when it exited; -1 when killed by a signal
    int signal = 0;      // the signal that killed it; 0 when it exited
    // "exited with status 3" / "killed by signal 31 (SIGSYS, a system call the sandbox forbids)"
    std::string description;
};

using Event = std::variant<Ready, LogLine, Progress, ChunkReady, Finished, Failed, Exited>;

// "exited with status N", "killed by signal N (SIGXXX...)".
std::string describe_wait_status(int status);

class WorkerSession final {
  public:
    // fork+exec of `executable` with argv {executable, "worker"} and the
    // descriptor layout 0 = /dev/null, 1 = /dev/null, 2 = the supervisor's
    // stderr, 3 = the channel; every other descriptor closed. Environment:
    // only LANG=C.UTF-8 (no secret can travel through it). Signal mask and
    // dispositions reset to the defaults. Sends job, credentials (each wiped
    // once sent: the vector is consumed) and start.
    // Errors: invalid_argument for more than kMaxCredentials credentials or
    // one not named "user" or "password" (nothing is started); io when the
    // process cannot be created or `executable` cannot
    // be executed (the message names it and errno), unavailable when the
    // worker went away before it took its input.
    static Result<WorkerSession> start(const std::string& executable, const WorkerJob& job,
                                       std::vector<Credential> credentials);

    WorkerSession(WorkerSession&& other) noexcept;
    WorkerSession& operator=(WorkerSession&& other) noexcept;
    WorkerSession(const WorkerSession&) = delete;
    WorkerSession& operator=(const WorkerSession&) = delete;
    ~WorkerSession();  // SIGKILL + reap if still running; never leaves a zombie

    // The next event, waiting up to timeout; nullopt on timeout. Exited is
    // the last event: it comes once the channel has closed and the worker has
    // been reaped. Errors: invalid_argument for a frame the worker should not
    // have sent (type, phase or payload; the message names it), io for a
    // broken channel, conflict after Exited was returned or after an error.
    Result<std::optional<Event>> next(std::chrono::milliseconds timeout);

    // SIGTERM; SIGKILL if it has not exited after grace; reaps. Returns how
    // it ended (also when it had already ended). Later next() calls: conflict.
    Exited terminate(std::chrono::milliseconds grace);

    pid_t pid() const { return pid_; }

  private:
    enum class Phase { awaiting_ready, running, ended, closed, reaped, failed };

    WorkerSession(pid_t pid, util::UniqueFd pidfd, Channel channel, std::string spool_dir);
    Result<Event> decode(Frame& frame);
    // Waits up to timeout for the process to end and reaps it.
    std::optional<Exited> reap(std::chrono::milliseconds timeout);
    void kill_and_reap() noexcept;

    pid_t pid_ = -1;
    util::UniqueFd pidfd_;
    std::optional<Channel> channel_;
    std::string spool_dir_;
    Phase phase_ = Phase::awaiting_ready;
    int64_t next_seq_ = 0;
    std::optional<Exited> exited_;
};

}  // namespace sa::agent::worker
