#!/usr/bin/env bash
# Command-line behaviour a user meets first: version, --help, and
# check-config naming the bad key with exit code 2.
# Usage: cli_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2
work=$(mktemp -d -t sa-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$AGENT_BIN" version | grep -qE '[0-9]+\.[0-9]+\.[0-9]+' || fail "version"
"$AGENT_BIN" --help >/dev/null || fail "agent --help"
"$HUB_BIN" --help >/dev/null || fail "hub --help"

openssl genpkey -algorithm ed25519 -out "$work/k" 2>/dev/null
openssl pkey -in "$work/k" -pubout -out "$work/k.pub"
mkdir -p "$work/secrets"
write() {
  cat >"$work/agent.yaml" <<YAML
agent:
  state_dir: $work/state
hub:
  url: https://127.0.0.1:1
  job_signing_public_key: $work/k.pub
  client_id: cid_x
  client_secret: $1
secret_stores:
  files:
    type: file
    path: $work/secrets
sources:
  - name: s1
    connector: ${2:-sqlite}
    path: $work/s1.db
YAML
}
expect_error() {
  local want=$1 rc=0
  "$AGENT_BIN" check-config --config "$work/agent.yaml" 2>"$work/err" >/dev/null || rc=$?
  [ "$rc" = 2 ] || fail "check-config exit $rc, want 2 ($(cat "$work/err"))"
  grep -qF -- "$want" "$work/err" || fail "error does not name '$want': $(cat "$work/err")"
}

write '{secret: "files/hub-client-secret"}'
"$AGENT_BIN" check-config --config "$work/agent.yaml" >/dev/null || fail "good config refused"
write '"hunter2-literal"'
expect_error "hub.client_secret"
grep -q hunter2 "$work/err" && fail "error message repeats the literal secret"
write '{secret: "vault/x"}'
expect_error "hub.client_secret"
write '{secret: "files/hub-client-secret"}' oracle
expect_error "sources[0].connector"
echo "PASS cli"
