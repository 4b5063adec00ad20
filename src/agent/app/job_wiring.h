#pragma once
// Startup steps for jobs, so run_agent stays a short list of named steps:
//   load_job_trust      the pinned job-signing keys, the customer's policy,
//                       and the sandbox layers this host gives a worker
//   make_job_verifier   the verifier with its durable replay cache
//   ControlSlots        one long-polling control loop per job that may run
//                       at once, each with its own hub client and job runner
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/app/auditor.h"
#include "agent/app/job_runner.h"
#include "agent/app/run_loop.h"
#include "agent/auth/token_client.h"
#include "agent/config/config.h"
#include "agent/control/hub_client.h"
#include "agent/egress/http_client.h"
#include "agent/egress/policy.h"
#include "agent/jobs/job_verifier.h"
#include "agent/jobs/policy.h"
#include "agent/observe/agent_metrics.h"
#include "agent/observe/health_server.h"
#include "agent/observe/liveness.h"
#include "agent/observe/logger.h"
#include "agent/sandbox/sandbox.h"
#include "agent/secrets/secret_stores.h"
#include "common/crypto/ed25519.h"

namespace sa::agent::app {

// What the customer set up on this host for jobs; the hub can change none of it.
struct JobTrust {
    std::vector<crypto::Ed25519PublicKey> keys;  // hub.job_signing_keys, in order
    jobs::Policy policy;                         // jobs.policy_file, else the built-in default
    sandbox::Report sandbox;                     // the layers a worker gets here
};

// Loads the keys and the policy and probes the sandbox (logging each).
// Errors: invalid_argument for what the operator must fix (a key or policy
// file, or strict mode on a host lacking a layer; the message names the
// config key), otherwise the probe's error.
Result<JobTrust> load_job_trust(const config::Config& config, const observe::Logger& logger);

// The verifier for the pinned keys, audience hub.client_id, leeway
// jobs.clock_skew_seconds, and its replay cache at STATE_DIR/jobs/replay.log
// (opened now, so a broken one stops startup instead of every job).
Result<std::unique_ptr<jobs::JobVerifier>> make_job_verifier(
    const config::Config& config, std::vector<crypto::Ed25519PublicKey> keys);

class ControlSlots final {
  public:
    // Everything the slots share; all references must outlive the slots.
    struct Shared {
        const config::Config& config;
        const jobs::Policy& policy;
        jobs::JobVerifier& verifier;       // thread-safe
        auth::TokenSource& tokens;         // thread-safe (one refresh at a time)
        egress::HttpClient::Options http;  // each slot gets its own client
        control::HubClient::Options hub;
        const observe::Logger& logger;
        observe::AgentMetrics& metrics;
        observe::Readiness& readiness;
        observe::Liveness& liveness;
        Auditor& auditor;
        const std::atomic<bool>& stop;
        // Database sources: their connections are checked and logged here,
        // their credentials read just in time.
        const egress::EgressPolicy& egress;
        const secrets::SecretStores& secrets;
        std::function<void(const egress::ConnectionRecord&)> on_connection;
    };

    // min(jobs.workers, policy max_concurrent_jobs) slots; creates
    // STATE_DIR/spool (0700) and finds the worker program
    // (jobs.worker_executable, else this binary). Errors: io.
    static Result<std::unique_ptr<ControlSlots>> create(Shared shared);

    // Runs every slot (the first on the calling thread) until stop is set,
    // then joins them.
    void run();

  private:
    struct Slot {
        std::optional<egress::HttpClient> http;
        std::unique_ptr<control::HubClient> hub;
        std::unique_ptr<JobRunner> runner;
        std::unique_ptr<RunLoop> loop;
    };
    explicit ControlSlots(Shared shared) : shared_(std::move(shared)) {}

    Shared shared_;
    std::vector<Slot> slots_;
};

}  // namespace sa::agent::app
