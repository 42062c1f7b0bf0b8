#!/usr/bin/env bash
# Forward authentication's cost behind nginx, on loopback, in one run: the
# shipped deploy/nginx/nginx.conf (auth_request to Keysmith, then the API)
# against nginx proxying straight to the same API. The API is a third nginx
# answering a small JSON body. Needs nginx (with auth_request; Debian's
# nginx-light) and wrk. Bounded: each wrk run lasts $DURATION.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
KS=127.0.0.1:18180 API=127.0.0.1:19100 AUTHED=127.0.0.1:18188 DIRECT=127.0.0.1:18189
dir=$(mktemp -d)
chmod 755 "$dir" && mkdir -m 755 "$dir/tmp"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"' EXIT

go build -o "$dir/keysmith" .
export KEYSMITH_DATABASE_URL="$dir/keysmith.db" KEYSMITH_DEV_MAILBOX=true KEYSMITH_LOG_LEVEL=warn
"$dir/keysmith" user create --email load@example.com --password "load test password" >/dev/null
# A key per wrk run: the highest limit is 1,000,000 requests a minute, which
# one key would spend in under a minute on a fast machine (run refuses any
# answer but a 200).
newkey() { "$dir/keysmith" key create --email load@example.com --name "load $1" --permission read --rate-limit 1000000; }
key=$(newkey warm-up)
keys=()
for i in $(seq 1 "$ROUNDS"); do keys+=("$(newkey "$i")"); done
KEYSMITH_ADDR=$KS "$dir/keysmith" >/dev/null 2>&1 &
pids+=($!)

common="daemon off; worker_processes 1; error_log stderr error; events { worker_connections 1024; }"
temps="access_log off; client_body_temp_path tmp/cb; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;"
cat > "$dir/api.conf" <<CONF
$common pid api.pid;
http { $temps
  server { listen $API; location / { default_type application/json; return 200 '{"ok":true}'; } } }
CONF
cat > "$dir/direct.conf" <<CONF
$common pid direct.pid;
http { $temps
  upstream api { server $API; keepalive 32; }
  server { listen $DIRECT; location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
sed -e "s/127.0.0.1:8088/$AUTHED/; s/127.0.0.1:8080/$KS/; s/127.0.0.1:9000/$API/" deploy/nginx/nginx.conf > "$dir/authed.conf"
for c in api direct authed; do
  nginx -e stderr -p "$dir" -c "$dir/$c.conf" &
  pids+=($!)
done
for _ in $(seq 1 50); do curl -fs "http://$DIRECT/files/42" >/dev/null && curl -fs "http://$KS/healthz" >/dev/null && break; sleep 0.1; done
curl -fs -H "Authorization: Bearer $key" "http://$AUTHED/files/42" >/dev/null

run() {
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@")
  if grep -q 'Non-2xx' <<<"$out"; then echo "wrk: answers other than 200 from $*: $out" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
echo "warm-up"; wrk -t2 -c"$CONNECTIONS" -d3s -H "Authorization: Bearer $key" "http://$AUTHED/files/42" >/dev/null
direct=() authed=()
for i in $(seq 0 $((ROUNDS - 1))); do
  direct+=("$(run "http://$DIRECT/files/42")")
  authed+=("$(run -H "Authorization: Bearer ${keys[i]}" "http://$AUTHED/files/42")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(median "${direct[@]}") a=$(median "${authed[@]}")
printf 'nginx straight to the API:       %s req/s (runs: %s)\n' "$d" "${direct[*]}"
printf 'nginx with auth_request:         %s req/s (runs: %s)\n' "$a" "${authed[*]}"
awk -v a="$a" -v d="$d" 'BEGIN { printf "with forward authentication / without: %.2f\n", a / d }'
