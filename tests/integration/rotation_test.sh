#!/usr/bin/env bash
# shellcheck disable=SC2016  # wait_until conditions are shell text, evaluated on each poll
# Client secret rotation and app revocation without restarting the agent
# (issue #5), with agent-hub and secure-agent as real processes over TLS on
# loopback. The client secret lives in the agent's file secret store and is
# replaced there atomically (temp file + rename).
#   1. a job runs with the original secret;
#   2. `app rotate --overlap 4`, new secret written at once: the agent moves to
#      it within the overlap, never sees a refusal, and the next job completes;
#   3. `app rotate --overlap 0` with the secret store updated late: the agent's
#      token request is refused (401 invalid_client), it re-reads the secret on
#      its next attempt, gets a token, and the next job completes;
#   4. `app revoke`: the agent's live token is refused at once (401
#      invalid_token), it cannot get a new one (invalid_client), /readyz turns
#      503; the agent keeps running and retrying with backoff.
# Throughout: the same agent PID, and no secret in any log, audit or state file.
# The hub issues 10-second access tokens so that the agent goes back to the
# token endpoint (re-reading its secret) every 5 s or so, not every 15 min.
# Usage: rotation_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-rotation

APP=rotation-app
SECRET_FILE=$work/secrets/hub-client-secret
# New secrets wait here (0700 directory, 0600 files) until the test puts them
# into the agent's store.
mkdir -m 700 "$work/staging"

hub_start_args "$work/hub" "$work/hub.log" --access-token-lifetime 10
hub_app_create "$APP" "$SECRET_FILE"
secrets=("$(cat "$SECRET_FILE")")

make_sample_db "$work/source.db" 5
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
# Short long polls: the control loop comes back to the hub every 2 s. (The
# health prober keeps its default 60 s interval: /readyz below reflects the
# control loop.)
sed -i 's/^  poll_wait_seconds: .*/  poll_wait_seconds: 2/' "$work/agent.yaml"
grep -q 'poll_wait_seconds: 2$' "$work/agent.yaml" || fail "could not set poll_wait_seconds"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
pid=$AGENT_PID

now_ms() { date +%s%3N; }
readyz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$HEALTH_URL/readyz" || true; }
# count TYPE: audit records of TYPE so far.
count() { agent_audit_types "$work/state" | grep -cx "$1" || true; }
# tokens_issued_after LINE: hub log records after line LINE that issued a token.
tokens_issued_after() {
  tail -n +"$(($1 + 1))" "$work/hub.log" |
    jq -c 'select(.event == "request" and .path == "/oauth2/token" and .status == 200)'
}

# ---- 1. A job with the original secret.
hub_job_succeeds "$APP" inventory "original secret"
agent_still_running "$pid" "original secret"

# ---- 2. Rotation with an overlap; the store is updated at once.
refused_before=$(count token.refused)
hub_app_rotate "$APP" 4 "$SECRET_FILE"
secrets+=("$(cat "$SECRET_FILE")")
[ -n "$PREVIOUS_VALID_UNTIL_MS" ] || fail "rotate --overlap 4 reports no overlap"
"$HUB_BIN" app show "$APP" --data "$HUB_DATA" --json | jq -e --arg user "$(id -un)" \
  '.state == "active" and (.rotated_by | startswith($user)) and .history[-1].event == "rotated"' \
  >/dev/null || fail "app show does not record the rotation and who did it"
# Wait out the overlap: from here on only the new secret works.
while [ "$(now_ms)" -le "$PREVIOUS_VALID_UNTIL_MS" ]; do sleep 0.2; done
log_mark=$(wc -l <"$work/hub.log")
# The agent gets a token after the old secret expired, so it must be using the new one.
wait_until 20 '[ -n "$(tokens_issued_after "$log_mark")" ]' ||
  fail "the agent got no token after the overlap ended"
hub_job_succeeds "$APP" inventory "after an overlapping rotation"
agent_still_running "$pid" "after an overlapping rotation"
[ "$(count token.refused)" = "$refused_before" ] ||
  fail "the agent was refused a token although the secret was replaced within the overlap"
# The old secret itself is now refused by the hub; the new one works, also
# with client_secret_post, and tokens live as long as `serve` was told.
token_post() {
  curl -s -w '\n%{http_code}' --cacert "$HUB_DATA/ca.pem" -d grant_type=client_credentials \
    --data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$1" "$HUB_URL/oauth2/token"
}
[ "$(token_post "${secrets[0]}" | tail -n 1)" = 401 ] ||
  fail "the replaced secret still gets a token after the overlap"
