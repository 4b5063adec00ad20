#!/usr/bin/env bash
# The agent behind a minimal firewall, and real connect attempts to denied
# addresses, inside two network namespaces this test creates and deletes:
#
#   ns hub (HUB_IP/30) <-- veth --> ns agent (AGENT_IP/30)
#
# Neither namespace has a default route, both ends of every packet are inside
# them, and the root namespace's routes and firewall are never touched, so
# even a broken agent cannot send a packet off this machine. In ns agent an
# nftables output chain drops everything except loopback and TCP to the hub's
# address and port (plus established flows), and counts what matters:
#
#   a. the agent (hub.url https://hub.test:PORT, egress.allow with the hub's
#      /32 as cidr) completes a sqlite job: the minimal rules are enough;
#   b. metadata.test -> 169.254.169.254: the agent refuses it (link-local)
#      and the counter of packets to 169.254.0.0/16 stays 0, while curl in
#      the same namespace does make it count (the counter works; nft drops
#      the packet, and its only route is ns agent's own loopback);
#   c. hub.test without a cidr entry (private 10.x): refused, and no new
#      connection to the hub's address is counted.
#
# Needs root, `ip netns`, nft and curl; exits 77 (skipped) without them.
# Usage: netns_test.sh AGENT_HUB SECURE_AGENT SOURCE_DIR
set -euo pipefail
HUB_BIN=$1 AGENT_BIN=$2 SRC=$3
source "$SRC/scripts/lib/harness.sh"

