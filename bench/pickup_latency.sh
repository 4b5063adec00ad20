#!/usr/bin/env bash
# Job pickup latency: from `agent-hub job create` (the hub's created_at_ms)
# to the agent starting the job (started_at_ms, reported by the agent), for
# N jobs queued one at a time to an idle, long-polling agent over TLS.
# Prints p50/p90/p99/max and, as the reference measured in the same run, the
# median of one HTTPS request to the hub (curl, fresh TLS handshake each), so
# the ratio says how many round trips a pickup costs.
#
# Usage: pickup_latency.sh AGENT_HUB SECURE_AGENT SOURCE_DIR [N]   (N >= 1, default 200)
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3 N=${4:-200}
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-bench

hub_start "$work/hub" "$work/hub.log"
hub_app_create bench "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 2
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" bench "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

# Warm-up: the first job pays for the token request.
warm=$(hub_job_create bench bench)
[ "$(hub_job_wait "$warm" 60)" = succeeded ] || harness_die "warm-up job failed"

: >"$work/latencies"
for ((i = 0; i < N; i++)); do
  job=$(hub_job_create bench bench)
  [ "$(hub_job_wait "$job" 60)" = succeeded ] || harness_die "job $job did not succeed"
  hub_job_json "$job" | jq -r '.started_at_ms - .created_at_ms' >>"$work/latencies"
done

: >"$work/rtt"
for ((i = 0; i < 50; i++)); do
  curl -s -o /dev/null -w '%{time_total}\n' --cacert "$work/hub/ca.pem" "$HUB_URL/healthz" >>"$work/rtt"
done

sort -n "$work/latencies" | awk -v n="$N" '
  { v[NR] = $1 }
  END {
    split("50 90 99", q, " ")
    printf "pickup_latency_ms n=%d", n
    for (k = 1; k <= 3; k++) { idx = int((q[k] / 100) * n + 0.999); if (idx < 1) idx = 1; printf " p%s=%d", q[k], v[idx] }
    printf " max=%d\n", v[n]
  }' | tee "$work/summary"
p50=$(sed -E 's/.* p50=([0-9]+).*/\1/' "$work/summary")
rtt_ms=$(sort -n "$work/rtt" | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] * 1000 }')
echo "reference_https_request_ms median=$rtt_ms"
awk -v a="$p50" -v b="$rtt_ms" 'BEGIN { printf "ratio pickup_p50/https_request=%.2f\n", (b > 0 ? a / b : 0) }'
