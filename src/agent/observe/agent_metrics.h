#pragma once
// The agent's named metrics, registered up front so every series the
// dashboards expect exists (at 0) from the first scrape.
//
//   secure_agent_build_info{version}                 gauge, always 1
//   secure_agent_ready                               gauge 0/1
//   secure_agent_jobs_total{outcome}                 succeeded | failed | refused | cancelled
//                                                    | aborted (lease lost, shutdown)
//   secure_agent_job_refusals_total{reason}          reason codes of protocol section 5
//   secure_agent_hub_requests_total{endpoint,code}   code: HTTP status, "error" without one
//   secure_agent_lease_latency_seconds               histogram: duration of lease
//                                                    requests that returned a job (pickup wait)
//   secure_agent_job_duration_seconds                histogram: lease received -> reported
//   secure_agent_audit_failed                        gauge 0/1: the audit log cannot be written
//   secure_agent_jobs_running                        gauge: job workers running now
//   secure_agent_job_failures_total{reason}          failed jobs by reason code
//   secure_agent_sandbox_layer{layer}                gauge 0/1: the layer was applied by the
//                                                    last worker (docs/jobs.md, sandbox layers)
//   secure_agent_worker_crashes_total                workers that died without an answer
#include <string>
#include <string_view>

#include "agent/observe/metrics.h"

namespace sa::agent::observe {

class AgentMetrics final {
  public:
    // registry must outlive this object.
    AgentMetrics(Registry& registry, const std::string& version);

    // "succeeded" | "failed" | "refused" | "cancelled" | "aborted"
    void job_finished(std::string_view outcome);
    void job_refused(std::string_view reason);
    void hub_request(std::string_view endpoint, long status);
    void lease_latency(double seconds) { lease_latency_.observe(seconds); }
    void job_duration(double seconds) { job_duration_.observe(seconds); }
    void set_ready(bool ready) { ready_.set(ready ? 1 : 0); }
    void set_audit_failed(bool failed) { audit_failed_.set(failed ? 1 : 0); }
    void job_failed(std::string_view reason);
    void worker_started() { jobs_running_.inc(1); }
    void worker_stopped() { jobs_running_.inc(-1); }
    void worker_crashed() { worker_crashes_.inc(); }
    void sandbox_layer(std::string_view layer, bool applied);

    Registry& registry() { return registry_; }

  private:
    Registry& registry_;
    Gauge& ready_;
    Gauge& audit_failed_;
    Gauge& jobs_running_;
    Counter& worker_crashes_;
    Histogram& lease_latency_;
    Histogram& job_duration_;
};

}  // namespace sa::agent::observe
