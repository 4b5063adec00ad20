#!/usr/bin/env bash
# End to end over real TLS on loopback: agent-hub and secure-agent as real
# processes with OS-chosen ports. Checks the catalog against the source, the
# agent's listening sockets, logs (correlation ids, no secret), metrics
# (promtool), and clean shutdown.
# Usage: e2e_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-e2e

hub_start "$work/hub" "$work/hub.log"

# First start created the PKI and keys; private keys are 0600.
for f in ca.pem ca.key server.pem server.key token-signing.key job-signing.key job-signing.pub.pem hub.db; do
  [ -f "$work/hub/$f" ] || fail "hub did not create $f"
done
for f in ca.key server.key token-signing.key job-signing.key; do
  [ "$(stat -c %a "$work/hub/$f")" = 600 ] || fail "$f is not mode 0600"
done
openssl verify -CAfile "$work/hub/ca.pem" "$work/hub/server.pem" >/dev/null || fail "server cert does not chain to the CA"

hub_app_create e2e-app "$work/secrets/hub-client-secret"
secret=$(cat "$work/secrets/hub-client-secret")

# The token endpoint refuses a wrong secret and accepts the right one.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/hub/ca.pem" -u "$CLIENT_ID:wrong" \
  -d grant_type=client_credentials "$HUB_URL/oauth2/token")
[ "$code" = 401 ] || fail "wrong client secret gave HTTP $code, want 401"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/hub/ca.pem" -u "$CLIENT_ID:$secret" \
  -d grant_type=client_credentials "$HUB_URL/oauth2/token")
[ "$code" = 200 ] || fail "right client secret gave HTTP $code, want 200"
# Plain HTTP is not served at all.
if curl -s -o /dev/null --max-time 5 "${HUB_URL/https:/http:}/healthz"; then
  fail "hub answered plain HTTP"
fi

make_sample_db "$work/source.db" 20
# The agent's signing key comes from the secret store (a PEM file there).
openssl genpkey -algorithm ed25519 -out "$work/secrets/agent-key" 2>/dev/null
chmod 600 "$work/secrets/agent-key"
AGENT_KEY_REF=files/agent-key
# Audit records also go to a JSON-lines export (a SIEM's file collector).
# The client secret goes in the form body (the other tests use Basic).
AGENT_CLIENT_AUTH=client_secret_post
AGENT_EXTRA_YAML="audit:
  siem:
    - {name: archive, type: json_lines, path: $work/audit-export.jsonl}"
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
grep -qF "via client_secret_post" "$work/hub.log" || harness_die "the agent did not use client_secret_post"

# The agent listens on exactly one socket: its loopback health endpoint.
listeners=$(ss -Hltnup | grep "pid=$AGENT_PID," || true)
[ "$(grep -c . <<<"$listeners")" = 1 ] || fail "agent listens on more than one socket: $listeners"
grep -qE '127\.0\.0\.1:[0-9]+ ' <<<"$listeners" || fail "agent listener is not on loopback: $listeners"

before=$(sha256sum "$work/source.db")
job=$(hub_job_create e2e-app inventory)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || { tail -n 30 "$work/agent.log" >&2; fail "job status $status"; }
[ "$before" = "$(sha256sum "$work/source.db")" ] || fail "extraction modified the source database"

# The catalog holds exactly what the source has.
catalog=$("$HUB_BIN" catalog tables --data "$work/hub" --source inventory --json)
want_tables=$(sqlite3 "$work/source.db" "SELECT count(*) FROM sqlite_schema WHERE type='table'")
want_views=$(sqlite3 "$work/source.db" "SELECT count(*) FROM sqlite_schema WHERE type='view'")
[ "$(jq '[.[] | select(.kind=="table")] | length' <<<"$catalog")" = "$want_tables" ] || fail "table count"
[ "$(jq '[.[] | select(.kind=="view")] | length' <<<"$catalog")" = "$want_views" ] || fail "view count"
first=$(sqlite3 "$work/source.db" "SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name LIMIT 1")
want_cols=$(sqlite3 "$work/source.db" "SELECT count(*) FROM pragma_table_info('$first')")
got_cols=$(jq --arg n "$first" '.[] | select(.name==$n) | .columns' <<<"$catalog")
[ "$got_cols" = "$want_cols" ] || fail "$first has $got_cols columns in the catalog, want $want_cols"
jq -e '[.[] | select(.kind=="view") | .definition | startswith("CREATE VIEW")] | all' <<<"$catalog" >/dev/null ||
  fail "views lack their definition"
job_json=$(hub_job_json "$job")
[ "$(jq .summary.tables <<<"$job_json")" = "$want_tables" ] || fail "job summary: $job_json"

# Logs are JSON with correlation ids, and never contain the secret.
grep -q "\"job_id\":\"$job\"" "$work/agent.log" || fail "agent log has no record with job_id $job"
jq -e . "$work/agent.log" >/dev/null || fail "agent log is not JSON lines"
# The network log: every connection to the hub went through the egress policy,
# to the checked address, over TLS, allowed by the rule the config implies.
netlog=$(jq -c 'select(.msg == "egress connection")' "$work/agent.log")
[ -n "$netlog" ] || fail "agent log has no egress connection records"
# (-s and any/all: jq -e alone takes its status from the last record only.)
jq -s -e 'any(.[]; .decision == "allowed" and .rule == "hub.url" and .address == "127.0.0.1"
               and (.tls_version | startswith("TLSv1.")) and .bytes_down > 0)' <<<"$netlog" >/dev/null ||
  fail "no complete egress record for the hub: $(head -c 600 <<<"$netlog")"
