#!/usr/bin/env bash
# Zero-trust jobs end to end (docs/jobs.md): real hub and agent processes,
# the agent's own policy file, sandboxed workers, two jobs at once,
# interactive operations with --wait, cancellation, a crashing worker, a
# timeout, policy refusals, and a hub job-signing key rotation.
#
# The workers are the test worker (the real worker plus faults chosen by the
# source's name: slow-*, crash-*), so the agent runs it as
# jobs.worker_executable; every other source behaves exactly as in production.
# Usage: jobs_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR TEST_WORKER
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3 TEST_WORKER=$4
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-jobs

# Short leases so that a lost or cancelled job settles quickly.
hub_start_args "$work/hub" "$work/hub.log" --lease-seconds 15
hub_app_create jobs-app "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 20
sqlite3 "$work/source.db" "CREATE TABLE secret_payroll (id INTEGER, amount NUMERIC);"

cat >"$work/policy.yaml" <<'YAML'
version: 1
max_concurrent_jobs: 2
rules:
  - name: catalog
    sources: [inventory, slow-1, crash-1]
    operations: [extract_metadata]
    tables: {exclude: ["secret_.*"]}
  - name: short
    sources: [slow-timeout]
    operations: [extract_metadata]
    limits: {max_duration: 2s}
  - name: setup
    sources: ["*"]
    operations: [test_connection, preflight, list_schemas]
    limits: {max_duration: 1m}
YAML
chmod 644 "$work/policy.yaml"

write_config() {
  AGENT_EXTRA_SOURCES="  - {name: slow-1, connector: sqlite, path: $work/source.db}
  - {name: slow-timeout, connector: sqlite, path: $work/source.db}
  - {name: crash-1, connector: sqlite, path: $work/source.db}
  - {name: ledger, connector: sqlite, path: $work/source.db, sensitivity: finance}"
  AGENT_EXTRA_YAML="jobs:
  policy_file: $work/policy.yaml
  workers: 2
  heartbeat_interval_seconds: 1
  cancel_grace_seconds: 2
  worker_executable: $TEST_WORKER"
  agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
    "$work/hub/job-signing.pub.pem"
}
write_config
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
curl -fsS "$HEALTH_URL/livez" | jq -e '.live == true' >/dev/null || fail "/livez is not live"

job_field() { hub_job_json "$1" | jq -r "$2"; }
expect_end() { # expect_end ID STATUS REASON
  local status
  status=$(hub_job_wait "$1" 60) || true
  [ "$status" = "$2" ] || fail "job $1: status $status, want $2: $(hub_job_json "$1")"
  [ "$(job_field "$1" '.reason_code // ""')" = "$3" ] ||
    fail "job $1: reason $(job_field "$1" .reason_code), want $3: $(hub_job_json "$1")"
}

