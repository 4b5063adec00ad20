#pragma once
// The job worker process: `secure-agent worker`, started by WorkerSession
// with the channel on descriptor 3. It
//   1. hardens itself (not dumpable, no core files),
//   2. reads job, credentials (at most kMaxCredentials) and start,
//   3. applies the sandbox (read-only: system paths and, for sqlite, the
//      database file with its -wal/-shm/-journal siblings; read-write: its
//      spool dir; TCP connect: the source's port), sends ready,
//   4. runs the operation, writing chunk files into the spool dir and
//      sending chunk/progress frames, and ends with one result or failure.
// Exit status: 0 after result, 2 after failure, 3 when the sandbox cannot be
// applied, 4 for a protocol error (kExit* in messages.h).
// Single-threaded: the seccomp filter forbids creating threads.
#include <functional>
#include <optional>

#include "agent/worker/channel.h"
#include "agent/worker/messages.h"

namespace sa::agent::worker {

int run_worker(int channel_fd = 3);

// Test seam, used only by the test worker (testing/test_worker_main.cpp):
// called right after ready was sent, inside the sandbox. Returning an exit
// status ends the worker with it; nullopt runs the job normally.
using AfterReadyHook = std::function<std::optional<int>(const WorkerJob& job, Channel& channel)>;
int run_worker(int channel_fd, const AfterReadyHook& after_ready);

}  // namespace sa::agent::worker
