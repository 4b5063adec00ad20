#pragma once
// JobRunner: the supervisor's side of one leased job, from verification to
// its reported end (docs/jobs.md).
//
//   verify (JobVerifier: pinned keys by kid, aud, exp/nbf, durable jti)
//   -> the source is configured here
//   -> the customer's policy (operation, source, filters, time window) decides
//   -> a sandboxed worker process runs it (worker::WorkerSession); the
//      supervisor re-checks the limits, uploads each chunk the worker leaves
//      in the spool, heartbeats the lease (progress; the hub may cancel)
//   -> complete (chunks, or the result of an interactive operation) | fail
//
// Incremental runs (extract_metadata with the signed mode "incremental"):
// the job runs as a delta only when STATE_DIR/fingerprints/<source>.ndjson
// (delivery/fingerprint_state.h) parses, names the job's baseline_job_id
// and the same filters; then the supervisor leaves its objects in
// SPOOL/baseline.ndjson for the worker and the completion carries
// "delta": {"baseline_job_id"}. Otherwise (logged at info with the reason)
// the job is a full extraction, which is always correct. After the hub
// accepted any extract_metadata completion (HTTP 200), the state is replaced
// by what the worker saw (SPOOL/fingerprints.ndjson); a failed or rejected
// completion leaves the old state.
//
// Endings: a refusal (verification or policy) is reported with outcome
// "refused"; after the worker started: cancelled (the hub asked: SIGTERM, then
// SIGKILL after the grace period), timeout (the policy's max_duration),
// lease_lost (the hub says so, or no renewal before the lease ran out: the
// job is aborted and not reported), worker_crashed (it died without an
// answer), the worker's own failure (connection_failed, extraction_failed,
// limit_exceeded, sandbox_unavailable), delivery_failed. On shutdown the
// worker is stopped and the job left to its lease (the hub re-queues it).
//
// Audit records (through Auditor, all with the job id): job.received
// (durable; the JWS as received), job.verified {policy rule} | job.refused
// {reason, rule} (durable), job.started, job.sandboxed {layers}, delivery.chunk
// per uploaded chunk, job.finished (durable) {outcome, reason}, then
// delivery.accepted (durable) | delivery.refused. When the audit log fails
// in fail_closed mode, nothing more leaves the agent: the job is reported
// failed with delivery_failed.
// SECURITY NOTE: what goes to the hub in a failure message never includes
// local details such as the source path; those stay in the agent's log.
#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "agent/app/auditor.h"
#include "agent/config/config.h"
#include "agent/control/hub_client.h"
#include "agent/egress/policy.h"
#include "agent/jobs/job_verifier.h"
#include "agent/jobs/policy.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/logger.h"
#include "agent/sandbox/sandbox.h"
#include "agent/secrets/secret_stores.h"
#include "agent/worker/messages.h"

namespace sa::agent::app {

// The sandbox a job's worker applies (jobs.sandbox), without the job's own
// paths and ports: also what startup and `doctor` probe to learn which
// layers this host gives.
sandbox::Spec worker_sandbox_spec(const config::Config& config);

// The fingerprint of a job's effective filter sets (policy's then the job's,
// as the worker gets them): SHA-256 hex of the compact JSON array of
// jobs::to_json of each. An incremental run is a delta only against a state
// recorded with the same filters.
std::string filters_sha256(const std::vector<jobs::ObjectFilters>& filters);

struct JobOutcome {
    std::string outcome;      // "succeeded" | "failed" | "refused" | "cancelled" | "aborted"
    std::string reason_code;  // empty on success
};

class JobRunner final {
  public:
    struct Options {
        std::string worker_executable;  // absolute path; run as `EXE worker`
        std::string spool_root;         // STATE_DIR/spool: one directory per running job
        std::chrono::seconds heartbeat_interval{30};
        std::chrono::seconds cancel_grace{10};
        // Called on every turn while a job runs (the watchdog); optional.
        std::function<void()> beat;
        // Set on shutdown: the worker is stopped and the job left to its lease.
        const std::atomic<bool>* stop = nullptr;
        // Database sources: the connection is checked against the egress
        // policy here (the worker gets the checked address and never
        // resolves), recorded in the network log, and the credentials are
        // read just in time from the secret stores. Required for sources
        // with a host; SQLite needs neither.
        const egress::EgressPolicy* egress = nullptr;
        const secrets::SecretStores* secrets = nullptr;
        std::function<void(const egress::ConnectionRecord&)> on_connection;
    };

    // All references (and auditor, when given) must outlive the runner. One
    // runner per control slot (hub is not shared); verifier, policy, logger,
    // metrics and auditor are shared between slots and thread-safe. Without
    // an auditor nothing is audited.
    JobRunner(const config::Config& config, jobs::JobVerifier& verifier, const jobs::Policy& policy,
              control::HubClient& hub, const observe::Logger& logger,
              observe::AgentMetrics& metrics, Options options, Auditor* auditor = nullptr);

    JobOutcome run(const jobs::LeaseEnvelope& envelope);

  private:
    struct Running;

    JobOutcome refuse(const jobs::LeaseEnvelope& envelope, const std::string& reason,
                      const std::string& message, const std::string& rule = {});
    JobOutcome report_failure(const jobs::Job& job, const std::string& reason,
                              const std::string& hub_message, const Error& local_error);
    JobOutcome execute(const jobs::Job& job, const config::SourceConfig& source,
                       const jobs::PolicyDecision& decision, int64_t lease_expires_at);
    JobOutcome finish(const jobs::Job& job, Running& running);
    // For a database source: the checked address and the credentials.
    Result<std::vector<worker::Credential>> prepare_connection(const jobs::Job& job,
                                                               const config::SourceConfig& source,
                                                               worker::SourceParams& params);
    void heartbeat(const jobs::Job& job, Running& running);
    Status upload(const jobs::Job& job, Running& running, int64_t seq,
                  const std::string& sha256_hex, int64_t size, const std::string& path);
    void record_finished(const jobs::Job& job, const JobOutcome& outcome, nlohmann::json fields);
    // An incremental job: true when it can run as a delta (baseline.ndjson
    // written to spool_dir); false with the reason logged.
    bool prepare_baseline(const jobs::Job& job, const std::string& filters_sha256,
                          const std::string& spool_dir);
    // After the hub accepted an extraction: the worker's fingerprints become
    // the source's state. Failures are logged (the next incremental job then
    // runs full because the state names an older job).
    void commit_state(const jobs::Job& job, const Running& running);

    const config::Config& config_;
    jobs::JobVerifier& verifier_;
    const jobs::Policy& policy_;
    control::HubClient& hub_;
    const observe::Logger& logger_;
    observe::AgentMetrics& metrics_;
    Options options_;
    Auditor no_audit_;
    Auditor& audit_;
};

}  // namespace sa::agent::app
