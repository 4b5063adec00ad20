# Shared shell harness: starts agent-hub and secure-agent on loopback with
# OS-chosen ports, creates apps and jobs, and waits for outcomes. Sourced by
# scripts/demo, the integration tests and the benchmarks.
#
# Callers set HUB_BIN and AGENT_BIN. Every process started here is recorded
# and stopped by harness_cleanup (install it as an EXIT trap).
# Secrets (client secrets) go only into files with mode 0600, never to output.

HARNESS_PIDS=()
HARNESS_CLEANUP=()

harness_log() { echo "[harness] $*" >&2; }

harness_die() {
  harness_log "error: $*"
  exit 1
}

harness_cleanup() {
  local pid cmd
  for cmd in "${HARNESS_CLEANUP[@]:-}"; do
    [ -n "$cmd" ] && eval "$cmd" >/dev/null 2>&1 || true
  done
  HARNESS_CLEANUP=()
  for pid in "${HARNESS_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  HARNESS_PIDS=()
}

# harness_workdir NAME: sets `work` to a fresh directory with a private
# `secrets/` folder; at exit every process started here is stopped and the
# directory removed.
harness_workdir() {
  work=$(mktemp -d -t "$1.XXXXXX")
  # shellcheck disable=SC2064  # expand $work now: it is this run's directory
  trap "harness_cleanup; [ -n \"\${HARNESS_KEEP:-}\" ] || rm -rf '$work'" EXIT
  mkdir -p "$work/secrets"
  chmod 700 "$work/secrets"
}

# fail MESSAGE: a test's verdict; ends the script non-zero.
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# wait_for_file PATH TIMEOUT_SECONDS [PID]: waits until PATH exists (and, if
# PID is given, fails early when that process dies).
wait_for_file() {
  local path=$1 timeout=$2 pid=${3:-} i
  for ((i = 0; i < timeout * 20; i++)); do
    [ -s "$path" ] && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      harness_log "process $pid exited before $path appeared"
      return 1
    fi
    sleep 0.05
  done
  harness_log "timed out after ${timeout}s waiting for $path"
  return 1
}

# hub_start DATA_DIR LOG_FILE: sets HUB_PID and HUB_URL.
hub_start() {
  local data=$1 log=$2
  "$HUB_BIN" serve --data "$data" --listen 127.0.0.1:0 >"$log.out" 2>"$log" &
  HUB_PID=$!
  HARNESS_PIDS+=("$HUB_PID")
  wait_for_file "$data/listen-url" 30 "$HUB_PID" || { cat "$log" >&2; harness_die "hub did not start"; }
  HUB_URL=$(cat "$data/listen-url")
  HUB_DATA=$data
}

# hub_app_create NAME SECRET_FILE: creates an app, writes its client secret to
# SECRET_FILE (0600) and sets CLIENT_ID.
hub_app_create() {
  local name=$1 secret_file=$2 out
  out=$("$HUB_BIN" app create "$name" --data "$HUB_DATA" --json) || harness_die "app create failed"
  CLIENT_ID=$(jq -r .client_id <<<"$out")
  (umask 077 && jq -j .client_secret <<<"$out" >"$secret_file")
  [ -n "$CLIENT_ID" ] && [ -s "$secret_file" ] || harness_die "app create printed no credentials"
}

# hub_job_create APP SOURCE: prints the job id.
hub_job_create() {
  "$HUB_BIN" job create --data "$HUB_DATA" --app "$1" --source "$2" --operation extract_metadata
}

# hub_job_succeeds APP SOURCE LABEL: runs an extraction job and fails the
# test (with the agent log's tail) unless it succeeds within 60 s.
hub_job_succeeds() {
  local job status
  job=$(hub_job_create "$1" "$2")
  status=$(hub_job_wait "$job" 60) || true
  [ "$status" = succeeded ] || { tail -n 30 "$work/agent.log" >&2; fail "$3: job $job is $status"; }
}

