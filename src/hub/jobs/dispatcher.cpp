#include "hub/jobs/dispatcher.h"

#include <algorithm>

namespace sa::hub::jobs {

Dispatcher::Dispatcher(JobQueue& queue, const JobSigner& signer, store::ChangeNotifier& notifier)
    : queue_(queue), signer_(signer), notifier_(notifier) {}

Result<std::optional<Lease>> Dispatcher::lease(const std::string& app, const std::string& agent_id,
                                               std::chrono::milliseconds wait) {
    using Clock = store::ChangeNotifier::Clock;
    const auto deadline = Clock::now() + wait;
    for (;;) {
        // Read the generation before looking, so that a job committed after
        // the look but before the wait still ends the wait.
        uint64_t seen = notifier_.generation();
        auto leased = queue_.try_lease(app, agent_id);
        if (!leased) return std::unexpected(leased.error());
        if (*leased) {
            const LeasedJob& l = **leased;
            SignedJob signed_job = signer_.sign_job(l);
            return Lease{*l.job.lease_id,
                         l.job.id,
                         *l.job.lease_expires_at_ms / 1000,
                         std::move(signed_job.jws),
                         std::move(signed_job.kid),
                         l.job};
        }
        auto now = Clock::now();
        if (now >= deadline || notifier_.is_shut_down()) return std::nullopt;
        notifier_.wait_for_change(seen, std::min(deadline, now + kRecheckInterval));
    }
}

}  // namespace sa::hub::jobs
