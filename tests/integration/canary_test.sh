#!/usr/bin/env bash
# Canary test (issue #5): one full job with canary secret values, then proof
# that no canary is found anywhere the agent, the hub, the proxy or the secret
# store sidecar wrote, nor in a core image of the running agent.
#
# Canaries:
#   client-secret  the hub client secret (random, from `app create`), served by a
#                  REMOTE store: fake_dapr.mjs (Dapr's secrets API, plain http on
#                  loopback); also searched base64 and form-url-encoded, and as the
#                  Basic credentials the agent sends
#   dapr-token     the Dapr API token (file store), sent as dapr-api-token
#   agent-key      the agent signing key's PEM body lines (file store)
#   proxy-password squid's basic auth password (file store, a JSON bundle); also
#                  as the Proxy-Authorization Basic credentials
# plus the last 24 characters of each value and credential (a freed heap chunk
# keeps all but its first 16 bytes).
# Searched with grep -rFa: agent logs (with the network log), state dir (audit
# segments, checkpoints, spool), the audit JSON-lines export, the hub's data
# dir and logs, squid's logs, the fake Dapr's log, and a gcore image of the
# running agent (root with ptrace reads a non-dumpable process: the attacker
# model). A hit fails the test, naming the canary kind and the file, never
# the value.
# Usage: canary_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
# Exits 77 (skipped) when node is missing.
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: canary test needs node (the fake Dapr sidecar; scripts/setup installs it)" >&2
  exit 77
fi
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-canary
command -v squid >/dev/null || fail "squid is not installed (apt: squid apache2-utils)"
# The config's proxy must be the only one; plain http never uses a proxy.
unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy NO_PROXY no_proxy

# random_canary PREFIX: a fresh random value (base64url, 32 bytes of entropy).
random_canary() { printf '%s%s' "$1" "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"; }

hub_start "$work/hub" "$work/hub.log"

# --- Canary values. They live only in the stores' own files (excluded from
# the search) and in this shell's memory; never printed.
dapr_dir=$work/dapr-secrets # the fake Dapr's backing store
mkdir -p "$dapr_dir"
chmod 700 "$dapr_dir"
hub_app_create canary-app "$dapr_dir/hub-client-secret"
client_secret=$(cat "$dapr_dir/hub-client-secret")

(umask 077 && random_canary dapr-token- >"$work/secrets/dapr-token")
dapr_token=$(cat "$work/secrets/dapr-token")

proxy_password=$(random_canary proxy-pw-)
(umask 077 && jq -nc --arg p "$proxy_password" '{username: "agent", password: $p}' >"$work/secrets/proxy")
# squid_start builds its htpasswd file (a hash) from a plain copy.
(umask 077 && printf '%s' "$proxy_password" >"$work/secrets/proxy-password-plain")

openssl genpkey -algorithm ed25519 -out "$work/secrets/agent-key" 2>/dev/null
chmod 600 "$work/secrets/agent-key"

# uri VALUE: application/x-www-form-urlencoded / percent-encoded form.
uri() { jq -rn --arg v "$1" '$v | @uri'; }

declare -A canary=()
canary[client-secret]=$client_secret
canary[client-secret-form-urlencoded]=$(uri "$client_secret")
canary[client-secret-base64]=$(printf '%s' "$client_secret" | base64 -w0 | tr -d '=')
canary[client-secret-basic-credentials]=$(printf '%s:%s' "$(uri "$CLIENT_ID")" "$(uri "$client_secret")" | base64 -w0)
canary[dapr-token]=$dapr_token
canary[proxy-password]=$proxy_password
# What libcurl sends squid: Proxy-Authorization: Basic base64(user:password).
canary[proxy-password-basic-credentials]=$(printf 'agent:%s' "$proxy_password" | base64 -w0)
i=0
while IFS= read -r line; do
  i=$((i + 1))
  canary[agent-key-pem-line-$i]=$line
