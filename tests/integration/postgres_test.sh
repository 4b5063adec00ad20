#!/usr/bin/env bash
# A PostgreSQL 15 source end to end: real hub, real agent, a throwaway
# PostgreSQL server on loopback with password authentication. The agent
# checks the connection against its egress policy, reads the database
# credentials just in time from its secret store, and runs each job in a
# sandboxed worker (TCP only to the server's port) that connects to the
# checked address. Checks: interactive operations, an extraction whose
# catalog matches the database, a wrong password, a port the policy does not
# allow, the network log, and that no credential leaks.
# Usage: postgres_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (PostgreSQL runs as postgres)"; exit 77; }
[ -x /usr/lib/postgresql/15/bin/initdb ] || { echo "SKIP: PostgreSQL 15 is not installed"; exit 77; }
harness_workdir sa-postgres

pg_start "$work/pg"
password=$(openssl rand -hex 16)
pg_sql postgres "CREATE ROLE catalog_reader LOGIN PASSWORD '$password'"
pg_sql postgres "CREATE DATABASE shop"
pg_sql shop "CREATE SCHEMA sales;
  CREATE TABLE sales.customers (id bigint PRIMARY KEY, name text NOT NULL);
  CREATE TABLE sales.orders (id bigint PRIMARY KEY,
    customer_id bigint REFERENCES sales.customers(id) ON DELETE CASCADE,
    total numeric(12,2) DEFAULT 0);
  CREATE INDEX orders_customer ON sales.orders (customer_id);
  CREATE VIEW sales.big_orders AS SELECT id, total FROM sales.orders WHERE total > 100;
  CREATE TABLE sales.secret_salaries (id bigint, amount numeric);
  INSERT INTO sales.customers VALUES (1, 'row-data-must-not-leave');
  GRANT USAGE ON SCHEMA sales TO catalog_reader;"

hub_start "$work/hub" "$work/hub.log"
hub_app_create pg-app "$work/secrets/hub-client-secret"
(umask 077 && printf '{"user":"catalog_reader","password":"%s"}' "$password" >"$work/secrets/shop-db")

