#!/usr/bin/env bash
# Metadata extraction at scale, end to end: a throwaway PostgreSQL 15 or
# MariaDB 10.11 server holds TABLES tables of COLUMNS columns (each with a
# primary key and one secondary index) plus VIEWS views; a real hub and a
# real agent run one extract_metadata job over TLS. Prints:
#   - job_s: the job end to end, from the lease to the hub's acceptance
#     (the hub's leased_at_ms to completed_at_ms), the median of RUNS
#     (default 3) rounds of one job and one dump each, after a warm-up job
#     and a VACUUM ANALYZE of the freshly created catalog;
#   - the reference: the engine's own schema dump of the same database in
#     the same run (pg_dump --schema-only, mariadb-dump --no-data --routines),
#     and the ratio job_s / dump_s (issue target: at most 0.5);
#   - peak_rss_mb: the largest resident memory of the agent's process tree
#     (supervisor + job worker), sampled every 10 ms during the job (target:
#     at most 64 MB), and the supervisor's own VmHWM.
#
# Usage: catalog_extract.sh AGENT_HUB SECURE_AGENT SOURCE_DIR ENGINE [TABLES [COLUMNS [VIEWS]]]
#   ENGINE: postgres | mariadb; defaults 10000 tables, 20 columns, 500 views.
# Needs root (the servers run as their own users). Exits 77 when it cannot run.
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3 ENGINE=$4 TABLES=${5:-10000} COLUMNS=${6:-20} VIEWS=${7:-500}
source "$SRC/scripts/lib/harness.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
case $ENGINE in
  postgres) [ -x /usr/lib/postgresql/15/bin/initdb ] || { echo "SKIP: no PostgreSQL 15"; exit 77; } ;;
  mariadb) command -v mariadbd >/dev/null || { echo "SKIP: no MariaDB"; exit 77; } ;;
  *) harness_die "ENGINE must be postgres or mariadb" ;;
esac
[ "$VIEWS" -le "$TABLES" ] || harness_die "VIEWS must not exceed TABLES"
harness_workdir sa-bench-catalog
password=$(openssl rand -hex 16)

# One table: id bigint primary key, COLUMNS-1 more columns of mixed types,
# an index on the second column; views select from the first VIEWS tables.
if [ "$ENGINE" = postgres ]; then
  pg_start "$work/db"
  port=$PG_PORT ca=$PG_DIR/server.crt
  pg_sql postgres "CREATE ROLE bench_reader LOGIN PASSWORD '$password'"
  pg_sql postgres "CREATE DATABASE bench"
  pg_sql bench "GRANT USAGE ON SCHEMA public TO bench_reader"
  # Batches of 500 tables per transaction: one transaction creating them all
  # would exhaust the server's lock table (max_locks_per_transaction).
  for ((first = 1; first <= TABLES; first += 500)); do
    last=$((first + 499 < TABLES ? first + 499 : TABLES))
    pg_sql bench "DO \$\$
      DECLARE cols text;
      BEGIN
        SELECT string_agg(format('c%s %s', i, (ARRAY['integer','text','numeric(12,2)',
               'timestamptz','boolean'])[1 + i % 5]), ', ') INTO cols
          FROM generate_series(2, $COLUMNS) AS i;
        FOR t IN $first..$last LOOP
          EXECUTE format('CREATE TABLE public.t%s (id bigint PRIMARY KEY, %s)', t, cols);
          EXECUTE format('CREATE INDEX t%s_c2 ON public.t%s (c2)', t, t);
        END LOOP;
      END \$\$;"
  done
  pg_sql bench "DO \$\$ BEGIN
      FOR v IN 1..$VIEWS LOOP
        EXECUTE format('CREATE VIEW public.v%s AS SELECT id, c2 FROM public.t%s', v, v);
      END LOOP;
    END \$\$;"
  # Creating 10,000 tables leaves the system catalogs full of dead row
  # versions that autovacuum would clean up during the measurement.
  pg_sql bench "VACUUM ANALYZE"
  dump() {
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_dump -h "$PG_DIR" -p "$PG_PORT" \
      --schema-only bench >"$work/dump.sql"
  }
  source_yaml="    connector: postgres
    database: bench"
else
  maria_start "$work/db"
  port=$MARIA_PORT ca=$MARIA_DIR/server.crt
  {
    echo "CREATE DATABASE bench; USE bench;"
    cols=""
    for ((i = 2; i <= COLUMNS; i++)); do
      types=(int "varchar(100)" "decimal(12,2)" datetime tinyint)
      cols+=", c$i ${types[$((i % 5))]}"
    done
    for ((t = 1; t <= TABLES; t++)); do
      echo "CREATE TABLE t$t (id bigint PRIMARY KEY$cols, KEY t${t}_c2 (c2));"
    done
    for ((v = 1; v <= VIEWS; v++)); do echo "CREATE VIEW v$v AS SELECT id, c2 FROM t$v;"; done
    echo "CREATE USER 'bench_reader'@'127.0.0.1' IDENTIFIED BY '$password';"
    echo "GRANT SELECT, SHOW VIEW ON bench.* TO 'bench_reader'@'127.0.0.1';"
  } >"$work/schema.sql"
  mariadb --no-defaults --socket="$MARIA_DIR/sock" -uroot <"$work/schema.sql"
  dump() {
    mariadb-dump --no-defaults --socket="$MARIA_DIR/sock" -uroot --no-data --routines bench \
      >"$work/dump.sql"
  }
  source_yaml="    connector: mariadb
    database: bench"
