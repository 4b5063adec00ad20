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
// Audit records (through Auditor, all with the job id): job.received (durable;
// the JWS digest and kid as received), job.verified | job.refused (durable),
// job.started, delivery.chunk per uploaded chunk, job.finished (durable), then
// delivery.accepted (durable) | delivery.refused. When the audit log fails in
// fail_closed mode, delivery is aborted before `complete` and the job is
// reported failed with delivery_failed.
// SECURITY NOTE: what goes to the hub in a failure message never includes
// local details such as the source path; those stay in the agent's log.
#include <string>

#include "agent/app/auditor.h"
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
    // All references (and auditor, when given) must outlive the runner. Not
    // thread-safe: one job at a time. Without an auditor nothing is audited.
    JobRunner(const config::Config& config, jobs::JobVerifier& verifier, control::HubClient& hub,
              const observe::Logger& logger, observe::AgentMetrics& metrics,
              Auditor* auditor = nullptr);

    JobOutcome run(const jobs::LeaseEnvelope& envelope);

  private:
    JobOutcome refuse(const jobs::LeaseEnvelope& envelope, const std::string& reason,
                      const std::string& message);
    JobOutcome report_failure(const jobs::Job& job, const std::string& reason,
                              const std::string& hub_message, const Error& local_error);
    JobOutcome execute(const jobs::Job& job, const config::SourceConfig& source);
    void record_finished(const jobs::Job& job, const JobOutcome& outcome, nlohmann::json fields);

    const config::Config& config_;
    jobs::JobVerifier& verifier_;
    control::HubClient& hub_;
    const observe::Logger& logger_;
    observe::AgentMetrics& metrics_;
    Auditor no_audit_;
    Auditor& audit_;
};

}  // namespace sa::agent::app
