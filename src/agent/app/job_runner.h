#pragma once
// JobRunner: takes one leased job from verification to its reported end.
//
//   verify (JobVerifier, pinned key, audience = hub.client_id)
//   -> local checks: operation is extract_metadata, source is configured
//   -> extract (connector) into ChunkWriter, each full chunk uploaded at once
//   -> complete (chunk list, summary, timestamps)
// Any refusal is logged, counted and reported with outcome "refused"; an
// extraction or upload error is reported with outcome "failed"
// (extraction_failed / delivery_failed).
// SECURITY NOTE: what goes to the hub in a failure message never includes
// local details such as the source path; those stay in the agent's log.
#include <string>

#include "agent/config/config.h"
#include "agent/control/hub_client.h"
#include "agent/jobs/job_verifier.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/logger.h"

namespace sa::agent::app {

struct JobOutcome {
    std::string outcome;      // "succeeded" | "failed" | "refused"
    std::string reason_code;  // empty on success
};

class JobRunner final {
  public:
    // All references must outlive the runner. Not thread-safe: one job at a time.
    JobRunner(const config::Config& config, jobs::JobVerifier& verifier, control::HubClient& hub,
              const observe::Logger& logger, observe::AgentMetrics& metrics);

    JobOutcome run(const jobs::LeaseEnvelope& envelope);

  private:
    JobOutcome refuse(const jobs::LeaseEnvelope& envelope, const std::string& reason,
                      const std::string& message);
    JobOutcome report_failure(const jobs::Job& job, const std::string& reason,
                              const std::string& hub_message, const Error& local_error);
    JobOutcome execute(const jobs::Job& job, const config::SourceConfig& source);

    const config::Config& config_;
    jobs::JobVerifier& verifier_;
    control::HubClient& hub_;
    const observe::Logger& logger_;
    observe::AgentMetrics& metrics_;
};

}  // namespace sa::agent::app
