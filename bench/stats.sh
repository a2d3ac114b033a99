#!/usr/bin/env bash
# GET /api/links/{id}/stats on a smart link with 10 million clicks: fills a
# database with `apextrack dev-seed` (one link, five offers splitting the
# clicks, 500 000 leads over 30 days), then measures the stats with wrk at
# one connection, over all time and over the last 7 days.
# Needs wrk and curl. Usage: bench/stats.sh [clicks] [leads] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-10000000}
leads=${2:-500000}
duration=${3:-10}
. bench/lib.sh
need wrk curl
build
seeded_db stats.db --links 1 --offers 5
start_server
token=$(login seed@example.com seed-password)
id=$(curl -sf "$base/api/links" -H "Authorization: Bearer $token" | sed 's/.*"id":\([0-9]*\).*/\1/')
sample=$(curl -sf "$base/api/links/$id/stats" -H "Authorization: Bearer $token"); echo "${sample:0:400}"
from=$(date -u -d '6 days ago' +%F); to=$(date -u +%F)
for range in "" "?from=$from&to=$to"; do
    echo "== GET /api/links/$id/stats$range, 1 connection"
    wrk -t1 -c1 -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/links/$id/stats$range" \
        | grep -E '50%|90%|99%|Requests/sec|Non-2xx'
done
