#!/usr/bin/env bash
# A MariaDB 10.11 source end to end: real hub, real agent, a throwaway
# MariaDB server on loopback with password authentication and TLS. The agent
# checks the connection against its egress policy, reads the credentials just
# in time from its secret store, and runs each job in a sandboxed worker
# (TCP only to the server's port) that connects to the checked address.
# Checks: interactive operations, an extraction whose catalog matches the
# database (tables, views, routines), the policy's filters, TLS name
# verification, a wrong password, the network log, and that no credential or
# row data leaks.
# Usage: mariadb_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (MariaDB runs as mysql)"; exit 77; }
command -v mariadbd >/dev/null || { echo "SKIP: MariaDB is not installed"; exit 77; }
harness_workdir sa-mariadb

maria_start "$work/maria"
password=$(openssl rand -hex 16)
maria_sql "CREATE DATABASE shop;
  CREATE TABLE shop.customers (id bigint PRIMARY KEY, name varchar(100) NOT NULL);
  CREATE TABLE shop.orders (id bigint PRIMARY KEY AUTO_INCREMENT,
    customer_id bigint, total decimal(12,2) DEFAULT 0 COMMENT 'gross',
    CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES shop.customers(id)
      ON DELETE CASCADE) COMMENT 'one row per order';
  CREATE INDEX orders_total ON shop.orders (total);
  CREATE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 100;
  CREATE TABLE shop.secret_salaries (id bigint, amount decimal(10,2));
  CREATE FUNCTION shop.order_count() RETURNS bigint READS SQL DATA
    RETURN (SELECT count(*) FROM shop.orders);
  INSERT INTO shop.customers VALUES (1, 'row-data-must-not-leave');
  CREATE USER 'catalog_reader'@'127.0.0.1' IDENTIFIED BY '$password';
  GRANT SELECT, SHOW VIEW ON shop.* TO 'catalog_reader'@'127.0.0.1';
  -- MariaDB 10.11 shows routines in information_schema only to an account
  -- that may read their definitions (docs/connectors.md).
  GRANT SELECT ON mysql.proc TO 'catalog_reader'@'127.0.0.1';"

hub_start "$work/hub" "$work/hub.log"
hub_app_create maria-app "$work/secrets/hub-client-secret"
(umask 077 && printf '{"user":"catalog_reader","password":"%s"}' "$password" >"$work/secrets/shop-db")

make_sample_db "$work/unused.db" 1
# The real name and TLS with full verification: "localhost" resolves to a
# loopback address, which the egress policy allows only with an explicit cidr.
AGENT_EXTRA_SOURCES="  - name: shop
    connector: mariadb
    host: localhost
    port: $MARIA_PORT
    database: shop
    sslmode: verify-full
    ca_file: $MARIA_DIR/server.crt
    user: {secret: \"files/shop-db#user\"}
    password: {secret: \"files/shop-db#password\"}
  - name: wrong-name
    connector: mariadb
    host: 127.0.0.1
    port: $MARIA_PORT
    ca_file: $MARIA_DIR/server.crt
    user: {secret: \"files/shop-db#user\"}
    password: {secret: \"files/shop-db#password\"}
  - name: wrong-password
    connector: mariadb
    host: 127.0.0.1
    port: $MARIA_PORT
    sslmode: require
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
    - {host: localhost, port: $MARIA_PORT, cidr: [127.0.0.1/32, \"::1/128\"]}"
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" local "$work/unused.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

wait_json() { # wait_json SOURCE OPERATION: runs the job with --wait, prints its JSON
  "$HUB_BIN" job create --data "$HUB_DATA" --app maria-app --source "$1" --operation "$2" \
    --wait --wait-timeout 60 --json
}

# sslmode verify-full: this succeeds only over TLS with the certificate
# checked against ca_file and the name "localhost".
out=$(wait_json shop test_connection) || fail "test_connection: $out"
jq -e '.result.connected == true and (.result.server_version | test("MariaDB"))' <<<"$out" \
  >/dev/null || fail "test_connection result: $out"
out=$(wait_json shop list_schemas) || fail "list_schemas: $out"
jq -e 'any(.result.schemas[]; .schema == "shop" and .database == "shop")' <<<"$out" \
  >/dev/null || fail "list_schemas result: $out"
out=$(wait_json shop preflight) || fail "preflight: $out"
jq -e '.result.checks | length > 0 and all(.[]; .ok)' <<<"$out" >/dev/null ||
  fail "preflight result: $out"

# The catalog: every table and view, minus what the policy excludes, and the routine.
job=$(hub_job_create maria-app shop)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || fail "extraction: $status: $(hub_job_json "$job")"
tables=$("$HUB_BIN" catalog tables --data "$HUB_DATA" --source shop --json)
names=$(jq -r '[.[].name] | sort | join(",")' <<<"$tables")
[ "$names" = "big_orders,customers,orders" ] || fail "catalog tables: $names ($tables)"
jq -e 'any(.[]; .name == "big_orders" and .kind == "view")' <<<"$tables" >/dev/null ||
  fail "big_orders is not a view: $tables"
columns=$("$HUB_BIN" catalog columns --data "$HUB_DATA" --source shop --table orders --json)
jq -e 'any(.[]; .name == "total" and (.data_type | startswith("decimal")))' <<<"$columns" \
  >/dev/null || fail "orders columns: $columns"
routines=$("$HUB_BIN" catalog routines --data "$HUB_DATA" --source shop --json)
jq -e 'any(.[]; .name == "order_count" and .kind == "function")' <<<"$routines" >/dev/null ||
  fail "catalog routines: $routines"
lineage=$("$HUB_BIN" catalog lineage --data "$HUB_DATA" --source shop --table shop.big_orders --json)
jq -e '[.. | strings] | any(. == "orders")' <<<"$lineage" >/dev/null ||
  fail "big_orders lineage does not name orders: $lineage"

# A wrong password fails the job with connection_failed.
job=$(hub_job_create maria-app wrong-password)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = failed ] || fail "wrong password: $status"
[ "$(hub_job_json "$job" | jq -r .reason_code)" = connection_failed ] ||
  fail "wrong password: $(hub_job_json "$job")"

# verify-full (the default) against a certificate for another name: refused.
job=$(hub_job_create maria-app wrong-name)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = failed ] || fail "certificate name mismatch: $status"
[ "$(hub_job_json "$job" | jq -r .reason_code)" = connection_failed ] ||
  fail "certificate name mismatch: $(hub_job_json "$job")"

# The egress decision is in the network log with the checked address.
jq -s -e --argjson port "$MARIA_PORT" 'any(.[]; .msg == "egress connection" and .port == $port
    and .host == "localhost" and (.address == "127.0.0.1" or .address == "::1")
    and .decision == "allowed")' \
  "$work/agent.log" >/dev/null || fail "no network-log record for the database"

stop_process "$AGENT_PID" || fail "agent exited non-zero"
# Neither the password nor row data reached a log, an audit record or the hub.
for f in "$work/agent.log" "$work/hub.log" "$work"/state/audit/segment-*.jsonl "$work/hub/hub.db"; do
  if grep -qaF "$password" "$f"; then fail "the database password is in $f"; fi
  if grep -qaF "row-data-must-not-leave" "$f"; then fail "row data is in $f"; fi
done
echo "PASS mariadb"
