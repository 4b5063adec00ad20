#!/usr/bin/env bash
# Crash recovery over real processes: the agent is killed with SIGKILL as soon
# as its audit log shows that a job started. The log must still verify (or be
# damaged only by a torn last line), the restarted agent must recover it and
# become ready, and the job's chain of custody must say exactly how far the
# job got: `complete` when the hub's acceptance was recorded before the kill,
# `incomplete` otherwise. Which case happens depends on timing; both are
# checked, neither is required.
# Usage: crash_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-crash

audit_dir=$work/state/audit
agent_pub=$work/state/agent.pub.pem

# audit_types JOB: the record types of JOB's audit records, one a line.
audit_types() {
  "$AGENT_BIN" audit show --dir "$audit_dir" --job "$1" | awk '{print $3}'
}

hub_start "$work/hub" "$work/hub.log"
hub_app_create crash-app "$work/secrets/hub-client-secret"
secret=$(cat "$work/secrets/hub-client-secret")

# Enough tables that extraction and delivery take a moment after job.started.
make_sample_db "$work/source.db" 300
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

# 1. Kill the agent the moment job.started is on disk (the log is readable
# while the agent writes it; a read that meets a half-written line just
# retries).
job=$(hub_job_create crash-app inventory)
started=0
for ((i = 0; i < 1500; i++)); do
  if types=$(audit_types "$job" 2>/dev/null) && grep -qx job.started <<<"$types"; then
    started=1
    break
  fi
  kill -0 "$AGENT_PID" 2>/dev/null || { tail -n 30 "$work/agent.log" >&2; fail "agent exited"; }
  sleep 0.02
done
[ "$started" = 1 ] || { tail -n 30 "$work/agent.log" >&2; fail "job $job never started"; }
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
kill -0 "$AGENT_PID" 2>/dev/null && fail "agent survived SIGKILL"
echo "killed the agent after job.started; its records of job $job: $(audit_types "$job" | tr '\n' ' ')"

# 2. The killed agent's log verifies, or its only damage is a torn last line.
torn=0
if out=$("$AGENT_BIN" audit verify --dir "$audit_dir" --public-key "$agent_pub" 2>&1); then
  echo "after SIGKILL: audit verify passes: $out"
else
  grep -q 'incomplete line' <<<"$out" || fail "killed agent's log is damaged beyond a torn tail: $out"
  # The damage must be the last line of its file: one past its last newline.
  where=$(sed -nE 's/.* at ([A-Za-z0-9._-]+):([0-9]+)[ :].*/\1 \2/p' <<<"$out" | head -n 1)
  read -r torn_file torn_line <<<"$where"
  if [ -z "${torn_file:-}" ] || [ ! -f "$audit_dir/$torn_file" ]; then
    fail "cannot locate the damage: $out"
  fi
  [ "$torn_line" = $(($(wc -l <"$audit_dir/$torn_file") + 1)) ] ||
    fail "incomplete line $torn_file:$torn_line is not the file's last line: $out"
  torn=1
  echo "after SIGKILL: audit verify reports a torn tail: $out"
fi

# 3. Restart on the same state dir (the dead agent's health-url is stale),
# wait for /readyz, stop cleanly; the log then verifies, and a cut torn tail
# left an audit.recovered record.
rm -f "$work/state/health-url"
agent_start "$work/agent.yaml" "$work/state" "$work/agent2.log"
stop_process "$AGENT_PID" || fail "restarted agent exited non-zero on SIGTERM"
"$AGENT_BIN" audit verify --dir "$audit_dir" --public-key "$agent_pub" ||
  fail "audit log does not verify after the restart"
recovered=$("$AGENT_BIN" audit show --dir "$audit_dir" --type audit.recovered | grep -c . || true)
if [ "$torn" = 1 ]; then
  [ "$recovered" -ge 1 ] || fail "a torn tail was cut without an audit.recovered record"
fi
echo "after restart: audit verify passes; audit.recovered records: $recovered"

# 4. Custody tells how far the job got. The hub's acceptance
# (delivery.accepted, written after job.finished) is what completes it; a kill
# between job.finished and delivery.accepted leaves it incomplete too.
types=$(audit_types "$job")
rc=0
custody=$("$AGENT_BIN" audit custody --dir "$audit_dir" --public-key "$agent_pub" \
  --job "$job" --job-key "$HUB_DATA/job-signing.pub.pem" 2>&1) || rc=$?
if grep -qx delivery.accepted <<<"$types"; then
  grep -qx job.finished <<<"$types" || fail "delivery.accepted without job.finished: $types"
  [ "$rc" = 0 ] || fail "custody of finished job $job exits $rc: $custody"
  grep -q '^audit custody: complete; every link checked' <<<"$custody" ||
    fail "custody of finished job $job is not complete: $custody"
  echo "case: the kill came too late; job $job finished and custody is complete"
else
  [ "$rc" = 1 ] || fail "custody of interrupted job $job exits $rc, want 1: $custody"
  grep -q '^audit custody: incomplete' <<<"$custody" ||
    fail "custody of interrupted job $job does not say incomplete: $custody"
  if grep -qx job.finished <<<"$types"; then
    echo "case: killed after job.finished, before the hub's acceptance; custody is incomplete"
  else
    echo "case: killed before job.finished; custody is incomplete"
  fi
fi
if grep -q 'BROKEN' <<<"$custody"; then fail "custody has a broken link: $custody"; fi

stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"

# 5. No secret and no source path in the audit log.
if grep -qF -- "$secret" "$audit_dir"/*; then fail "the audit log contains the client secret"; fi
if grep -qF -- "$work/source.db" "$audit_dir"/segment-*; then
  fail "the audit log contains the source path"
fi
if grep -qF -- "$secret" "$work/agent.log" "$work/agent2.log" "$work/hub.log"; then
  fail "client secret appears in a log"
fi
echo "PASS crash"
