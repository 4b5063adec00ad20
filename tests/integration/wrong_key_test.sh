#!/usr/bin/env bash
# The agent pins a job-signing key the hub does not have: the job must be
# refused (unknown_key: its kid is not one the agent pins), reported to the
# hub, counted, and nothing delivered.
# Usage: wrong_key_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-wrongkey

hub_start "$work/hub" "$work/hub.log"
hub_app_create app-a "$work/secrets/hub-client-secret"
openssl genpkey -algorithm ed25519 -out "$work/other.key" 2>/dev/null
openssl pkey -in "$work/other.key" -pubout -out "$work/other.pub.pem"

make_sample_db "$work/source.db" 3
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" crm "$work/source.db" "$work/other.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

job=$(hub_job_create app-a crm)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = refused ] || fail "job status $status, want refused"
job_json=$(hub_job_json "$job")
[ "$(jq -r .reason_code <<<"$job_json")" = unknown_key ] || fail "reason: $job_json"
[ "$("$HUB_BIN" catalog tables --data "$work/hub" --source crm --json | jq length)" = 0 ] ||
  fail "a refused job delivered metadata"
# Read the whole page first: `curl | grep -q` fails under pipefail when grep
# stops reading early.
metrics=$(curl -fsS "$HEALTH_URL/metrics")
grep -qE '^secure_agent_job_refusals_total\{reason="unknown_key"\} 1$' <<<"$metrics" ||
  fail "refusal not counted"
grep -q '"unknown_key"' "$work/agent.log" || fail "refusal not logged"

# A job for another app is not even handed to this agent: its token's app scopes the lease.
hub_app_create app-b "$work/other-secret"
other=$(hub_job_create app-b crm)
sleep 1
[ "$(hub_job_json "$other" | jq -r .status)" = queued ] || fail "agent of app-a leased a job of app-b"

stop_process "$AGENT_PID" || fail "agent exited non-zero"
echo "PASS wrong key"