done < <(grep -v '^-----' "$work/secrets/agent-key")
((i > 0)) || fail "the agent key PEM has no body lines"
# A freed heap chunk keeps its bytes except the first 16, which malloc
# overwrites with free-list pointers: also look for the last 24 characters
# (144 bits of a random value, still no chance match) of each value.
for kind in client-secret client-secret-basic-credentials dapr-token proxy-password \
  proxy-password-basic-credentials; do
  canary[$kind-tail]=${canary[$kind]: -24}
done
for kind in "${!canary[@]}"; do
  # A short canary could match by chance and hide nothing; they are all long.
  ((${#canary[$kind]} >= 24)) || fail "canary $kind is too short (${#canary[$kind]} chars)"
done

# --- The fake Dapr sidecar (plain http, loopback, OS-chosen port).
node "$SRC/tests/integration/fake_dapr.mjs" "$work/dapr.port" kv "$work/secrets/dapr-token" "$dapr_dir" \
  >"$work/dapr.log" 2>&1 &
DAPR_PID=$!
HARNESS_PIDS+=("$DAPR_PID")
wait_for_file "$work/dapr.port" 20 "$DAPR_PID" || { cat "$work/dapr.log" >&2; fail "fake Dapr did not start"; }
DAPR_PORT=$(cat "$work/dapr.port")
# The fake enforces the token: without it, 401.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DAPR_PORT/v1.0/secrets/kv/hub-client-secret")
[ "$code" = 401 ] || fail "fake Dapr answered $code without a token, want 401"

# --- squid with basic auth.
squid_start "$work/squid" agent "$work/secrets/proxy-password-plain"

# --- The agent: client secret from Dapr, everything else from the file store.
make_sample_db "$work/source.db" 10
cat >"$work/agent.yaml" <<YAML
agent:
  id: canary-agent
  state_dir: $work/state
  key: {secret: "files/agent-key"}
hub:
  url: $HUB_URL
  ca_file: $HUB_DATA/ca.pem
  job_signing_public_key: $HUB_DATA/job-signing.pub.pem
  client_id: $CLIENT_ID
  client_secret: {secret: "dapr/hub-client-secret"}
  client_auth: client_secret_basic
  poll_wait_seconds: 25
secret_stores:
  files:
    type: file
    path: $work/secrets
  dapr:
    type: dapr
    address: http://127.0.0.1:$DAPR_PORT
    dapr_store: kv
    api_token: {secret: "files/dapr-token"}
egress:
  proxy:
    url: http://127.0.0.1:$SQUID_PORT
    username: agent
    password: {secret: "files/proxy#password"}
sources:
  - name: inventory
    connector: sqlite
    path: $work/source.db
health:
  listen: 127.0.0.1:0
log:
  level: debug
audit:
  siem:
    - {name: archive, type: json_lines, path: $work/audit-export.jsonl}
YAML
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

job=$(hub_job_create canary-app inventory)
status=$(hub_job_wait "$job" 40) || true
[ "$status" = succeeded ] || { tail -n 30 "$work/agent.log" >&2; fail "job status $status"; }

# --- Core image of the still running agent (after the job: every secret has
# been used at least once).
mkdir -p "$work/core"
core_taken=no
if command -v gcore >/dev/null 2>&1; then
  timeout 40 gcore -o "$work/core/agent" "$AGENT_PID" >"$work/gcore.log" 2>&1 ||
    { tail -n 20 "$work/gcore.log" >&2; fail "gcore could not dump the agent"; }
  core_file=$work/core/agent.$AGENT_PID
  [ -s "$core_file" ] || fail "gcore wrote no core file"
  core_taken=yes
else
  echo "SKIP (part): gdb/gcore is not installed, the core image is not searched;" \
    "lead: add gdb to scripts/setup" >&2
fi
kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died while its core was taken"
# The address map, to say where in the agent a hit in the core lies.
if [ "$core_taken" = yes ]; then
  cp "/proc/$AGENT_PID/maps" "$work/core/agent.maps"
  readelf -lW "$core_file" 2>/dev/null | awk '$1 == "LOAD"' >"$work/core/loads" || true
fi

stop_process "$AGENT_PID" || fail "agent exited non-zero on SIGTERM"
stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"

# --- The test sees what it looks for.
# Every secret was read through the audited path, from the intended store.
cat "$work"/state/audit/segment-*.jsonl >"$work/audit-all.jsonl"
# audit_read STORE PURPOSE: a successful secret.accessed record exists.
audit_read() {
  jq -s -e --arg s "$1" --arg p "$2" \
    'any(.[]; .type == "secret.accessed" and .fields.store == $s and .fields.purpose == $p)' \
    "$work/audit-all.jsonl" >/dev/null ||
    fail "no secret.accessed record for store $1, purpose \"$2\": $(jq -c 'select(.type == "secret.accessed") | .fields' "$work/audit-all.jsonl" | head -10)"
}
audit_read dapr "hub client secret"
audit_read files "credentials of secret store dapr"
audit_read files "egress proxy password"
audit_read files "agent signing key"
if jq -e 'select(.type == "secret.accessed" and .fields.outcome != "ok")' "$work/audit-all.jsonl" >/dev/null; then
  fail "a secret read did not succeed: $(jq -c 'select(.type == "secret.accessed" and .fields.outcome != "ok") | .fields' "$work/audit-all.jsonl")"
fi
"$AGENT_BIN" audit show --dir "$work/state/audit" --type secret.accessed >"$work/reads.txt" ||
  fail "audit show failed"
grep -q 'hub client secret' "$work/reads.txt" || fail "audit show lists no hub client secret read"

# The fake Dapr was asked with the right token, as documented, by the agent.
stop_process "$DAPR_PID" || true
grep -q "GET /v1.0/secrets/kv/hub-client-secret token ok -> 200" "$work/dapr.log" ||
  fail "the fake Dapr never served the client secret with a good token: $(head -c 800 "$work/dapr.log")"
# The one 401 is this script's own probe without a token.
bad=$(grep -c 'token bad' "$work/dapr.log" || true)
[ "$bad" = 1 ] || fail "the fake Dapr saw $bad requests with a bad token, want 1 (the probe)"
if grep -q 'violation' "$work/dapr.log"; then fail "the agent's Dapr requests: $(grep violation "$work/dapr.log")"; fi

# The hub connection went through squid (authenticated CONNECT); the Dapr
# sidecar on loopback http did not.
hub_host_port=${HUB_URL#https://}
hub_host_port=${hub_host_port%%/*}
stop_process "$SQUID_PID" || true # flushes the access log (tunnels are logged when closed)
grep -q "CONNECT $hub_host_port agent" "$work/squid/access.log" ||
  fail "squid logged no authenticated CONNECT to the hub: $(head -c 800 "$work/squid/access.log" 2>/dev/null)"
if grep -q ":$DAPR_PORT" "$work/squid/access.log"; then fail "the Dapr request went through the proxy"; fi
netlog=$(jq -c 'select(.msg == "egress connection")' "$work/agent.log")
jq -s -e --arg p "127.0.0.1:$SQUID_PORT" \
  'any(.[]; .rule == "hub.url" and .decision == "allowed" and .via_proxy == $p)' <<<"$netlog" >/dev/null ||
  fail "no network log record of a hub connection via the proxy: $(head -c 800 <<<"$netlog")"
dapr_lines=$(jq -c --argjson port "$DAPR_PORT" 'select(.port == $port)' <<<"$netlog")
[ -n "$dapr_lines" ] || fail "no network log record of the Dapr connection: $(head -c 800 <<<"$netlog")"
if jq -e 'select((.via_proxy // "") != "")' <<<"$dapr_lines" >/dev/null; then
  fail "the Dapr connection went through a proxy: $dapr_lines"
fi

# --- The search.
targets=("$work/agent.log" "$work/agent.log.out" "$work/state" "$work/audit-export.jsonl"
  "$work/audit-all.jsonl" "$work/reads.txt" "$work/hub" "$work/hub.log" "$work/hub.log.out"
  "$work/squid" "$work/dapr.log" "$work/agent.yaml" "$work/core")
for t in "${targets[@]}"; do
  [ -e "$t" ] || fail "search target $t does not exist"
done

# core_where OFFSET: the agent's address of a byte of the core file and the
# mapping (from /proc/PID/maps taken with the core) that holds it.
core_where() {
  local at=$1 off va fsz rest addr range start end perms name
  [ -s "$work/core/loads" ] || { echo "offset $at"; return; }
  addr=
  while read -r _ off va _ fsz rest; do
    if ((at >= off && at < off + fsz)); then
      addr=$((va + at - off))
      break
    fi
  done <"$work/core/loads"
  [ -n "$addr" ] || { echo "offset $at (outside every LOAD segment)"; return; }
  name="?"
  while read -r range perms rest; do
    start=$((16#${range%-*})) end=$((16#${range#*-}))
    if ((addr >= start && addr < end)); then
      name="$(awk '{print $4}' <<<"$rest")"
      [ -n "$name" ] || name="anonymous"
      name="$name $range $perms $(((end - start) / 1024)) KiB"
      break
    fi
  done <"$work/core/agent.maps"
  printf 'offset %d = address 0x%x in %s\n' "$at" "$addr" "$name"
}

# find_canaries TARGETS...: prints "KIND FILE" for every hit, never the value;
# for the core, one line per copy with where it lies in the agent's memory.
# One pass over every target for all canaries at once (the core is large).
declare -A kind_of=()
for kind in "${!canary[@]}"; do kind_of[${canary[$kind]}]=$kind; done
find_canaries() {
  local patterns=$work/canary-patterns file kind at match
  (umask 077 && printf '%s\n' "${canary[@]}" >"$patterns")
  while IFS= read -r file; do
    [ -n "$file" ] || continue
    if [ "$core_taken" = yes ] && [ "$file" = "${core_file:-}" ]; then
      # -o reports the longest match at each place: a tail inside a whole
      # copy is not reported twice.
      while IFS=: read -r at match; do
        echo "${kind_of[$match]:-?} $file: $(core_where "$at")"
      done < <(grep -obaF -f "$patterns" -- "$file" | head -60) | sort -k1,1 -s
    else
      for kind in $(printf '%s\n' "${!canary[@]}" | sort); do
        if grep -qaF -- "${canary[$kind]}" "$file"; then echo "$kind $file"; fi
      done
    fi
  done < <(grep -rlFa -f "$patterns" -- "$@" | grep -vxF "$patterns" || true)
  rm -f "$patterns"
}

# Positive control: the same search finds every canary kind in a file written
# on purpose, and the core is a readable image of the agent's memory.
mkdir -p "$work/control"
for kind in "${!canary[@]}"; do printf 'x%sx\n' "${canary[$kind]}"; done >"$work/control/planted"
control=$(find_canaries "$work/control")
for kind in "${!canary[@]}"; do
  grep -q "^$kind " <<<"$control" || fail "positive control: the search does not find canary $kind"
done
rm -rf "$work/control"
if [ "$core_taken" = yes ]; then
  grep -qaF -- "$CLIENT_ID" "$core_file" || fail "positive control: the core does not hold the client id"
  grep -qaF -- "127.0.0.1:$DAPR_PORT" "$core_file" ||
    fail "positive control: the core does not hold the Dapr address"
fi

hits=$(find_canaries "${targets[@]}")
if [ -n "$hits" ]; then
  echo "canaries found (kind, file):" >&2
  echo "$hits" >&2
  # CANARY_KEEP=DIR keeps the core and its address map for a closer look.
  if [ -n "${CANARY_KEEP:-}" ] && [ "$core_taken" = yes ]; then
    mkdir -p "$CANARY_KEEP" && chmod 700 "$CANARY_KEEP"
    cp "$core_file" "$work/core/agent.maps" "$CANARY_KEEP/" && echo "core kept in $CANARY_KEEP" >&2
  fi
  fail "$(cut -d' ' -f1 <<<"$hits" | sort -u | grep -c .) canary kind(s) found"
fi
echo "PASS canary: $((${#canary[@]})) canaries (client secret via Dapr, Dapr token, agent key, proxy" \
  "password) found nowhere (logs, state, audit export, hub data, squid, fake Dapr, core: $core_taken)"
