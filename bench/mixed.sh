#!/usr/bin/env bash
# Clicks under load while the dashboard is in use: the click p99 at 32
# keep-alive connections alone, then while 8 clients poll
# /api/dashboard-data and one pulls the biggest CSV report (10 000 rows by
# sub_id, over 30 days) again and again, on a database seeded with a
# million clicks. Target: the p99 with readers at most twice the p99 alone.
# Needs wrk and curl. Usage: bench/mixed.sh [clicks] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-1000000}
duration=${2:-10}
for tool in wrk curl; do
    command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
cargo build --release --quiet
bin=$PWD/target/release/apextrack
work=$(mktemp -d)
apex_pid=
readers=()
trap 'kill $apex_pid "${readers[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export APEXTRACK_DATABASE_PATH=$work/mixed.db
"$bin" dev-seed --email bench@example.com --clicks "$clicks" --leads 50000 --days 30 --sub-ids 20000 >/dev/null 2>&1
port=$((20000 + RANDOM % 10000))
export APEXTRACK_SERVER_BIND=127.0.0.1:$port
"$bin" serve 2>/dev/null &
apex_pid=$!
base=http://127.0.0.1:$port
until curl -sf "$base/api/health" >/dev/null; do sleep 0.05; done
token=$(curl -sf "$base/api/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"seed-password","device_name":"bench"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
curl -sf "$base/api/links" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"Bench","url":"https://shop.example/p?cid={clickid}","slug":"bench"}' >/dev/null
ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1'
p99() { wrk -t1 -c32 -d"${duration}s" --latency -H "User-Agent: $ua" "$base/go/bench?sub_id=s1" | awk '$1 == "99%" {print $2}'; }
alone=$(p99)
from=$(date -u -d '-30 days' +%F); to=$(date -u +%F)
for _ in $(seq 8); do
    (while :; do curl -s -o /dev/null -H "Authorization: Bearer $token" "$base/api/dashboard-data"; done) &
    readers+=($!)
done
(while :; do
    curl -s -o "$work/report.csv" -H "Authorization: Bearer $token" \
        "$base/api/reports?group_by=sub_id&from=$from&to=$to&limit=10000&format=csv"
done) &
readers+=($!)
sleep 1
with=$(p99)
kill "${readers[@]}" 2>/dev/null || true
rows=$(($(wc -l < "$work/report.csv") - 1))
echo "click p99 at 32 keep-alive connections: $alone alone, $with while 8 clients poll the dashboard and one pulls a $rows-row CSV report"
