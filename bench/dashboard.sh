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
. bench/lib.sh
need wrk curl
build
seeded_db dashboard.db
start_server
token=$(login seed@example.com seed-password)
sample=$(curl -sf "$base/api/dashboard-data" -H "Authorization: Bearer $token"); echo "${sample:0:300}"
for c in 1 8; do
    echo "== GET /api/dashboard-data, $c connection(s)"
    wrk -t1 -c$c -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/dashboard-data" \
        | grep -E 'Latency  |50%|90%|99%|Requests/sec|Non-2xx'
done
echo "== GET /api/reports?group_by=sub_id, 1 connection"
wrk -t1 -c1 -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/reports?group_by=sub_id" \
    | grep -E '50%|99%|Requests/sec'
echo "RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$apex_pid/status)"