skip() {
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "network namespaces need root"
for tool in ip nft curl jq ss; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done

NS_HUB=sa-hub-$$
NS_AGENT=sa-agent-$$
# A per-run /30 (never 10.255/16, where this machine's resolver may live).
net=10.$((RANDOM % 200 + 20)).$((RANDOM % 256))
host=$((RANDOM % 64 * 4))
HUB_IP=$net.$((host + 1))
AGENT_IP=$net.$((host + 2))

created=()
work=$(mktemp -d -t sa-netns.XXXXXX)
cleanup() {
  local ns
  harness_cleanup
  for ns in "${created[@]:-}"; do
    [ -n "$ns" ] || continue
    ip netns del "$ns" 2>/dev/null || echo "warning: could not delete namespace $ns" >&2
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$work/secrets"
chmod 700 "$work/secrets"

# in_agent CMD...: run CMD inside ns agent.
in_agent() { ip netns exec "$NS_AGENT" "$@"; }

for ns in "$NS_HUB" "$NS_AGENT"; do
  # /etc/netns/NS exists before the namespace is used, so a failure below
  # still gets it removed.
  created+=("$ns")
  mkdir -p "/etc/netns/$ns"
  # Name lookups stay in the namespace: no DNS server but loopback.
  echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
  if ! err=$(ip netns add "$ns" 2>&1); then
    created=("${created[@]/$ns/}")
    rm -rf "/etc/netns/$ns"
    skip "ip netns add $ns failed: $err"
  fi
  ip -n "$ns" link set lo up
done
# `ip netns exec` bind-mounts these over /etc/hosts in ns agent.
cat >"/etc/netns/$NS_AGENT/hosts" <<EOF
127.0.0.1 localhost
$HUB_IP hub.test
169.254.169.254 metadata.test
EOF

# The veth is created inside ns agent with its peer inside ns hub: it never
# exists in the root namespace.
ip -n "$NS_AGENT" link add veth0 type veth peer name veth0 netns "$NS_HUB"
ip -n "$NS_HUB" addr add "$HUB_IP/30" dev veth0
ip -n "$NS_AGENT" addr add "$AGENT_IP/30" dev veth0

# The agent's firewall, in place before the link comes up: loopback, TCP to
# the hub's address and port (filled in once the hub has its port) and
# established flows; the sqlite source needs no port. Counters show what the
# agent tried.
in_agent nft -f - <<EOF
table inet sa_test {
  set hub_port { type inet_service; }
  counter metadata {}
  counter hub_new {}
  counter other_v4 {}
  chain output {
    type filter hook output priority 0; policy drop;
    ip daddr 169.254.0.0/16 counter name metadata drop
    oif "lo" accept
    ip daddr $HUB_IP ct state new counter name hub_new
    ct state established,related accept
    ip daddr $HUB_IP tcp dport @hub_port accept
    meta nfproto ipv4 counter name other_v4
  }
}
EOF
ip -n "$NS_HUB" link set veth0 up
ip -n "$NS_AGENT" link set veth0 up
# Without a route a connect to 169.254.169.254 fails in the routing lookup and
# no packet reaches the firewall, so the counter could not tell a broken
# agent from a correct one. This route points at ns agent's own loopback (no
# such local address, so even without the firewall the packet would die in
# this namespace); a real connect reaches the output chain, where it is
# counted and dropped.
ip -n "$NS_AGENT" route add 169.254.0.0/16 dev lo
for ns in "$NS_HUB" "$NS_AGENT"; do
  [ -z "$(ip -n "$ns" route show default)" ] || fail "namespace $ns has a default route"
  [ -z "$(ip -n "$ns" -6 route show default)" ] || fail "namespace $ns has an IPv6 default route"
done

# counter NAME: packets counted so far by the named counter in ns agent.
counter() {
  in_agent nft -j list counter inet sa_test "$1" | jq -e '.nftables[] | select(.counter) | .counter.packets'
}

# --- The hub, inside ns hub, with a certificate for hub.test.
ip netns exec "$NS_HUB" "$HUB_BIN" serve --data "$work/hub" --listen "$HUB_IP:0" \
  --san hub.test >"$work/hub.log.out" 2>"$work/hub.log" &
HUB_PID=$!
HARNESS_PIDS+=("$HUB_PID")
HUB_DATA=$work/hub
wait_for_file "$work/hub/listen-url" 30 "$HUB_PID" || { cat "$work/hub.log" >&2; fail "hub did not start"; }
HUB_LISTEN=$(cat "$work/hub/listen-url")
HUB_PORT=${HUB_LISTEN##*:}
[ "$HUB_LISTEN" = "https://$HUB_IP:$HUB_PORT" ] || fail "hub listens on $HUB_LISTEN, want $HUB_IP"
in_agent nft add element inet sa_test hub_port "{ $HUB_PORT }"
hub_app_create netns-app "$work/secrets/hub-client-secret"
make_sample_db "$work/source.db" 20

# records LOG FILTER [JQ_ARGS...]: LOG's records that FILTER selects, one a
# line. (Not `jq -e`: jq 1.6 sets its status from the last input only.)
records() {
  local log=$1 filter=$2
  shift 2
  jq -c "$@" "select($filter)" "$log"
}

# start_agent NAME: starts secure-agent in ns agent with $work/NAME.yaml and
# state in $work/NAME; sets AGENT_PID.
start_agent() {
  ip netns exec "$NS_AGENT" "$AGENT_BIN" run --config "$work/$1.yaml" \
    >"$work/$1.log.out" 2>"$work/$1.log" &
  AGENT_PID=$!
  HARNESS_PIDS+=("$AGENT_PID")
}

# wait_for_denial NAME HOST: waits until agent NAME logs a denied connection
# to HOST and prints that record.
wait_for_denial() {
  local log=$work/$1.log record i
  for ((i = 0; i < 600; i++)); do
    record=$(jq -c --arg h "$2" 'select(.msg == "egress connection" and .host == $h and .decision == "denied")' \
      "$log" 2>/dev/null | head -n 1 || true)
    if [ -n "$record" ]; then
      echo "$record"
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || { cat "$log" >&2; fail "agent $1 exited before a denial"; }
    sleep 0.05
  done
  tail -n 20 "$log" >&2
  fail "agent $1 logged no denied connection to $2"
}

# --- a. The minimal firewall is enough for a job.
HUB_URL=https://hub.test:$HUB_PORT
AGENT_EXTRA_YAML="egress:
  allow:
    - {host: hub.test, port: $HUB_PORT, cidr: $HUB_IP/32}"
agent_write_config "$work/a.yaml" "$work/a" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
start_agent a
wait_for_file "$work/a/health-url" 30 "$AGENT_PID" || { cat "$work/a.log" >&2; fail "agent a did not start"; }
ready=0
for ((i = 0; i < 600; i++)); do
  if in_agent curl -fsS "$(cat "$work/a/health-url")/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$work/a.log" >&2; fail "agent a exited"; }
  sleep 0.05
done
[ "$ready" = 1 ] || { tail -n 20 "$work/a.log" >&2; fail "agent a never became ready behind the firewall"; }
job=$(hub_job_create netns-app inventory)
status=$(hub_job_wait "$job" 60) || true
[ "$status" = succeeded ] || { tail -n 30 "$work/a.log" >&2; fail "job $job status $status behind the firewall"; }
# shellcheck disable=SC2016  # $ip is jq's variable
[ -n "$(records "$work/a.log" '.msg == "egress connection" and .decision == "allowed"
    and .host == "hub.test" and .rule == "egress.allow[0]" and .address == $ip' --arg ip "$HUB_IP")" ] ||
  fail "no allowed egress record for hub.test at $HUB_IP by egress.allow[0]:" \
    "$(jq -c 'select(.msg == "egress connection")' "$work/a.log" | head -n 3)"
other=$(records "$work/a.log" '.msg == "egress connection" and .decision != "allowed"')
[ -z "$other" ] || fail "agent a was denied a connection: $(head -n 3 <<<"$other")"
stop_process "$AGENT_PID" || fail "agent a exited non-zero on SIGTERM"
"$AGENT_BIN" audit verify --dir "$work/a/audit" --public-key "$work/a/agent.pub.pem" >/dev/null ||
  fail "agent a's audit log does not verify"
hub_new_after_a=$(counter hub_new)
[ "$hub_new_after_a" -gt 0 ] || fail "the hub_new counter saw none of agent a's connections"
[ "$(counter other_v4)" = 0 ] || fail "agent a sent IPv4 packets the firewall does not allow"
[ "$(counter metadata)" = 0 ] || fail "something sent packets to 169.254.0.0/16 during the job"
echo "a. job $job succeeded behind the minimal firewall ($hub_new_after_a new connections to the hub)"

# --- b. A name that resolves to the metadata service is refused before any packet.
HUB_URL=https://metadata.test
AGENT_EXTRA_YAML="egress:
  allow:
    - {host: metadata.test, port: 443}"
agent_write_config "$work/b.yaml" "$work/b" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
start_agent b
record=$(wait_for_denial b metadata.test)
stop_process "$AGENT_PID" || fail "agent b exited non-zero on SIGTERM"
types=$("$AGENT_BIN" audit show --dir "$work/b/audit" | awk '{print $3}')
grep -qx egress.denied <<<"$types" ||
  fail "agent b's audit log has no egress.denied record"
jq -e '.rule | contains("169.254.169.254") and contains("link-local")' <<<"$record" >/dev/null ||
  fail "the denial does not name 169.254.169.254 as link-local: $record"
other=$(records "$work/b.log" '.msg == "egress connection" and .decision != "denied"')
[ -z "$other" ] || fail "agent b was allowed a connection: $(head -n 3 <<<"$other")"
[ "$(counter metadata)" = 0 ] || fail "the agent sent $(counter metadata) packets to 169.254.0.0/16"
# Control: a real connect from the same namespace is counted (and dropped).
if in_agent curl -ksS --connect-timeout 2 --max-time 3 -o /dev/null https://metadata.test/ 2>/dev/null; then
  fail "curl reached metadata.test through the firewall"
fi
sent=$(counter metadata)
[ "$sent" -gt 0 ] || fail "control: curl's connect to 169.254.169.254 was not counted; the check proves nothing"
echo "b. metadata.test refused by the agent (0 packets); curl's attempt: $sent packets, dropped"

# Control with the agent itself: told to allow 169.254.169.254 (a cidr entry),
# its real attempts are counted too, so a policy that let the address through
# would fail the check above.
AGENT_EXTRA_YAML="egress:
  allow:
    - {host: metadata.test, port: 443, cidr: 169.254.169.254/32}"
agent_write_config "$work/b2.yaml" "$work/b2" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
start_agent b2
counted=0
for ((i = 0; i < 300; i++)); do
  if [ "$(counter metadata)" -gt "$sent" ]; then
    counted=1
    break
  fi
  kill -0 "$AGENT_PID" 2>/dev/null || { tail -n 20 "$work/b2.log" >&2; fail "agent b2 exited"; }
  sleep 0.05
done
stop_process "$AGENT_PID" || true
[ "$counted" = 1 ] || fail "control: the allowed agent's connect to 169.254.169.254 was not counted"
echo "b. control: the agent allowed to reach 169.254.169.254 is counted ($(counter metadata) packets in all)"

# --- c. A private address without a cidr entry is refused before any packet.
HUB_URL=https://hub.test:$HUB_PORT
AGENT_EXTRA_YAML=""
agent_write_config "$work/c.yaml" "$work/c" "$work/secrets" inventory "$work/source.db" \
  "$work/hub/job-signing.pub.pem"
start_agent c
record=$(wait_for_denial c hub.test)
stop_process "$AGENT_PID" || fail "agent c exited non-zero on SIGTERM"
types=$("$AGENT_BIN" audit show --dir "$work/c/audit" | awk '{print $3}')
grep -qx egress.denied <<<"$types" ||
  fail "agent c's audit log has no egress.denied record"
jq -e --arg ip "$HUB_IP" '.rule | contains($ip) and contains("private (10.0.0.0/8)")' <<<"$record" >/dev/null ||
  fail "the denial does not name $HUB_IP as private: $record"
other=$(records "$work/c.log" '.msg == "egress connection" and .decision != "denied"')
[ -z "$other" ] || fail "agent c was allowed a connection: $(head -n 3 <<<"$other")"
[ "$(counter hub_new)" = "$hub_new_after_a" ] ||
  fail "agent c opened $(($(counter hub_new) - hub_new_after_a)) connections to the private address"
echo "c. hub.test ($HUB_IP) without a cidr refused by the agent (no new connection)"

stop_process "$HUB_PID" || fail "hub exited non-zero on SIGTERM"
echo "PASS netns"
