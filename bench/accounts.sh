#!/usr/bin/env bash
# Measures the accounts foundation on this machine, with a release build:
#   - idle RSS of `apextrack serve`
#   - time from exec to the first answered request (median of 7 starts)
#   - GET /api/user and POST /api/login under 32 connections (wrk -t1 -c32 -d10s),
#     keep-alive and one new connection per request.
# Needs wrk and curl (Debian: apt-get install wrk curl). Usage: bench/accounts.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/apextrack
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
export APEXTRACK_SERVER_BIND=127.0.0.1:$port APEXTRACK_DATABASE_PATH=$work/bench.db
base=http://127.0.0.1:$port

start() {
    "$bin" serve 2>"$work/serve.log" &
    pid=$!
    until curl -sf "$base/api/health" >/dev/null; do sleep 0.001; done
}

echo "== start-up: exec to first answered GET /api/health (7 runs)"
times=()
for _ in 1 2 3 4 5 6 7; do
    t0=$(date +%s%N); start; t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
    kill -TERM $pid; wait $pid || true
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms (min %.1f, max %.1f)\n", a[int((NR+1)/2)]/1000, a[1]/1000, a[NR]/1000}'

start
sleep 1
echo "== idle RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"

curl -sf "$base/api/register" -H 'Content-Type: application/json' \
    -d '{"name":"Bench","email":"bench@example.com","password":"bench-password","password_confirmation":"bench-password"}' >/dev/null
token=$(curl -sf "$base/api/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password","device_name":"bench"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')

cat > "$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"bench-password","device_name":"bench"}'
LUA

run() { # label, wrk args...
    local label=$1; shift
    echo "== $label"
    wrk -t1 -c32 -d"${duration}s" --latency "$@" | grep -E 'Latency  |50%|90%|99%|Requests/sec|Non-2xx|Socket errors'
}
run "GET /api/user, keep-alive" -H "Authorization: Bearer $token" "$base/api/user"
run "GET /api/user, new connection per request" -H "Authorization: Bearer $token" -H 'Connection: close' "$base/api/user"
run "POST /api/login, keep-alive" -s "$work/login.lua" "$base/api/login"
run "POST /api/login, new connection per request" -s "$work/login.lua" -H 'Connection: close' "$base/api/login"
echo "== RSS after load: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
