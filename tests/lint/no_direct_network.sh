#!/usr/bin/env bash
# Every outbound connection of the agent goes through src/agent/egress. This
# fails when agent code outside that folder calls libcurl, connect(), or an
# HTTP client directly. Database drivers will receive checked addresses
# from the egress layer instead of resolving and connecting on their own.
# Tests and test-only programs (*_test.cpp, testing/) are exempt: the job
# worker's sandbox tests must try forbidden connections to prove they fail.
# Usage: no_direct_network.sh SOURCE_DIR
set -euo pipefail
src=$1/src/agent
pattern='\bcurl_easy_(init|perform)\b|\bcurl_multi_|(^|[^_[:alnum:]:.>])(::)?connect[[:space:]]*\(|\bgetaddrinfo[[:space:]]*\(|httplib::(SSL)?Client\b|\bPQconnect|\bmysql_real_connect\b'
# A database driver connects from inside the job worker, but only to the
# address the supervisor checked against the egress policy: the PostgreSQL
# connector may call PQconnectdbParams, and must pass that address as
# hostaddr (so libpq never resolves a name); checked below. The MariaDB
# connector may call mysql_real_connect with source.address, and connect()
# once in dial(), whose sockaddr is built from source.address by inet_pton
# (its verify-full certificate pre-check).
hits=$(grep -rnE "$pattern" "$src" --include='*.cpp' --include='*.h' |
  grep -v "^$src/egress/" | grep -v '_test\.cpp:' | grep -v '/testing/' |
  grep -vE "^$src/connectors/postgres_connector\.cpp:[0-9]+:.*\bPQconnectdbParams\(" |
  grep -vE "^$src/connectors/mariadb_connector\.cpp:[0-9]+:[[:space:]]*if \((::connect\(fd, |mysql_real_connect\(m, source\.address\.c_str\(\))" || true)
if [ -n "$hits" ]; then
  echo "direct network calls outside src/agent/egress:" >&2
  echo "$hits" >&2
  exit 1
fi
if grep -q 'PQconnectdbParams' "$src/connectors/postgres_connector.cpp" &&
  ! grep -q '"hostaddr"' "$src/connectors/postgres_connector.cpp"; then
  echo "postgres_connector.cpp connects without hostaddr (the egress-checked address)" >&2
  exit 1
fi
# The check itself must be able to fail: it has to see the egress layer's own calls.
grep -rqE "$pattern" "$src/egress" --include='*.cpp' || { echo "lint pattern matched nothing in egress/" >&2; exit 1; }
echo "PASS no direct network calls outside egress"
