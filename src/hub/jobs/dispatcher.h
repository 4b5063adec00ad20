#pragma once
// The long poll behind POST /v1/agent/lease: hands out the next job of an
// app as soon as one is queued, or reports that none arrived in time.
// Changes made by other processes are seen through the ChangeNotifier.
//
// Thread safety: lease() may run on many threads at once.
#include <chrono>
#include <optional>
#include <string>

#include "common/result.h"
#include "hub/jobs/job_queue.h"
#include "hub/jobs/job_signer.h"
#include "hub/store/change_notifier.h"

namespace sa::hub::jobs {

struct Lease {
    std::string lease_id;
    std::string job_id;
    int64_t lease_expires_at = 0;  // Unix seconds
    std::string job;               // the signed job (JWS compact)
    std::string kid;               // of the key that signed it, for the log
    Job details;                   // for the log
};

class Dispatcher final {
  public:
    Dispatcher(JobQueue& queue, const JobSigner& signer, store::ChangeNotifier& notifier);

    // Returns a lease at once if a job is waiting, else waits up to wait for
    // one. nullopt when none arrived, or the notifier was shut down.
    Result<std::optional<Lease>> lease(const std::string& app, const std::string& agent_id,
                                       std::chrono::milliseconds wait);

    // Leases can expire while nobody writes to the database; waiters re-check
    // at least this often so that such a job is handed out again.
    static constexpr std::chrono::milliseconds kRecheckInterval{1000};

  private:
    JobQueue& queue_;
    const JobSigner& signer_;
    store::ChangeNotifier& notifier_;
};

}  // namespace sa::hub::jobs
