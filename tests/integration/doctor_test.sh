#!/usr/bin/env bash
# `secure-agent doctor` against the real agent-hub: a good config passes
# every check (exit 0, also as JSON) and changes nothing; a wrong client
# secret fails the token check (exit 1), says so, and never prints a secret.
# Usage: doctor_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-doctor
# The hub is on loopback: a proxy from the environment would only get in the way.
unset HTTPS_PROXY https_proxy NO_PROXY no_proxy

hub_start "$work/hub" "$work/hub.log"
hub_app_create app-a "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 2
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" crm "$work/source.db" \
  "$work/hub/job-signing.pub.pem"

rc=0
"$AGENT_BIN" doctor --config "$work/agent.yaml" >"$work/good.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/good.out" >&2; fail "doctor on a good config exited $rc"; }
for check in config dns tcp tls token hub-api source; do
  grep -q "^\[ ok \] $check " "$work/good.out" || { cat "$work/good.out" >&2; fail "no ok $check line"; }
done
! grep -qE '^\[(FAIL|skip)\]' "$work/good.out" || { cat "$work/good.out" >&2; fail "failed or skipped checks"; }
! grep -qFf "$work/secrets/hub-client-secret" "$work/good.out" || fail "doctor printed the client secret"
[ ! -e "$work/state" ] || fail "doctor created the state directory"

json=$("$AGENT_BIN" doctor --config "$work/agent.yaml" --json) || fail "doctor --json failed"
jq -e 'length >= 7 and all(.[]; .status == "ok")' <<<"$json" >/dev/null || fail "json: $json"

(umask 077 && printf 'definitely-not-the-secret' >"$work/secrets/hub-client-secret")
rc=0
"$AGENT_BIN" doctor --config "$work/agent.yaml" >"$work/bad.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/bad.out" >&2; fail "doctor with a wrong secret exited $rc, want 1"; }
grep -q '^\[FAIL\] token .*rejected client credentials' "$work/bad.out" ||
  { cat "$work/bad.out" >&2; fail "the token failure is not named"; }
grep -q 'fix: .*hub.client_id' "$work/bad.out" || fail "no fix for the wrong secret"
grep -q '^\[skip\] hub-api' "$work/bad.out" || fail "hub-api not skipped"
! grep -qF 'definitely-not-the-secret' "$work/bad.out" || fail "doctor printed the client secret"
echo "PASS doctor"
