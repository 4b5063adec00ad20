#!/usr/bin/env bash
# The agent's OAuth client (auth::TokenClient over a real egress::HttpClient)
# against a real, external OAuth 2.0 server: oidc-provider (oidc/server.mjs)
# over HTTPS on 127.0.0.1 with a CA made here. The gtest binary
# agent_auth_external_tests gets tokens with client_secret_basic,
# client_secret_post and private_key_jwt (EC P-256, RSA, Ed25519 keys),
# checks the JWT access tokens, wrong credentials and secret rotation.
# Usage: oauth_external_test.sh AGENT_AUTH_EXTERNAL_TESTS [SOURCE_DIR]
# Exits 77 (skipped) when node or oidc/node_modules (npm ci --prefix
# tests/integration/oidc) is missing.
set -euo pipefail
TEST_BIN=$1
SRC=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
OIDC_DIR=$SRC/tests/integration/oidc

if ! command -v node >/dev/null 2>&1 || [ ! -d "$OIDC_DIR/node_modules/oidc-provider" ]; then
  echo "SKIP: needs node and $OIDC_DIR/node_modules (npm ci --prefix tests/integration/oidc)" >&2
  exit 77
fi
[ -x "$TEST_BIN" ] || { echo "FAIL: no test binary at $TEST_BIN" >&2; exit 1; }

source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-oauth
unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy ALL_PROXY all_proxy NO_PROXY no_proxy

# A CA of this test and a server certificate for 127.0.0.1.
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=oauth-test-ca \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null

# Client secrets (base64: '+', '/' and '=' exercise the form encoding) and
# the private_key_jwt client's keys; only their public halves go to the server.
secrets=$work/secrets
mkdir -p "$secrets/keys" "$work/public"
(
  umask 077
  for name in basic post rotating; do
    openssl rand -base64 33 | tr -d '\n' >"$secrets/$name.secret"
  done
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$secrets/keys/ec.pem" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$secrets/keys/rsa.pem" 2>/dev/null
  openssl genpkey -algorithm ed25519 -out "$secrets/keys/ed25519.pem" 2>/dev/null
)
for kid in ec rsa ed25519; do
  openssl pkey -in "$secrets/keys/$kid.pem" -pubout -out "$work/public/$kid.pem"
done

resource=urn:secure-agent:test-api
jq -n --arg work "$work" --arg secrets "$secrets" --arg resource "$resource" '{
  cert: "\($work)/pki/server.pem", key: "\($work)/pki/server.key",
  ready_file: "\($work)/oidc.ready", resource: $resource,
  clients: [
    {client_id: "sa-basic", token_endpoint_auth_method: "client_secret_basic",
     client_secret_file: "\($secrets)/basic.secret"},
    {client_id: "sa-post", token_endpoint_auth_method: "client_secret_post",
     client_secret_file: "\($secrets)/post.secret"},
    {client_id: "sa-rotating", token_endpoint_auth_method: "client_secret_basic",
     client_secret_file: "\($secrets)/rotating.secret"},
    {client_id: "sa-jwt", token_endpoint_auth_method: "private_key_jwt",
     public_keys: [{kid: "ec", file: "\($work)/public/ec.pem"},
                   {kid: "rsa", file: "\($work)/public/rsa.pem"},
                   {kid: "ed25519", file: "\($work)/public/ed25519.pem"}]}
  ]}' >"$work/oidc.json"

node "$OIDC_DIR/server.mjs" "$work/oidc.json" >"$work/oidc.log" 2>&1 &
OIDC_PID=$!
HARNESS_PIDS+=("$OIDC_PID")
wait_for_file "$work/oidc.ready" 30 "$OIDC_PID" || { cat "$work/oidc.log" >&2; fail "oidc-provider did not start"; }
issuer=$(cat "$work/oidc.ready")

rc=0
SA_OIDC_TOKEN_URL="$issuer/token" SA_OIDC_ISSUER="$issuer" SA_OIDC_CA_FILE="$pki/ca.pem" \
  SA_OIDC_RESOURCE="$resource" \
  SA_OIDC_BASIC_CLIENT_ID=sa-basic SA_OIDC_BASIC_SECRET_FILE="$secrets/basic.secret" \
  SA_OIDC_POST_CLIENT_ID=sa-post SA_OIDC_POST_SECRET_FILE="$secrets/post.secret" \
  SA_OIDC_JWT_CLIENT_ID=sa-jwt SA_OIDC_JWT_KEY_DIR="$secrets/keys" \
  SA_OIDC_ROTATING_CLIENT_ID=sa-rotating SA_OIDC_ROTATING_SECRET_FILE="$secrets/rotating.secret" \
  "$TEST_BIN" >"$work/gtest.out" 2>&1 || rc=$?
cat "$work/gtest.out"
if [ "$rc" -ne 0 ]; then
  echo "--- oidc-provider log ---" >&2
  cat "$work/oidc.log" >&2
  fail "agent_auth_external_tests failed (exit $rc)"
fi
# The binary skips itself without the environment: a skip here is a failure.
if grep -q '^\[  SKIPPED \]' "$work/gtest.out"; then
  fail "agent_auth_external_tests skipped tests although the server was running"
fi
grep -q '^\[  PASSED  \]' "$work/gtest.out" || fail "no gtest verdict"
echo "PASS: oauth_external"
