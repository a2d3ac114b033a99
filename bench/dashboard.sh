#!/usr/bin/env bash
# GET /api/dashboard-data against a big database: fills one with
# `apextrack dev-seed` (default 10 million clicks, 500 000 leads over 30
# days), then measures the dashboard with wrk: one client (latency) and 8.
# Needs wrk and curl. Usage: bench/dashboard.sh [clicks] [leads] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-10000000}
leads=${2:-500000}
duration=${3:-10}
cargo build --release --quiet
bin=$PWD/target/release/apextrack
work=${BENCH_DIR:-$(mktemp -d)}
trap 'kill $pid 2>/dev/null || true; [ -n "${BENCH_DIR:-}" ] || rm -rf "$work"' EXIT
port=$((30000 + RANDOM % 10000))
export APEXTRACK_SERVER_BIND=127.0.0.1:$port APEXTRACK_DATABASE_PATH=$work/dashboard.db
if [ ! -f "$work/dashboard.db" ]; then
    "$bin" dev-seed --clicks "$clicks" --leads "$leads" 2>/dev/null
fi
echo "database: $(du -h "$work/dashboard.db" | cut -f1)"
"$bin" serve 2>/dev/null &
pid=$!
base=http://127.0.0.1:$port
until curl -sf "$base/api/health" >/dev/null; do sleep 0.05; done
token=$(curl -sf "$base/api/login" -H 'Content-Type: application/json' \
    -d '{"email":"seed@example.com","password":"seed-password","device_name":"bench"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
sample=$(curl -sf "$base/api/dashboard-data" -H "Authorization: Bearer $token"); echo "${sample:0:300}"
for c in 1 8; do
    echo "== GET /api/dashboard-data, $c connection(s)"
    wrk -t1 -c$c -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/dashboard-data" \
        | grep -E 'Latency  |50%|90%|99%|Requests/sec|Non-2xx'
done
echo "== GET /api/reports?group_by=sub_id, 1 connection"
wrk -t1 -c1 -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/reports?group_by=sub_id" \
    | grep -E '50%|99%|Requests/sec'
echo "RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