# agent_still_running PID LABEL: fails unless the agent started as PID is
# still the running one (not exited, not restarted).
agent_still_running() {
  kill -0 "$1" 2>/dev/null || fail "$2: the agent exited"
  [ "$AGENT_PID" = "$1" ] || fail "$2: the agent was restarted"
}

# wait_until TIMEOUT_SECONDS CONDITION: evaluates the shell text CONDITION
# every 0.1 s until it succeeds; non-zero when it never did.
wait_until() {
  local timeout=$1 condition=$2 i
  for ((i = 0; i < timeout * 10; i++)); do
    eval "$condition" && return 0
    sleep 0.1
  done
  return 1
}

# hub_job_json ID: prints `job show --json`.
hub_job_json() { "$HUB_BIN" job show "$1" --data "$HUB_DATA" --json; }

# hub_job_wait ID TIMEOUT_SECONDS: waits for a final status and prints it.
hub_job_wait() {
  local id=$1 timeout=$2 i status
  for ((i = 0; i < timeout * 20; i++)); do
    status=$(hub_job_json "$id" | jq -r .status)
    case "$status" in
      succeeded | failed | refused | cancelled) echo "$status"; return 0 ;;
    esac
    sleep 0.05
  done
  echo "timeout"
  return 1
}

# agent_write_config FILE STATE_DIR SECRETS_DIR SOURCE_NAME SQLITE_PATH JOB_KEY_PEM
# (AGENT_EXTRA_YAML, when set, is appended: more top-level sections;
# AGENT_EXTRA_SOURCES, when set, more `sources:` entries (indented "  - ...");
# AGENT_JOB_KEYS, when set, replaces JOB_KEY_PEM by a job_signing_keys list;
# AGENT_KEY_REF, when set, is agent.key's secret reference.)
agent_write_config() {
  local file=$1 state=$2 secrets=$3 source=$4 db=$5 job_key=$6 key_line
  key_line="job_signing_public_key: $job_key"
  [ -z "${AGENT_JOB_KEYS:-}" ] || key_line="job_signing_keys: [$AGENT_JOB_KEYS]"
  cat >"$file" <<YAML
agent:
  id: harness-agent
  state_dir: $state
${AGENT_KEY_REF:+  key: {secret: "$AGENT_KEY_REF"\}}
hub:
  url: $HUB_URL
  ca_file: $HUB_DATA/ca.pem
  $key_line
  client_id: $CLIENT_ID
  client_secret: {secret: "files/hub-client-secret"}
  client_auth: ${AGENT_CLIENT_AUTH:-client_secret_basic}
  poll_wait_seconds: 25
secret_stores:
  files:
    type: file
    path: $secrets
sources:
  - name: $source
    connector: sqlite
    path: $db
${AGENT_EXTRA_SOURCES:-}
health:
  listen: 127.0.0.1:0
log:
  level: info
${AGENT_EXTRA_YAML:-}
YAML
}

# agent_start CONFIG STATE_DIR LOG_FILE: sets AGENT_PID and HEALTH_URL; waits
# until /readyz answers 200.
agent_start() {
  local config=$1 state=$2 log=$3 i
  rm -f "$state/health-url"  # a restart must not read the previous run's URL
  "$AGENT_BIN" run --config "$config" >"$log.out" 2>"$log" &
  AGENT_PID=$!
  HARNESS_PIDS+=("$AGENT_PID")
  wait_for_file "$state/health-url" 30 "$AGENT_PID" || { cat "$log" >&2; harness_die "agent did not start"; }
  HEALTH_URL=$(cat "$state/health-url")
  for ((i = 0; i < 600; i++)); do
    curl -fsS "$HEALTH_URL/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$log" >&2; harness_die "agent exited"; }
    sleep 0.05
  done
  cat "$log" >&2
  harness_die "agent never became ready"
}

# stop_process PID: SIGTERM, wait, and return the exit status.
stop_process() {
  local pid=$1 rc=0
  kill -TERM "$pid" 2>/dev/null || return 0
  wait "$pid" || rc=$?
  return $rc
}