fi
harness_log "created $TABLES tables x $COLUMNS columns and $VIEWS views in $ENGINE"

hub_start "$work/hub" "$work/hub.log"
hub_app_create bench "$work/secrets/hub-client-secret"
(umask 077 && printf '{"user":"bench_reader","password":"%s"}' "$password" >"$work/secrets/db")
make_sample_db "$work/unused.db" 1
AGENT_EXTRA_SOURCES="  - name: big
$source_yaml
    host: localhost
    port: $port
    sslmode: verify-full
    ca_file: $ca
    user: {secret: \"files/db#user\"}
    password: {secret: \"files/db#password\"}"
AGENT_EXTRA_YAML="egress:
  allow:
    - {host: localhost, port: $port, cidr: [127.0.0.1/32, \"::1/128\"]}"
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" local "$work/unused.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

# Warm-up: the first job pays for the token request and the server's caches.
warm=$(hub_job_create bench big)
[ "$(hub_job_wait "$warm" 600)" = succeeded ] || harness_die "warm-up job failed: $(hub_job_json "$warm")"

# Peak RSS of the agent and its children (the worker), sampled.
sample_rss() {
  local peak=0 total pid
  while [ -e "$work/sampling" ]; do
    total=0
    for pid in "$AGENT_PID" $(pgrep -P "$AGENT_PID" || true); do
      # A worker may exit between pgrep and the read: count it as 0.
      rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
      total=$((total + ${rss:-0}))
    done
    [ "$total" -gt "$peak" ] && peak=$total
    echo "$peak" >"$work/peak_kb"
    sleep 0.01
  done
}
# RUNS rounds (default 3), each one measured job then one dump, so both see
# the same server state; the medians are reported. Peak RSS is the largest
# over all rounds.
runs=${RUNS:-3}
job_list="" dump_list="" peak_kb=0
for ((round = 1; round <= runs; round++)); do
  touch "$work/sampling"
  sample_rss &
  sampler=$!
  job=$(hub_job_create bench big)
  status=$(hub_job_wait "$job" 900) || true
  rm -f "$work/sampling"
  wait "$sampler" || true
  [ "$status" = succeeded ] || harness_die "job failed: $(hub_job_json "$job")"
  report=$(hub_job_json "$job")
  ms=$(jq -r '.completed_at_ms - .leased_at_ms' <<<"$report")
  # Where the time goes: lease -> worker started, worker (extraction, chunks
  # uploaded and parsed by the hub as they fill), worker finished -> hub
  # accepted (the hub's commit).
  jq -r --arg r "$round" '"round \($r): job_s=\((.completed_at_ms - .leased_at_ms) / 1000) lease_to_start_s=\((.started_at_ms - .leased_at_ms) / 1000) extract_and_upload_s=\((.finished_at_ms - .started_at_ms) / 1000) hub_ingest_s=\((.completed_at_ms - .finished_at_ms) / 1000)"' <<<"$report"
  round_peak=$(cat "$work/peak_kb")
  [ "$round_peak" -gt "$peak_kb" ] && peak_kb=$round_peak
  start=$(date +%s%N)
  dump
  d=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "round $round: reference_dump_s=$(awk -v d="$d" 'BEGIN { printf "%.2f", d / 1000 }')"
  job_list+="$ms " dump_list+="$d "
done
objects=$(jq -r '(.summary.tables // .summary_tables // 0) + (.summary.views // .summary_views // 0)' <<<"$report")
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGENT_PID/status")
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
job_ms=$(median "$job_list")
dump_ms=$(median "$dump_list")
dump_tables=$(grep -c '^CREATE TABLE' "$work/dump.sql" || true)

echo "engine=$ENGINE tables=$TABLES columns=$COLUMNS views=$VIEWS objects_delivered=$objects runs=$runs (medians)"
awk -v j="$job_ms" -v d="$dump_ms" -v n="$TABLES" -v t="$dump_tables" 'BEGIN {
  printf "job_s=%.2f tables_per_s=%.0f\n", j / 1000, (j > 0 ? n * 1000 / j : 0)
  printf "reference_dump_s=%.2f dump_create_tables=%d\n", d / 1000, t
  printf "ratio job/dump=%.3f (target <= 0.5)\n", (d > 0 ? j / d : 0)
}'
awk -v p="$peak_kb" -v h="$hwm_kb" 'BEGIN {
  printf "peak_rss_mb agent_tree=%.1f (target <= 64) supervisor_vmhwm=%.1f\n", p / 1024, h / 1024
}'
