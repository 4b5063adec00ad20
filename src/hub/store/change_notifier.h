#pragma once
// Tells waiting threads that the hub database may have changed, including
// changes committed by another process (the offline CLI creating a job while
// `serve` runs). A watcher thread reads `PRAGMA data_version` on its own
// connection every poll interval; SQLite changes that value whenever another
// connection commits. In-process writers call notify() for an immediate wake.
//
// Waiters use a generation counter: read generation(), check the database,
// then wait_for_change(seen, deadline). A change between the check and the
// wait is never lost because the counter has already moved.
//
// Thread safety: all methods are safe to call from any thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/result.h"

namespace sa::hub::store {

class ChangeNotifier final {
  public:
    using Clock = std::chrono::steady_clock;

    // Starts the watcher thread on its own connection to the database at path.
    static Result<std::unique_ptr<ChangeNotifier>> start(
        const std::string& path,
        std::chrono::milliseconds interval = std::chrono::milliseconds(20));

    ~ChangeNotifier();  // stops and joins the watcher
    ChangeNotifier(const ChangeNotifier&) = delete;
    ChangeNotifier& operator=(const ChangeNotifier&) = delete;

    uint64_t generation() const;
    void notify();
    // True when the generation differs from seen (now or before deadline);
    // false on timeout or after shutdown().
    bool wait_for_change(uint64_t seen, Clock::time_point deadline);
    // Wakes every waiter for good; used when the server stops.
    void shutdown();
    bool is_shut_down() const;

  private:
    struct Impl;
    explicit ChangeNotifier(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sa::hub::store