answer=$(token_post "${secrets[1]}")
[ "$(tail -n 1 <<<"$answer")" = 200 ] || fail "client_secret_post with the new secret: $answer"
[ "$(head -n 1 <<<"$answer" | jq .expires_in)" = 10 ] || fail "expires_in is not 10"

# ---- 3. Rotation without overlap; the store is updated only after a refusal.
refused_before=$(count token.refused)
hub_app_rotate "$APP" 0 "$work/staging/next-secret"
secrets+=("$(cat "$work/staging/next-secret")")
# The agent's next token request (old secret) is refused.
wait_until 30 '[ "$(count token.refused)" -gt "$refused_before" ]' ||
  fail "the agent was not refused a token with the replaced secret"
mark=$(agent_audit_types "$work/state" | wc -l)
grep -q '"status":401' <(tail -n 20 "$work/hub.log") || fail "the hub logged no 401 for the old secret"
secret_file_replace "$SECRET_FILE" <"$work/staging/next-secret"
rm -f "$work/staging/next-secret"
# It re-reads the secret on its own (no restart, no signal) and gets a token.
after_refusal() { agent_audit_types "$work/state" | tail -n +"$((mark + 1))"; }
wait_until 45 'after_refusal | grep -cx token.fetched >/dev/null' ||
  fail "the agent did not get a token after the secret store was updated"
after_refusal | awk '/^secret.accessed$/ { read = 1 } /^token.fetched$/ && read { ok = 1 } END { exit !ok }' ||
  fail "no secret read before the token after the refusal: $(after_refusal | tr '\n' ' ')"
hub_job_succeeds "$APP" inventory "after a rotation picked up late"
agent_still_running "$pid" "after a rotation picked up late"
wait_until 20 '[ "$(readyz)" = 200 ]' || fail "/readyz did not recover after the new secret worked"

# ---- 4. Revocation.
log_mark=$(wc -l <"$work/hub.log")
hub_app_revoke "$APP"
"$HUB_BIN" app list --data "$HUB_DATA" --json | jq -e --arg app "$APP" \
  '.[] | select(.app == $app) | .state == "revoked"' >/dev/null || fail "app list does not show the revocation"
# The live token is refused on the agent's next call (the waiting long poll
# ends at once), and no new token is issued.
wait_until 20 '[ "$(readyz)" = 503 ]' || fail "/readyz still answers $(readyz) after revocation"
revoked_requests() {
  tail -n +"$((log_mark + 1))" "$work/hub.log" | jq -c 'select(.event == "request")'
}
revoked_requests | jq -s -e 'any(.[]; .status == 401 and .path != "/oauth2/token" and
    (.detail | test("invalid_token.*revoked")))' >/dev/null ||
  fail "no API call was refused for revocation: $(revoked_requests | tail -n 5)"
wait_until 20 'revoked_requests | grep -c "\"invalid_client" >/dev/null' ||
  fail "the agent did not try (and fail) to get a new token after revocation"
if revoked_requests | jq -e 'select(.status == 200 and .path == "/oauth2/token")' >/dev/null; then
  fail "the hub issued a token to a revoked app"
fi
readiness=$(curl -s --max-time 5 "$HEALTH_URL/readyz" || true)
grep -q 'hub rejected client credentials' <<<"$readiness" ||
  fail "/readyz does not say why: $readiness"
grep -q '"level":"error"' <(grep 'cannot obtain an access token\|lease request failed' "$work/agent.log") ||
  fail "the agent did not log the authentication failure as an error"
# What the agent does on a persistent auth failure: it stays up, not ready,
# and keeps retrying with backoff.
sleep 3
agent_still_running "$pid" "after revocation"
[ "$(readyz)" = 503 ] || fail "/readyz recovered although the app is revoked"
if "$HUB_BIN" job create --data "$HUB_DATA" --app "$APP" --source inventory \
  --operation extract_metadata >/dev/null 2>&1; then
  fail "a job was created for a revoked app"
fi

stop_process "$AGENT_PID" || fail "agent exited non-zero on SIGTERM"
stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"

# ---- No client secret anywhere but the agent's secret store.
for s in "${secrets[@]}"; do
  [ ${#s} -ge 40 ] || fail "a secret was not captured"
  if grep -rqaF -- "$s" "$work/hub" "$work/state" "$work"/*.log "$work"/*.log.out; then
    fail "a client secret appears in a log, audit or state file: $(grep -rlaF -- "$s" "$work/hub" \
      "$work/state" "$work"/*.log "$work"/*.log.out | tr '\n' ' ')"
  fi
done
"$AGENT_BIN" audit verify --dir "$work/state/audit" --public-key "$work/state/agent.pub.pem" ||
  fail "audit log does not verify"
echo "PASS rotation"