# --- Interactive operations answer synchronously through --wait.
out=$("$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source inventory \
  --operation test_connection --wait --wait-timeout 60 --json) || fail "test_connection: $out"
jq -e '.status == "succeeded" and .result.connected == true' <<<"$out" >/dev/null ||
  fail "test_connection result: $out"
out=$("$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source inventory \
  --operation list_schemas --wait --json) || fail "list_schemas: $out"
jq -e 'any(.result.schemas[]; .schema == "main")' <<<"$out" >/dev/null || fail "list_schemas: $out"
out=$("$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source inventory \
  --operation preflight --wait --json) || fail "preflight: $out"
jq -e '.result.checks | length > 0 and all(.[]; .ok)' <<<"$out" >/dev/null || fail "preflight: $out"
# The text form prints the result too.
"$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source ledger \
  --operation test_connection --wait >"$work/wait.txt" || fail "test_connection text: $(cat "$work/wait.txt")"
grep -q "succeeded" "$work/wait.txt" || fail "--wait text output: $(cat "$work/wait.txt")"

# --- Two jobs at once: a long one keeps one slot busy while another finishes.
slow=$(hub_job_create jobs-app slow-1)
for ((i = 0; i < 200; i++)); do
  [ "$(job_field "$slow" .status)" = leased ] && break
  sleep 0.05
done
[ "$(job_field "$slow" .status)" = leased ] || fail "the slow job was not leased"
quick=$(hub_job_create jobs-app inventory)
expect_end "$quick" succeeded ""
[ "$(job_field "$slow" .status)" = leased ] || fail "the slow job ended early: $(hub_job_json "$slow")"
# The policy's table filter held: nothing named secret_* reached the catalog.
tables=$("$HUB_BIN" catalog tables --data "$HUB_DATA" --source inventory --json)
jq -e 'length > 0 and all(.[]; (.name | startswith("secret_")) | not)' <<<"$tables" >/dev/null ||
  fail "catalog holds a table the policy excludes: $tables"
# Heartbeats carried progress to the hub.
for ((i = 0; i < 100; i++)); do
  [ "$(job_field "$slow" '.last_heartbeat_at_ms // empty')" != "" ] && break
  sleep 0.1
done
[ "$(job_field "$slow" '.last_heartbeat_at_ms // empty')" != "" ] || fail "no heartbeat: $(hub_job_json "$slow")"

# --- Several jobs queued at once all finish, each in its own worker.
batch=()
for i in 1 2 3 4; do batch+=("$(hub_job_create jobs-app inventory)"); done
for id in "${batch[@]}"; do expect_end "$id" succeeded ""; done

# --- Cancel: the hub says so in the next heartbeat; the worker is stopped.
"$HUB_BIN" job cancel "$slow" --data "$HUB_DATA" >/dev/null || fail "job cancel failed"
expect_end "$slow" cancelled cancelled
for ((i = 0; i < 100; i++)); do
  pgrep -f "^$TEST_WORKER" >/dev/null || break
  sleep 0.05
done
pgrep -f "^$TEST_WORKER" >/dev/null && fail "a worker outlived its cancelled job"

# --- A crashing worker fails its job; the supervisor carries on.
crash=$(hub_job_create jobs-app crash-1)
expect_end "$crash" failed worker_crashed
job_field "$crash" .message | grep -q SIGSEGV || fail "crash message: $(job_field "$crash" .message)"
after=$(hub_job_create jobs-app inventory)
expect_end "$after" succeeded ""
kill -0 "$AGENT_PID" || fail "the agent died with its worker"

# --- The policy's time limit.
long=$(hub_job_create jobs-app slow-timeout)
expect_end "$long" failed timeout

# --- Refusals, each with its reason, before any worker starts.
unknown=$(hub_job_create jobs-app nowhere)
expect_end "$unknown" refused unknown_source
ledger=$(hub_job_create jobs-app ledger)
expect_end "$ledger" refused operation_not_allowed
outside=$("$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source inventory \
  --include-table secret_payroll)
expect_end "$outside" refused filter_outside_policy
set +e
"$HUB_BIN" job create --data "$HUB_DATA" --app jobs-app --source ledger --wait >/dev/null 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || fail "--wait on a refused job exited $rc, want 1"

metrics=$(curl -fsS "$HEALTH_URL/metrics")
for layer in no_new_privs capabilities rlimits landlock_fs seccomp; do
  grep -qE "^secure_agent_sandbox_layer\{layer=\"$layer\"\} 1$" <<<"$metrics" ||
    fail "sandbox layer $layer not reported applied"
done
grep -qE '^secure_agent_job_failures_total\{reason="worker_crashed"\} 1$' <<<"$metrics" ||
  fail "worker crash not counted"
grep -qE '^secure_agent_jobs_total\{outcome="cancelled"\} 1$' <<<"$metrics" ||
  fail "cancellation not counted"
grep -qE '^secure_agent_job_refusals_total\{reason="filter_outside_policy"\} 1$' <<<"$metrics" ||
  fail "policy refusal not counted"

# Every decision is on the record with the rule that made it.
records=$(cat "$work"/state/audit/segment-*.jsonl)
jq -s -e 'any(.[]; .type == "job.refused" and .fields.reason_code == "operation_not_allowed"
              and .fields.policy_rule == "default-deny")' <<<"$records" >/dev/null ||
  fail "policy refusal not audited with its rule"
jq -s -e 'any(.[]; .type == "job.verified" and .fields.policy_rule == "catalog")' \
  <<<"$records" >/dev/null || fail "policy decision not audited with its rule"
jq -s -e 'any(.[]; .type == "job.sandboxed" and any(.fields.applied[]; .layer == "seccomp"))' \
  <<<"$records" >/dev/null || fail "worker sandbox not audited"
jq -s -e 'any(.[]; .type == "job.started" and .fields.source == "ledger"
              and .fields.sensitivity == "finance")' <<<"$records" >/dev/null ||
  fail "the source's sensitivity is not audited"
jq -s -e 'any(.[]; .type == "policy.loaded" and (.fields.sha256 | length) == 64)' \
  <<<"$records" >/dev/null || fail "policy load not audited"

# --- Job-signing key rotation: pin the next key beside the current one first.
cp "$HUB_DATA/job-signing.pub.pem" "$work/job-key-1.pem"
"$HUB_BIN" pki rotate-job-key --prepare --data "$HUB_DATA" >/dev/null || fail "prepare failed"
[ -f "$HUB_DATA/job-signing.next.pub.pem" ] || fail "no prepared key"
cp "$HUB_DATA/job-signing.next.pub.pem" "$work/job-key-2.pem"
stop_process "$AGENT_PID" || fail "agent exited non-zero"
AGENT_JOB_KEYS="$work/job-key-1.pem, $work/job-key-2.pem"
write_config
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
"$HUB_BIN" pki rotate-job-key --data "$HUB_DATA" >/dev/null || fail "rotation failed"
rotated=$(hub_job_create jobs-app inventory)
expect_end "$rotated" succeeded ""
# An agent that pins only the old key refuses jobs signed with the new one.
stop_process "$AGENT_PID" || fail "agent exited non-zero"
AGENT_JOB_KEYS="$work/job-key-1.pem"
write_config
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
stale=$(hub_job_create jobs-app inventory)
expect_end "$stale" refused unknown_key

stop_process "$AGENT_PID" || fail "agent exited non-zero"
# Nothing is left in the spool once jobs end.
[ -z "$(ls -A "$work/state/spool")" ] || fail "spool not empty: $(ls -A "$work/state/spool")"
echo "PASS jobs"