# make_sample_db PATH TABLES: a catalog that looks like a small company's:
# tables with primary keys, NOT NULL columns, defaults, foreign keys
# (including ON DELETE CASCADE), unique and partial indexes, and one view for
# every five tables.
make_sample_db() {
  local path=$1 n=$2 i prev domains entities d e name
  domains=(sales billing crm inventory hr)
  entities=(customers orders invoices products shipments employees payments contracts tickets regions)
  rm -f "$path"
  {
    echo "PRAGMA foreign_keys = ON;"
    echo "BEGIN;"
    prev=""
    for ((i = 0; i < n; i++)); do
      d=${domains[$((i % ${#domains[@]}))]}
      e=${entities[$(((i / ${#domains[@]}) % ${#entities[@]}))]}
      name="${d}_${e}_$((i / (${#domains[@]} * ${#entities[@]})))"
      echo "CREATE TABLE $name ("
      echo "  id INTEGER PRIMARY KEY,"
      echo "  code TEXT NOT NULL UNIQUE,"
      echo "  title VARCHAR(200) NOT NULL DEFAULT 'untitled',"
      echo "  amount NUMERIC(12,2) DEFAULT 0,"
      echo "  status TEXT CHECK (status IN ('open','closed')) DEFAULT 'open',"
      echo "  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,"
      if [ -n "$prev" ]; then
        echo "  parent_id INTEGER REFERENCES $prev(id) ON DELETE CASCADE,"
      else
        echo "  parent_id INTEGER,"
      fi
      echo "  note BLOB"
      echo ");"
      echo "CREATE INDEX idx_${name}_parent ON $name(parent_id);"
      echo "CREATE INDEX idx_${name}_open ON $name(created_at) WHERE status = 'open';"
      if ((i % 5 == 4)); then
        echo "CREATE VIEW v_${name}_summary AS SELECT t.id, t.code, t.amount, p.code AS parent_code FROM $name t LEFT JOIN $prev p ON p.id = t.parent_id;"
      fi
      prev=$name
    done
    echo "COMMIT;"
  } | sqlite3 "$path"
}

# squid_start DIR USER PASSWORD_FILE: a real squid HTTP CONNECT proxy on
# 127.0.0.1 with basic authentication (USER and the password in
# PASSWORD_FILE), CONNECT allowed only to 127.0.0.1. Sets SQUID_PORT and
# SQUID_PID; the access log is DIR/access.log.
squid_start() {
  local dir=$1 user=$2 password_file=$3 helper attempt i
  helper=/usr/lib/squid/basic_ncsa_auth
  [ -x "$helper" ] || harness_die "squid's basic_ncsa_auth not found (apt: squid)"
  mkdir -p "$dir"
  # squid started as root drops to nobody, which writes its logs here; the
  # work directory (0700) must let it through (its secrets/ stays 0700).
  chmod 777 "$dir"
  chmod o+x "$(dirname "$dir")"
  htpasswd -bc "$dir/passwd" "$user" "$(cat "$password_file")" 2>/dev/null ||
    harness_die "htpasswd failed (apt: apache2-utils)"
  chmod 644 "$dir/passwd"
  for attempt in 1 2 3; do
    # A per-run port; a clash only costs a retry.
    SQUID_PORT=$((20000 + (RANDOM * 7 + $$ + attempt * 997) % 30000))
    cat >"$dir/squid.conf" <<CONF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $dir/squid.pid
cache_log $dir/cache.log
access_log stdio:$dir/access.log
coredump_dir $dir
cache deny all
cache_mem 8 MB
shutdown_lifetime 1 seconds
cache_effective_user nobody
auth_param basic program $helper $dir/passwd
auth_param basic children 2
acl local_dst dst 127.0.0.1/32
acl authed proxy_auth REQUIRED
http_access deny !local_dst
http_access deny !authed
http_access allow CONNECT authed
http_access deny all
CONF
    squid -N -f "$dir/squid.conf" >"$dir/output.log" 2>&1 &
    SQUID_PID=$!
    HARNESS_PIDS+=("$SQUID_PID")
    for ((i = 0; i < 200; i++)); do
      kill -0 "$SQUID_PID" 2>/dev/null || break
      # Listening: a CONNECT without credentials gets squid's 407.
      if [ "$(curl -s -o /dev/null -w '%{http_connect}' --max-time 2 -p -x "http://127.0.0.1:$SQUID_PORT" \
        "http://127.0.0.1:9/" 2>/dev/null)" = 407 ]; then
        return 0
      fi
      sleep 0.1
    done
    kill -TERM "$SQUID_PID" 2>/dev/null || true
    wait "$SQUID_PID" 2>/dev/null || true
  done
  cat "$dir/output.log" "$dir/cache.log" >&2 2>/dev/null || true
  harness_die "squid did not start"
}

# ---- Client secret rotation and revocation (issue #5).

# hub_start_args DATA_DIR LOG_FILE ARGS...: hub_start with extra `serve`
# arguments (e.g. --access-token-lifetime 6). Sets HUB_PID, HUB_URL, HUB_DATA.
hub_start_args() {
  local data=$1 log=$2
  shift 2
  "$HUB_BIN" serve --data "$data" --listen 127.0.0.1:0 "$@" >"$log.out" 2>"$log" &
  HUB_PID=$!
  HARNESS_PIDS+=("$HUB_PID")
  wait_for_file "$data/listen-url" 30 "$HUB_PID" || { cat "$log" >&2; harness_die "hub did not start"; }
  HUB_URL=$(cat "$data/listen-url")
  HUB_DATA=$data
}

# secret_file_replace FILE: replaces FILE with stdin atomically (a 0600 temp
# file in the same directory, then rename), so a reader sees the old or the
# new secret, never a partial one.
secret_file_replace() {
  local file=$1 tmp
  tmp=$(mktemp "$(dirname "$file")/.$(basename "$file").XXXXXX") || harness_die "mktemp failed"
  chmod 600 "$tmp"
  cat >"$tmp"
  mv -f "$tmp" "$file"
}

# hub_app_rotate NAME OVERLAP_SECONDS SECRET_FILE: rotates the app's client
# secret and writes the new one atomically to SECRET_FILE (0600). Sets
# PREVIOUS_VALID_UNTIL_MS (empty when the overlap is 0).
hub_app_rotate() {
  local name=$1 overlap=$2 file=$3 out
  out=$("$HUB_BIN" app rotate "$name" --overlap "$overlap" --data "$HUB_DATA" --json) ||
    harness_die "app rotate failed"
  jq -j .client_secret <<<"$out" | secret_file_replace "$file"
  [ -s "$file" ] || harness_die "app rotate printed no secret"
  PREVIOUS_VALID_UNTIL_MS=$(jq -r '.previous_secret_valid_until_ms // empty' <<<"$out")
}

# hub_app_revoke NAME: revokes the app for good.
hub_app_revoke() {
  "$HUB_BIN" app revoke "$1" --data "$HUB_DATA" >/dev/null || harness_die "app revoke failed"
}

# agent_audit_types STATE_DIR: the agent's audit record types, oldest first,
# one a line (read while the agent runs).
agent_audit_types() {
  cat "$1"/audit/segment-*.jsonl 2>/dev/null | jq -r .type
}

# ---- A throwaway PostgreSQL 15 server (issue #7).

# pg_start DIR: initdb + start on localhost (127.0.0.1, and ::1 when the host
# has it) with a free port, password
# (scram-sha-256) auth over TCP, TLS with DIR/server.crt (for "localhost",
# also the CA to trust), trust on its private socket only. Sets PG_PORT and
# PG_DIR; stopped at exit. Needs root (runs as postgres).
pg_start() {
  local dir=$1 bin=/usr/lib/postgresql/15/bin
  [ -x "$bin/initdb" ] || harness_die "PostgreSQL 15 is not installed"
  mkdir -p "$dir" && chown postgres: "$dir"
  # The postgres user must be able to reach DIR (the parent stays unreadable).
  chmod o+x "$(dirname "$dir")"
  # A port nothing listens on (PostgreSQL cannot take port 0).
  while :; do
    PG_PORT=$(shuf -i 20000-60999 -n 1)
    ss -Hltn "sport = :$PG_PORT" | grep -q . || break
  done
  PG_DIR=$dir
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; harness_die "initdb failed"; }
  # TLS with a self-signed certificate for "localhost" (also the clients' CA).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$dir/server.key" -out "$dir/server.crt" >/dev/null 2>&1 ||
    harness_die "cannot make the PostgreSQL certificate"
  chown postgres: "$dir/server.key" && chmod 600 "$dir/server.key" && chmod 644 "$dir/server.crt"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir -p $PG_PORT -c listen_addresses=localhost -c fsync=off -c ssl=on \
        -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start >/dev/null 2>&1 ||
    { cat "$dir/server.log" >&2; harness_die "PostgreSQL did not start"; }
  HARNESS_CLEANUP+=("runuser -u postgres -- $bin/pg_ctl -D $dir/data -m immediate -w stop")
}

# pg_sql DATABASE SQL: runs SQL as the superuser over the private socket.
pg_sql() {
  runuser -u postgres -- psql -h "$PG_DIR" -p "$PG_PORT" -d "$1" -v ON_ERROR_STOP=1 -qAt -c "$2"
}

# maria_start DIR: a throwaway MariaDB 10.11 server on 127.0.0.1 at a free
# port (MARIA_PORT), TLS with a self-signed certificate for "localhost"
# (DIR/server.crt), root only over the private socket DIR/sock. Stopped by
# the harness cleanup.
maria_start() {
  local dir=$1
  command -v mariadbd >/dev/null || harness_die "MariaDB is not installed"
  mkdir -p "$dir/tmp" && chown mysql: "$dir" "$dir/tmp"
  chmod o+x "$(dirname "$dir")"
  while :; do
    MARIA_PORT=$(shuf -i 20000-60999 -n 1)
    ss -Hltn "sport = :$MARIA_PORT" | grep -q . || break
  done
  MARIA_DIR=$dir
  # Native AIO off: parallel test servers can exhaust the kernel's AIO contexts.
  mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" --skip-test-db \
    --auth-root-authentication-method=socket --innodb-use-native-aio=0 >"$dir/install.log" 2>&1 ||
    { cat "$dir/install.log" >&2; harness_die "mariadb-install-db failed"; }
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$dir/server.key" -out "$dir/server.crt" \
    >/dev/null 2>&1 || harness_die "cannot make the MariaDB certificate"
  chown mysql: "$dir/server.key" && chmod 600 "$dir/server.key" && chmod 644 "$dir/server.crt"
  mariadbd --no-defaults --user=mysql --datadir="$dir/data" --socket="$dir/sock" \
    --port="$MARIA_PORT" --bind-address=127.0.0.1 --pid-file="$dir/pid" \
    --ssl-cert="$dir/server.crt" --ssl-key="$dir/server.key" --performance-schema=ON \
    --tmpdir="$dir/tmp" \
    --log-error="$dir/server.log" --innodb-flush-log-at-trx-commit=0 --innodb-use-native-aio=0 \
    >/dev/null 2>&1 &
  HARNESS_CLEANUP+=("kill -TERM $!; wait $! 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    mariadb-admin --no-defaults --socket="$dir/sock" -uroot ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$dir/server.log" >&2
  harness_die "MariaDB did not start"
}

# maria_sql SQL: runs SQL as root over the private socket.
maria_sql() {
  mariadb --no-defaults --socket="$MARIA_DIR/sock" -uroot --batch --skip-column-names -e "$1"
}
