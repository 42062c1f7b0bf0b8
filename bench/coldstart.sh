#!/usr/bin/env bash
# Cold start: from exec to the first 200 from /healthz, on the embedded
# default (SQLite, dev mailbox, demo account), with a database that exists
# already (the first start creates it). Median of ROUNDS starts. Loopback
# only; each start is stopped before the next.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-11}
PORT=${PORT:-18555}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/keysmith" .
cd "$dir"
start_once() {
  KEYSMITH_ADDR=127.0.0.1:$PORT ./keysmith >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 2000); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; done
}
start_once; kill "$pid"; wait "$pid" 2>/dev/null || true # creates, migrates and seeds
for _ in $(seq 1 "$ROUNDS"); do
  t0=$(date +%s%N)
  start_once
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
done | sort -n | awk '{a[NR]=$1} END {printf "cold start to first 200: median %d ms (min %d, max %d, %d starts)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'