# Connections made for the job (chunks, completion) carry its id.
jq -s -e --arg job "$job" 'any(.[]; .job_id == $job and .bytes_up > 0)' <<<"$netlog" >/dev/null ||
  fail "no network log record carries job_id $job"
if jq -s -e 'any(.[]; .decision != "allowed")' <<<"$netlog" >/dev/null; then
  fail "the agent was denied a connection: $netlog"
fi
if grep -qF -- "$secret" "$work/agent.log" "$work/hub.log" "$work/agent.log.out" "$work/hub.log.out"; then
  fail "client secret appears in a log"
fi

# The hub never learns where the source is, and keeps no plaintext client secret.
if grep -qaF -- "$work/source.db" "$work/hub/hub.db" "$work/hub/hub.db-wal" 2>/dev/null; then
  fail "the hub's database contains the source path"
fi
if grep -qaF -- "$secret" "$work/hub/hub.db" "$work/hub/hub.db-wal" 2>/dev/null; then
  fail "the hub's database contains the plaintext client secret"
fi

# Metrics: job counter and lease latency, valid Prometheus text.
metrics=$(curl -fsS "$HEALTH_URL/metrics")
grep -qE '^secure_agent_jobs_total\{outcome="succeeded"\} 1$' <<<"$metrics" || fail "jobs_total missing: $metrics"
grep -q '^secure_agent_lease_latency_seconds_count' <<<"$metrics" || fail "lease latency histogram missing"
promtool check metrics <<<"$metrics" || fail "promtool rejects /metrics"
grep -qE '^secure_agent_egress_connections_total\{decision="allowed"\} [1-9]' <<<"$metrics" ||
  fail "egress connections not counted in /metrics"
# The health prober's first round ran at startup: token endpoint and hub ping.
for target in token hub; do
  grep -qE "^secure_agent_probe_success\{target=\"$target\"\} 1$" <<<"$metrics" ||
    fail "probe of $target not successful in /metrics: $(grep probe <<<"$metrics")"
done
curl -fsS "$HEALTH_URL/healthz" >/dev/null || fail "/healthz"

stop_process "$AGENT_PID" || fail "agent exited non-zero on SIGTERM"
stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"

# The audit log verifies offline with only the agent's public key, tells the
# job's story in order, and holds neither the secret nor the source path.
"$AGENT_BIN" audit verify --dir "$work/state/audit" --public-key "$work/state/agent.pub.pem" ||
  fail "audit log does not verify"
types=$("$AGENT_BIN" audit show --dir "$work/state/audit" --job "$job" | awk '{print $3}' | tr '\n' ' ')
for t in job.received job.verified job.started delivery.chunk job.finished delivery.accepted; do
  grep -q "$t" <<<"$types" || fail "audit log of job $job lacks $t: $types"
done
# The job's chain of custody: the signed job (re-verified with the hub's key),
# its verification, the chunks and the hub's acceptance, each link checked.
custody=$("$AGENT_BIN" audit custody --dir "$work/state/audit" --public-key "$work/state/agent.pub.pem" \
  --job "$job" --job-key "$HUB_DATA/job-signing.pub.pem") || fail "custody of $job does not check: $custody"
grep -q '^audit custody: complete; every link checked' <<<"$custody" || fail "custody not complete: $custody"
grep -q 'signature verified with the hub key' <<<"$custody" || fail "custody did not re-verify the job: $custody"
if grep -q 'BROKEN' <<<"$custody"; then fail "custody has a broken link: $custody"; fi
# The key from the store signed the log; no key was written to the state dir.
[ ! -e "$work/state/agent.key" ] || fail "the agent wrote a key to its state dir despite agent.key"
cmp -s <(openssl pkey -in "$work/secrets/agent-key" -pubout) "$work/state/agent.pub.pem" ||
  fail "agent.pub.pem is not the public half of the key from the secret store"
grep -q '"purpose":"agent signing key"' "$work"/state/audit/segment-*.jsonl ||
  fail "reading the agent key from the secret store was not audited"
if grep -qF -- "$(sed -n 2p "$work/secrets/agent-key")" "$work"/state/audit/* "$work/agent.log"; then
  fail "the agent key's PEM appears in the audit log or the agent log"
fi
# The export holds every record exactly as the log does (the agent drains it
# at shutdown).
cat "$work"/state/audit/segment-*.jsonl >"$work/audit-all.jsonl"
cmp -s "$work/audit-all.jsonl" "$work/audit-export.jsonl" ||
  fail "the JSON-lines export differs from the audit log: $(diff "$work/audit-all.jsonl" "$work/audit-export.jsonl" | head -5)"
grep -q 'agent.started' <(cat "$work"/state/audit/segment-*.jsonl) || fail "no agent.started record"
grep -q 'agent.stopped' <(cat "$work"/state/audit/segment-*.jsonl) || fail "no agent.stopped record"
if grep -qF -- "$secret" "$work"/state/audit/*; then fail "the audit log contains the client secret"; fi
if grep -qF -- "$work/source.db" "$work"/state/audit/segment-*; then fail "the audit log contains the source path"; fi
echo "PASS e2e"
