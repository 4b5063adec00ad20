#!/usr/bin/env bash
# The real agent behind a real squid: with egress.proxy (basic auth, the
# password from the secret store) every connection goes through the proxy's
# CONNECT tunnel and a job completes; wrong proxy credentials keep the agent
# from ever reaching the hub and say why (HTTP 407); HTTPS_PROXY from the
# environment is the fallback and the config wins over it; NO_PROXY bypasses it.
# Usage: proxy_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-proxy
command -v squid >/dev/null || fail "squid is not installed (apt: squid apache2-utils)"

hub_start "$work/hub" "$work/hub.log"
hub_app_create proxy-app "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 5
printf '%s' "proxy-pass-$RANDOM$RANDOM" >"$work/secrets/proxy-password"
chmod 600 "$work/secrets/proxy-password"
squid_start "$work/squid" agent "$work/secrets/proxy-password"
proxy_yaml="egress:
  proxy:
    url: http://127.0.0.1:$SQUID_PORT
    username: agent
    password: {secret: \"files/proxy-password\"}"
hub_host_port=${HUB_URL#https://}
hub_host_port=${hub_host_port%%/*}

# egress_lines LOG: the agent's network log lines.
egress_lines() { grep '"msg":"egress connection"' "$1" || true; }

# 1. Config proxy with credentials from the secret store: a job completes,
# every connection went through the tunnel, squid saw the CONNECTs.
AGENT_EXTRA_YAML=$proxy_yaml
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
# The environment points elsewhere: the config must win.
HTTPS_PROXY=http://127.0.0.1:9 agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
job=$(hub_job_create proxy-app inventory)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || { tail -n 30 "$work/agent.log" >&2; fail "job through the proxy: $status"; }
stop_process "$AGENT_PID" || fail "agent did not stop cleanly"
lines=$(egress_lines "$work/agent.log")
[ -n "$lines" ] || fail "no network log lines"
direct=$(grep -v "\"via_proxy\":\"127.0.0.1:$SQUID_PORT\"" <<<"$lines" || true)
[ -z "$direct" ] || fail "connections that bypassed the proxy: $direct"
grep -q '"msg":"egress proxy".*"source":"egress.proxy"' "$work/agent.log" ||
  fail "startup log does not name the proxy and its source"
access=$(cat "$work/squid/access.log" 2>/dev/null || true)
for ((i = 0; i < 50; i++)); do
  grep -q "CONNECT $hub_host_port agent" <<<"$access" && break
  sleep 0.1
  access=$(cat "$work/squid/access.log" 2>/dev/null || true)
done
grep -q "CONNECT $hub_host_port agent" <<<"$access" || fail "squid logged no authenticated CONNECT to the hub: $access"
# The password reached neither the log nor the audit export of the agent.
password=$(cat "$work/secrets/proxy-password")
if grep -rqF "$password" "$work/agent.log" "$work/agent.log.out" "$work/state"; then
  fail "the proxy password leaked"
fi
"$AGENT_BIN" audit show --dir "$work/state/audit" --type secret.accessed >"$work/reads.txt" ||
  fail "audit show failed"
grep -q 'egress proxy password' "$work/reads.txt" || fail "the proxy password read was not audited"

# 2. Wrong proxy credentials: the agent never becomes ready, and says why.
printf '%s' "not-the-password" >"$work/secrets/wrong-password"
chmod 600 "$work/secrets/wrong-password"
AGENT_EXTRA_YAML=${proxy_yaml/proxy-password/wrong-password}
agent_write_config "$work/wrong.yaml" "$work/state-wrong" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
"$AGENT_BIN" run --config "$work/wrong.yaml" >"$work/wrong.out" 2>"$work/wrong.log" &
wrong_pid=$!
HARNESS_PIDS+=("$wrong_pid")
for ((i = 0; i < 300; i++)); do
  grep -q 'refused the credentials (HTTP 407)' "$work/wrong.log" && break
  kill -0 "$wrong_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "proxy 127.0.0.1:$SQUID_PORT refused the credentials (HTTP 407)" "$work/wrong.log" ||
  { tail -n 20 "$work/wrong.log" >&2; fail "wrong proxy credentials did not give the 407 error"; }
health=$(cat "$work/state-wrong/health-url")
code=$(curl -s -o /dev/null -w '%{http_code}' "$health/readyz" || true)
[ "$code" = 503 ] || fail "agent with wrong proxy credentials is ready (HTTP $code)"
stop_process "$wrong_pid" || true

# 3. HTTPS_PROXY from the environment (no egress.proxy) with NO_PROXY naming
# the hub: the connections go direct. Without NO_PROXY, the unauthenticated
# environment proxy gets squid's 407, which proves the variable was used.
# A second app: a long poll of the first agent that the hub may still hold
# after that agent stopped must not be handed this job.
hub_app_create proxy-env-app "$work/secrets/hub-client-secret"
AGENT_EXTRA_YAML=""
agent_write_config "$work/env.yaml" "$work/state-env" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
HTTPS_PROXY=http://127.0.0.1:$SQUID_PORT NO_PROXY=127.0.0.1 \
  agent_start "$work/env.yaml" "$work/state-env" "$work/env.log"
job=$(hub_job_create proxy-env-app inventory)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || { tail -n 30 "$work/env.log" >&2; fail "job with NO_PROXY: $status"; }
stop_process "$AGENT_PID" || fail "agent did not stop cleanly"
lines=$(egress_lines "$work/env.log")
[ -n "$lines" ] || fail "no network log lines (NO_PROXY run)"
if grep -q '"via_proxy"' <<<"$lines"; then fail "NO_PROXY did not bypass the proxy"; fi
grep -q '"source":"HTTPS_PROXY"' "$work/env.log" || fail "environment proxy not reported at startup"

HTTPS_PROXY=http://127.0.0.1:$SQUID_PORT "$AGENT_BIN" run --config "$work/env.yaml" \
  >"$work/env2.out" 2>"$work/env2.log" &
env_pid=$!
HARNESS_PIDS+=("$env_pid")
for ((i = 0; i < 300; i++)); do
  grep -q 'refused the credentials (HTTP 407)' "$work/env2.log" && break
  sleep 0.1
done
grep -q "proxy 127.0.0.1:$SQUID_PORT refused the credentials (HTTP 407)" "$work/env2.log" ||
  { tail -n 20 "$work/env2.log" >&2; fail "HTTPS_PROXY from the environment was not used"; }
stop_process "$env_pid" || true

echo "PASS proxy: config proxy with secret-store credentials, 407, HTTPS_PROXY fallback, NO_PROXY"
