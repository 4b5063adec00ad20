#!/usr/bin/env bash
# The agent's TLS floor against real `openssl s_server` peers: through the
# egress layer (`secure-agent doctor --url`, which connects exactly as the
# agent does), a TLS 1.2-only and a TLS 1.3-only server are reached; a server
# that offers only TLS 1.1 (at OpenSSL security level 0, so only our floor
# can refuse it) is refused; with egress.min_tls "1.3" the TLS 1.2-only server
# is refused too. The servers' CA comes from egress.ca_file, the global CA.
# Usage: tls_versions_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-tls
unset HTTPS_PROXY https_proxy NO_PROXY no_proxy

hub_start "$work/hub" "$work/hub.log"
hub_app_create tls-app "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 1

# A CA of this test and a server certificate for 127.0.0.1.
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tls-test-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null

# s_server_start NAME ARGS...: a `-www` server on an OS-chosen port; sets PORT_<NAME>.
s_server_start() {
  local name=$1 i port=""
  shift
  openssl s_server -accept 127.0.0.1:0 -cert "$pki/server.pem" -key "$pki/server.key" -www "$@" \
    >"$work/$name.out" 2>&1 &
  HARNESS_PIDS+=("$!")
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/$name.out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$work/$name.out" >&2; fail "openssl s_server ($name) did not start"; }
  printf -v "PORT_$name" '%s' "$port"
}
s_server_start tls12 -tls1_2
s_server_start tls13 -tls1_3
s_server_start tls11 -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'

# check_tls CONFIG MIN_TLS: doctor's JSON for the three servers.
check_tls() {
  AGENT_EXTRA_YAML="egress:
  min_tls: \"$2\"
  ca_file: $pki/ca.pem
  allow:
    - {host: 127.0.0.1, port: $PORT_tls12}
    - {host: 127.0.0.1, port: $PORT_tls13}
    - {host: 127.0.0.1, port: $PORT_tls11}"
  agent_write_config "$1" "$work/state" "$work/secrets" crm "$work/source.db" \
    "$work/hub/job-signing.pub.pem"
  "$AGENT_BIN" doctor --config "$1" --json --url "https://127.0.0.1:$PORT_tls12/" \
    --url "https://127.0.0.1:$PORT_tls13/" --url "https://127.0.0.1:$PORT_tls11/" || true
}
# tls_status JSON PORT: the status of the tls check of that server.
tls_status() {
  jq -r --arg port ":$2" '[.[] | select(.check == "tls" and (.target | contains($port)))][0].status' <<<"$1"
}
tls_detail() {
  jq -r --arg port ":$2" '[.[] | select(.check == "tls" and (.target | contains($port)))][0].detail' <<<"$1"
}

json=$(check_tls "$work/agent.yaml" 1.2)
jq -e 'type == "array"' <<<"$json" >/dev/null || fail "doctor did not print JSON: $json"
[ "$(tls_status "$json" "$PORT_tls12")" = ok ] || fail "TLS 1.2-only server refused: $json"
tls_detail "$json" "$PORT_tls12" | grep -q 'TLSv1.2' || fail "TLS 1.2 not reported: $(tls_detail "$json" "$PORT_tls12")"
[ "$(tls_status "$json" "$PORT_tls13")" = ok ] || fail "TLS 1.3-only server refused: $json"
tls_detail "$json" "$PORT_tls13" | grep -q 'TLSv1.3' || fail "TLS 1.3 not reported: $(tls_detail "$json" "$PORT_tls13")"
[ "$(tls_status "$json" "$PORT_tls11")" = fail ] || fail "TLS 1.1-only server was accepted: $json"
tls_detail "$json" "$PORT_tls11" | grep -q 'protocol version' ||
  fail "TLS 1.1 refused for another reason: $(tls_detail "$json" "$PORT_tls11")"
# The hub itself still passes: its own hub.ca_file wins over egress.ca_file.
[ "$(jq -r '[.[] | select(.check == "hub-api")][0].status' <<<"$json")" = ok ] ||
  fail "hub check failed with a global CA set: $json"

json=$(check_tls "$work/agent13.yaml" 1.3)
[ "$(tls_status "$json" "$PORT_tls12")" = fail ] || fail "min_tls 1.3 accepted a TLS 1.2-only server: $json"
tls_detail "$json" "$PORT_tls12" | grep -q 'protocol version' ||
  fail "TLS 1.2 refused for another reason: $(tls_detail "$json" "$PORT_tls12")"
[ "$(tls_status "$json" "$PORT_tls13")" = ok ] || fail "min_tls 1.3 refused a TLS 1.3 server: $json"

echo "PASS tls versions: 1.2 and 1.3 reached, 1.1 refused, min_tls 1.3 refuses 1.2"
