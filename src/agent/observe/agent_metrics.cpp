#include "agent/observe/agent_metrics.h"

namespace sa::agent::observe {
namespace {

constexpr const char* kJobsTotal = "secure_agent_jobs_total";
constexpr const char* kJobsHelp = "Jobs the agent finished, by outcome.";
constexpr const char* kRefusals = "secure_agent_job_refusals_total";
constexpr const char* kRefusalsHelp = "Jobs the agent refused to run, by reason code.";
constexpr const char* kFailures = "secure_agent_job_failures_total";
constexpr const char* kFailuresHelp = "Jobs that failed after they started, by reason code.";
constexpr const char* kSandboxLayer = "secure_agent_sandbox_layer";
constexpr const char* kSandboxLayerHelp =
    "1 when the last job worker applied this sandbox layer, 0 when the host lacked it.";
constexpr const char* kHubRequests = "secure_agent_hub_requests_total";
constexpr const char* kHubRequestsHelp =
    "Requests to the hub, by endpoint and HTTP status (\"error\": no response).";

}  // namespace

AgentMetrics::AgentMetrics(Registry& registry, const std::string& version)
    : registry_(registry),
      ready_(registry.gauge("secure_agent_ready",
                            "1 when the agent holds a token and its last hub contact succeeded.")),
      audit_failed_(registry.gauge("secure_agent_audit_failed",
                                   "1 when the audit log cannot be written (see /readyz).")),
      jobs_running_(registry.gauge("secure_agent_jobs_running", "Job workers running now.")),
      worker_crashes_(registry.counter("secure_agent_worker_crashes_total",
                                       "Job workers that died without answering (crash, kill, "
                                       "sandbox violation).")),
      lease_latency_(
          registry.histogram("secure_agent_lease_latency_seconds",
                             "Duration of lease requests that returned a job (job pickup wait).",
                             {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30})),
      job_duration_(registry.histogram(
          "secure_agent_job_duration_seconds",
          "Time from receiving a job's lease to reporting its outcome to the hub.",
          {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})) {
    registry
        .gauge("secure_agent_build_info", "Build information; the value is always 1.",
               {{"version", version}})
        .set(1);
    for (const char* outcome : {"succeeded", "failed", "refused", "cancelled", "aborted"}) {
        registry.counter(kJobsTotal, kJobsHelp, {{"outcome", outcome}});
    }
}

void AgentMetrics::job_finished(std::string_view outcome) {
    registry_.counter(kJobsTotal, kJobsHelp, {{"outcome", std::string(outcome)}}).inc();
}

void AgentMetrics::job_refused(std::string_view reason) {
    registry_.counter(kRefusals, kRefusalsHelp, {{"reason", std::string(reason)}}).inc();
}

void AgentMetrics::job_failed(std::string_view reason) {
    registry_.counter(kFailures, kFailuresHelp, {{"reason", std::string(reason)}}).inc();
}

void AgentMetrics::sandbox_layer(std::string_view layer, bool applied) {
    registry_.gauge(kSandboxLayer, kSandboxLayerHelp, {{"layer", std::string(layer)}})
        .set(applied ? 1 : 0);
}

void AgentMetrics::hub_request(std::string_view endpoint, long status) {
    registry_
        .counter(kHubRequests, kHubRequestsHelp,
                 {{"endpoint", std::string(endpoint)},
                  {"code", status > 0 ? std::to_string(status) : "error"}})
        .inc();
}

}  // namespace sa::agent::observe
