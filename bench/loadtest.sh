#!/usr/bin/env bash
# Load test on loopback, one server, one run: GET /v1/auth/test with a valid
# key, and a reverse proxy's question about GET /files/42 (/v1/authz,
# forward authentication), against GET /healthz (no authentication)
# through the same middleware.
# Needs wrk (apt-get install -y wrk). Bounded: each wrk run lasts $DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18080}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

go build -o "$dir/keysmith" .
export KEYSMITH_DATABASE_URL="$dir/keysmith.db" KEYSMITH_DEV_MAILBOX=true KEYSMITH_LOG_LEVEL=warn
"$dir/keysmith" user create --email load@example.com --password "load test password" >/dev/null
ROUNDS=${ROUNDS:-3}
# A key per wrk run: the highest limit is 1,000,000 requests a minute, which
# one key would spend in under a minute on a fast machine (a 429 is not the
# path being measured; run refuses any answer but a 200).
newkey() { "$dir/keysmith" key create --email load@example.com --name "load $1" --permission read --rate-limit 1000000; }
key=$(newkey warm-up)
keys=()
for i in $(seq 1 $((2 * ROUNDS))); do keys+=("$(newkey "$i")"); done
KEYSMITH_ADDR=127.0.0.1:$PORT "$dir/keysmith" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$PORT/v1/auth/test" >/dev/null

run() {
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@")
  if grep -q 'Non-2xx' <<<"$out"; then echo "wrk: answers other than 200 from $*: $out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
echo "warm-up"; wrk -t2 -c"$CONNECTIONS" -d3s "http://127.0.0.1:$PORT/healthz" >/dev/null
# Alternate the two endpoints, ROUNDS times each, so that neither gains from
# going first or last; report the median of each.
noop=() auth=() authz=()
for i in $(seq 0 $((ROUNDS - 1))); do
  noop+=("$(run "http://127.0.0.1:$PORT/healthz")")
  auth+=("$(run -H "Authorization: Bearer ${keys[2 * i]}" "http://127.0.0.1:$PORT/v1/auth/test")")
  authz+=("$(run -H "Authorization: Bearer ${keys[2 * i + 1]}" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /files/42" "http://127.0.0.1:$PORT/v1/authz")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
noop_rps=$(median "${noop[@]}") auth_rps=$(median "${auth[@]}") authz_rps=$(median "${authz[@]}")
printf 'GET /healthz (no auth):          %s req/s (runs: %s)\n' "$noop_rps" "${noop[*]}"
printf 'GET /v1/auth/test (with a key):  %s req/s (runs: %s)\n' "$auth_rps" "${auth[*]}"
printf 'GET /v1/authz (a proxy asking):  %s req/s (runs: %s)\n' "$authz_rps" "${authz[*]}"
awk -v a="$auth_rps" -v n="$noop_rps" 'BEGIN { printf "authenticated / no-op: %.2f\n", a / n }'
awk -v a="$authz_rps" -v n="$noop_rps" 'BEGIN { printf "forward-auth decision / no-op: %.2f\n", a / n }'
