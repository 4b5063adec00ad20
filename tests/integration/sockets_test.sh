#!/usr/bin/env bash
# The agent's listening sockets, watched before, during and after a job: at
# every look it listens on exactly one socket, TCP on 127.0.0.1 at the health
# port from STATE_DIR/health-url; never UDP, never a wildcard address. Two
# independent views must agree: `ss -p` filtered by the agent's PID, and the
# kernel's tables in /proc/PID/net matched against the inodes of the agent's
# own file descriptors. Both must *find* the health listener, so a filter that
# matches nothing fails instead of passing.
# Usage: sockets_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"
harness_workdir sa-sockets

hub_start "$work/hub" "$work/hub.log"
hub_app_create sockets-app "$work/secrets/hub-client-secret"
hub_port=${HUB_URL##*:}

# Enough tables that the job stays in progress for several looks.
make_sample_db "$work/source.db" 1500
agent_write_config "$work/agent.yaml" "$work/state" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
agent_start "$work/agent.yaml" "$work/state" "$work/agent.log"

health_addr=${HEALTH_URL#http://}
health_addr=${health_addr%%/*}
[[ "$health_addr" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "health-url is not a loopback address: $HEALTH_URL"
health_port=${health_addr##*:}

# agent_sockets_ss: all the agent's TCP and UDP sockets according to ss, as
# "PROTO STATE LOCAL PEER" lines.
agent_sockets_ss() {
  ss -H -a -t -u -n -p | awk -v pid="pid=$AGENT_PID," 'index($0, pid) { print $1, $2, $5, $6 }'
}

# hex_to_addr HEX: a /proc/net address ("0100007F:1F90" or its IPv6 form) as
# "ADDR:PORT".
hex_to_addr() {
  local hex=${1%%:*} port=$((16#${1##*:})) out="" i
  if [ ${#hex} = 8 ]; then
    # IPv4, little-endian bytes.
    printf '%d.%d.%d.%d:%d\n' $((16#${hex:6:2})) $((16#${hex:4:2})) $((16#${hex:2:2})) \
      $((16#${hex:0:2})) "$port"
  else
    # IPv6: four little-endian 32-bit words; print them as plain hex groups.
    for i in 0 8 16 24; do
      out+=${hex:$((i + 6)):2}${hex:$((i + 4)):2}:${hex:$((i + 2)):2}${hex:i:2}:
    done
    echo "[${out%:}]:$port"
  fi
}

# listeners_proc: the same, from /proc: sockets whose inode is one of the
# agent's descriptors, in LISTEN state (TCP, st 0A) or unconnected (UDP, st 07).
listeners_proc() {
  local inodes file proto line
  inodes=$(find "/proc/$AGENT_PID/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null |
    sed -E 's/^socket:\[([0-9]+)\]$/\1/' | tr '\n' ' ')
  [ -n "${inodes// /}" ] || return 0
  for file in tcp tcp6 udp udp6; do
    proto=${file%6}
    while read -r line; do
      hex_to_addr "$line" | sed "s/^/$proto /"
    done < <(awk -v want="$([ "$proto" = tcp ] && echo 0A || echo 07)" -v inodes="$inodes" '
      BEGIN { n = split(inodes, list, " "); for (i = 1; i <= n; i++) mine[list[i]] = 1 }
      NR > 1 && $4 == want && ($10 in mine) { print $2 }' "/proc/$AGENT_PID/net/$file")
  done
}

looks=0
during_job=0
saw_hub_connection=0
# look WHEN: one look with both views; fails on anything but the health listener.
look() {
  local when=$1 sockets by_ss by_proc
  kill -0 "$AGENT_PID" 2>/dev/null || { tail -n 30 "$work/agent.log" >&2; fail "agent exited ($when)"; }
  sockets=$(agent_sockets_ss)
  # Listening: TCP in LISTEN, UDP unconnected (UNCONN).
  by_ss=$(awk '$2 == "LISTEN" || $2 == "UNCONN" { print $1, $3 }' <<<"$sockets")
  by_proc=$(listeners_proc)
  [ "$by_ss" = "tcp 127.0.0.1:$health_port" ] ||
    fail "$when: ss shows the agent listening on [${by_ss//$'\n'/; }], want exactly tcp 127.0.0.1:$health_port"
  [ "$by_proc" = "tcp 127.0.0.1:$health_port" ] ||
    fail "$when: /proc shows the agent listening on [${by_proc//$'\n'/; }], want exactly tcp 127.0.0.1:$health_port"
  # The PID filter also sees the agent's outbound connection to the hub (its
  # long poll or a delivery), so it is looking at the right process.
  if awk -v hub="127.0.0.1:$hub_port" '$1 == "tcp" && $2 == "ESTAB" && $4 == hub { found = 1 }
      END { exit !found }' <<<"$sockets"; then
    saw_hub_connection=1
  fi
  looks=$((looks + 1))
}

look "before any job"

before=$(sha256sum "$work/source.db")
job=$(hub_job_create sockets-app inventory)
# Look as often as possible from the moment the agent's audit log says the
# job started until the hub records its outcome (extraction, then delivery).
final=""
started=0
for ((i = 0; i < 1200; i++)); do
  status=$(hub_job_json "$job" | jq -r .status)
  case "$status" in
    succeeded | failed | refused) final=$status; break ;;
  esac
  if [ "$started" = 0 ] && [ "$status" = leased ]; then
    types=$("$AGENT_BIN" audit show --dir "$work/state/audit" --job "$job" 2>/dev/null | awk '{print $3}' || true)
    grep -qx job.started <<<"$types" && started=1
  fi
  if [ "$started" = 1 ]; then
    look "while job $job runs"
    during_job=$((during_job + 1))
    continue
  fi
  sleep 0.05
done
[ "$final" = succeeded ] || { tail -n 30 "$work/agent.log" >&2; fail "job $job ended as '${final:-timeout}'"; }
[ "$before" = "$(sha256sum "$work/source.db")" ] || fail "extraction modified the source database"
[ "$during_job" -ge 1 ] || fail "never saw job $job in progress: make the source bigger"

look "after the job"
[ "$saw_hub_connection" = 1 ] || fail "never saw the agent's connection to the hub with the same PID filter"

stop_process "$AGENT_PID" || fail "agent exited non-zero on SIGTERM"
stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"
echo "PASS sockets ($looks looks, $during_job while job $job ran: only tcp 127.0.0.1:$health_port)"
