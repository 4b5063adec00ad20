#!/usr/bin/env bash
# shellcheck disable=SC2016  # wait_until conditions are shell text, evaluated on each poll
# private_key_jwt end to end (issue #5), agent-hub and secure-agent as real
# processes over TLS on loopback. The app is registered with a public key
# (no client secret exists); the agent signs a client assertion with the
# private key from its file secret store for every token request.
#   1. a job runs with an Ed25519 key;
#   2. `app set-key --overlap 0` to an EC P-256 key, the store updated only
#      after the agent's next token request was refused: the agent re-reads
#      the key, gets a token and the next job completes, without a restart;
#   3. a replayed assertion and one signed by the replaced key are refused
#      with the same 401 invalid_client.
# Throughout: no key material in any log, audit or state file.
# Usage: private_key_jwt_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-pkjwt

APP=key-app
KEY_FILE=$work/secrets/hub-key.pem
mkdir -m 700 "$work/staging"
(umask 077 && openssl genpkey -algorithm ed25519 -out "$KEY_FILE" 2>/dev/null)
openssl pkey -in "$KEY_FILE" -pubout -out "$work/first.pub" 2>/dev/null
cp -p "$KEY_FILE" "$work/staging/first.pem"  # kept to show the hub refuses it after set-key

hub_start_args "$work/hub" "$work/hub.log" --access-token-lifetime 10
created=$("$HUB_BIN" app create "$APP" --public-key "$work/first.pub" --data "$HUB_DATA" --json) ||
  fail "app create --public-key failed"
CLIENT_ID=$(jq -r .client_id <<<"$created")
jq -e '.auth_method == "private_key_jwt" and (has("client_secret") | not)' <<<"$created" >/dev/null ||
  fail "app create --public-key: $created"

make_sample_db "$work/source.db" 3
AGENT_CLIENT_AUTH=private_key_jwt agent_write_config "$work/agent.yaml" "$work/state" \
  "$work/secrets" inventory "$work/source.db" "$work/hub/job-signing.pub.pem"
sed -i 's|^  client_secret: .*|  private_key: {secret: "files/hub-key.pem"}|; s/^  poll_wait_seconds: .*/  poll_wait_seconds: 2/' \
  "$work/agent.yaml"
grep -q 'private_key: {secret' "$work/agent.yaml" || fail "could not configure hub.private_key"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"
pid=$AGENT_PID

count() { agent_audit_types "$work/state" | grep -cx "$1" || true; }

# ---- 1. A job with the Ed25519 key.
hub_job_succeeds "$APP" inventory "Ed25519 key"
agent_still_running "$pid" "Ed25519 key"
jq -e -s 'any(.[]; .event == "request" and .path == "/oauth2/token" and .status == 200
                   and (.detail | test("via private_key_jwt")))' "$work/hub.log" >/dev/null ||
  fail "the hub logged no token issued via private_key_jwt"

# ---- 2. Key rotation without overlap; the store is updated after a refusal.
(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
  -out "$work/staging/next.pem" 2>/dev/null)
openssl pkey -in "$work/staging/next.pem" -pubout -out "$work/next.pub" 2>/dev/null
refused_before=$(count token.refused)
"$HUB_BIN" app set-key "$APP" --public-key "$work/next.pub" --overlap 0 --data "$HUB_DATA" \
  --json >"$work/set-key.json" || fail "app set-key failed"
jq -e '.key.algorithm == "ES256"' "$work/set-key.json" >/dev/null ||
  fail "set-key: $(cat "$work/set-key.json")"
wait_until 30 '[ "$(count token.refused)" -gt "$refused_before" ]' ||
  fail "the agent was not refused a token with the replaced key"
fetched_before=$(count token.fetched)
secret_file_replace "$KEY_FILE" <"$work/staging/next.pem"
wait_until 45 '[ "$(count token.fetched)" -gt "$fetched_before" ]' ||
  fail "the agent got no token after the new key was stored"
hub_job_succeeds "$APP" inventory "after the key rotation"
agent_still_running "$pid" "after the key rotation"

# ---- 3. Refusals look alike: a replayed assertion, and one by the old key.
assertion() {  # KEY_PEM ALG: a client assertion for the hub, signed with openssl
  local key=$1 alg=$2 now header claims input sig
  now=$(date +%s)
  header=$(printf '{"alg":"%s","typ":"JWT"}' "$alg" | basenc --base64url | tr -d '=\n')
  claims=$(jq -cn --arg id "$CLIENT_ID" --arg aud "$HUB_URL/oauth2/token" --argjson now "$now" \
    --arg jti "$(openssl rand -hex 12)" \
    '{iss: $id, sub: $id, aud: $aud, iat: $now, exp: ($now + 60), jti: $jti}' |
    basenc --base64url | tr -d '=\n')
  input="$header.$claims"
  # Ed25519 signs in one shot: pkeyutl needs the input as a file.
  printf '%s' "$input" >"$work/signing-input"
  sig=$(openssl pkeyutl -sign -inkey "$key" -rawin -in "$work/signing-input" |
    basenc --base64url | tr -d '=\n')
  printf '%s.%s' "$input" "$sig"
}
token_with() {
  curl -s -w '\n%{http_code}' --cacert "$HUB_DATA/ca.pem" -d grant_type=client_credentials \
    --data-urlencode "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
    --data-urlencode "client_assertion=$1" "$HUB_URL/oauth2/token"
}
# A fresh Ed25519 pair registered as a second app proves the assertion
# format is right (200), then the same assertion again is a replay.
(umask 077 && openssl genpkey -algorithm ed25519 -out "$work/staging/third.pem" 2>/dev/null)
openssl pkey -in "$work/staging/third.pem" -pubout -out "$work/third.pub" 2>/dev/null
agent_client=$CLIENT_ID
CLIENT_ID=$("$HUB_BIN" app create probe-app --public-key "$work/third.pub" --data "$HUB_DATA" \
  --json | jq -r .client_id)
good=$(assertion "$work/staging/third.pem" EdDSA)
answer=$(token_with "$good")
[ "$(tail -n 1 <<<"$answer")" = 200 ] || fail "a well-formed assertion was refused: $answer"
replayed=$(token_with "$good")
[ "$(tail -n 1 <<<"$replayed")" = 401 ] || fail "a replayed assertion got a token"
[ "$(head -n 1 <<<"$replayed" | jq -r .error)" = invalid_client ] || fail "replay: $replayed"
# The agent's app no longer accepts its first (Ed25519) key.
CLIENT_ID=$agent_client
old=$(token_with "$(assertion "$work/staging/first.pem" EdDSA)")
if [ "$(tail -n 1 <<<"$old")" != 401 ] || [ "$(head -n 1 <<<"$old" | jq -r .error)" != invalid_client ]; then
  fail "an assertion signed by the replaced key: $old"
fi

# ---- No key material anywhere.
for pem in "$work/staging/first.pem" "$work/staging/next.pem" "$work/staging/third.pem"; do
  body=$(grep -v '^-----' "$pem" | tr -d '\n')
  if grep -rqaF -- "$body" "$work/hub" "$work/state" "$work"/*.log "$work"/*.log.out; then
    fail "private key material appears in a log, audit or state file"
  fi
done
agent_still_running "$pid" "end"
echo "PASS: private_key_jwt: tokens, key rotation without restart, replay refused"