make_sample_db "$work/unused.db" 1
# The real name and TLS with full verification: "localhost" resolves to a
# loopback address, which the egress policy allows only with an explicit cidr.
AGENT_EXTRA_SOURCES="  - name: shop
    connector: postgres
    host: localhost
    port: $PG_PORT
    database: shop
    sslmode: verify-full
    ca_file: $PG_DIR/server.crt
    user: {secret: \"files/shop-db#user\"}
    password: {secret: \"files/shop-db#password\"}
  - name: wrong-name
    connector: postgres
    host: 127.0.0.1
    port: $PG_PORT
    database: shop
    ca_file: $PG_DIR/server.crt
    user: {secret: \"files/shop-db#user\"}
    password: {secret: \"files/shop-db#password\"}
  - name: wrong-password
    connector: postgres
    host: 127.0.0.1
    port: $PG_PORT
    database: shop
    sslmode: disable
    user: {secret: \"files/shop-db#user\"}
    password: {secret: \"files/hub-client-secret\"}"
cat >"$work/policy.yaml" <<'YAML'
version: 1
rules:
  - name: shop-catalog
    sources: ["*"]
    operations: [extract_metadata, test_connection, preflight, list_schemas]
    tables: {exclude: ["secret_.*"]}
YAML
AGENT_EXTRA_YAML="jobs:
  policy_file: $work/policy.yaml
egress:
  allow:
    - {host: localhost, port: $PG_PORT, cidr: [127.0.0.1/32, \"::1/128\"]}"
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" local "$work/unused.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

wait_json() { # wait_json SOURCE OPERATION: runs the job with --wait, prints its JSON
  "$HUB_BIN" job create --data "$HUB_DATA" --app pg-app --source "$1" --operation "$2" \
    --wait --wait-timeout 60 --json
}

# sslmode verify-full: this succeeds only over TLS with the certificate
# checked against ca_file and the name "localhost".
out=$(wait_json shop test_connection) || fail "test_connection: $out"
jq -e '.result.connected == true and (.result.server_version | startswith("15"))' <<<"$out" \
  >/dev/null || fail "test_connection result: $out"
out=$(wait_json shop list_schemas) || fail "list_schemas: $out"
jq -e 'any(.result.schemas[]; .schema == "sales" and .database == "shop")' <<<"$out" \
  >/dev/null || fail "list_schemas result: $out"
out=$(wait_json shop preflight) || fail "preflight: $out"
jq -e '.result.checks | length > 0 and all(.[]; .ok)' <<<"$out" >/dev/null ||
  fail "preflight result: $out"

# The catalog: every table and view of the sales schema, minus what the policy excludes.
job=$(hub_job_create pg-app shop)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || fail "extraction: $status: $(hub_job_json "$job")"
tables=$("$HUB_BIN" catalog tables --data "$HUB_DATA" --source shop --json)
names=$(jq -r '[.[].name] | sort | join(",")' <<<"$tables")
[ "$names" = "big_orders,customers,orders" ] || fail "catalog tables: $names ($tables)"
columns=$("$HUB_BIN" catalog columns --data "$HUB_DATA" --source shop --table orders --json)
jq -e 'any(.[]; .name == "total" and (.data_type | startswith("numeric")))' <<<"$columns" \
  >/dev/null || fail "orders columns: $columns"

# Incremental: after a table is added, a column added and a view dropped,
# an incremental job delivers exactly those changes (the new table and the
# altered one) and the view's removal; the catalog then equals the database.
pg_sql shop "CREATE TABLE sales.returns (id bigint PRIMARY KEY,
    order_id bigint REFERENCES sales.orders(id));
  ALTER TABLE sales.customers ADD COLUMN email text;
  DROP VIEW sales.big_orders;"
incremental_job() {
  "$HUB_BIN" job create --data "$HUB_DATA" --app pg-app --source shop \
    --operation extract_metadata --mode incremental
}
job=$(incremental_job)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || fail "incremental extraction: $status: $(hub_job_json "$job")"
report=$(hub_job_json "$job")
jq -e '.mode == "incremental" and .applied == "incremental" and .summary.tables == 2
       and .summary.views == 0' <<<"$report" >/dev/null ||
  fail "the incremental job did not deliver only the two changed tables: $report"
tables=$("$HUB_BIN" catalog tables --data "$HUB_DATA" --source shop --json)
names=$(jq -r '[.[].name] | sort | join(",")' <<<"$tables")
[ "$names" = "customers,orders,returns" ] || fail "catalog after the delta: $names ($tables)"
columns=$("$HUB_BIN" catalog columns --data "$HUB_DATA" --source shop --table customers --json)
jq -e 'any(.[]; .name == "email")' <<<"$columns" >/dev/null ||
  fail "the added column is not in the catalog: $columns"
# Nothing changed since: the next incremental job delivers nothing, and the catalog stays.
job=$(incremental_job)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || fail "empty incremental extraction: $status"
jq -e '.applied == "incremental" and .summary.tables == 0 and .summary.views == 0' \
  <<<"$(hub_job_json "$job")" >/dev/null || fail "an unchanged source delivered objects: $(hub_job_json "$job")"
[ "$("$HUB_BIN" catalog tables --data "$HUB_DATA" --source shop --json | jq length)" = 3 ] ||
  fail "an empty delta changed the catalog"

# A wrong password fails the job with connection_failed; the hub never sees a credential.
job=$(hub_job_create pg-app wrong-password)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = failed ] || fail "wrong password: $status"
[ "$(hub_job_json "$job" | jq -r .reason_code)" = connection_failed ] ||
  fail "wrong password: $(hub_job_json "$job")"

# verify-full (the default) against a certificate for another name: refused.
job=$(hub_job_create pg-app wrong-name)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = failed ] || fail "certificate name mismatch: $status"
[ "$(hub_job_json "$job" | jq -r .reason_code)" = connection_failed ] ||
  fail "certificate name mismatch: $(hub_job_json "$job")"

# The egress decision is in the network log with the checked address.
jq -s -e --argjson port "$PG_PORT" 'any(.[]; .msg == "egress connection" and .port == $port
    and .host == "localhost" and (.address == "127.0.0.1" or .address == "::1")
    and .decision == "allowed")' \
  "$work/agent.log" >/dev/null || fail "no network-log record for the database"
records=$(cat "$work"/state/audit/segment-*.jsonl)
jq -s -e 'any(.[]; .type == "secret.accessed" and .fields.purpose == "source password"
              and .fields.outcome == "ok")' <<<"$records" >/dev/null ||
  fail "the database password read is not audited"

stop_process "$AGENT_PID" || fail "agent exited non-zero"
# Neither the password nor row data reached a log, an audit record or the hub.
for f in "$work/agent.log" "$work/hub.log" "$work"/state/audit/segment-*.jsonl "$work/hub/hub.db"; do
  if grep -qaF "$password" "$f"; then fail "the database password is in $f"; fi
  if grep -qaF "row-data-must-not-leave" "$f"; then fail "row data is in $f"; fi
done
echo "PASS postgres"
