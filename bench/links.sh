#!/usr/bin/env bash
# GET /api/links, paged, for a user at the link cap: fills a database with
# `apextrack dev-seed` (1 000 links sharing the clicks, 30 days), then
# measures with wrk at one connection the default page, a page of 200
# sorted by clicks of all time, and a search by name.
# Needs wrk and curl. Usage: bench/links.sh [clicks] [leads] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-1000000}
leads=${2:-50000}
duration=${3:-10}
. bench/lib.sh
need wrk curl
build
seeded_db links.db --links 1000
start_server
token=$(login seed@example.com seed-password)
sample=$(curl -sf "$base/api/links?limit=1" -H "Authorization: Bearer $token"); echo "${sample:0:300}"
for query in "" "?sortBy=clicks&limit=200" "?sortBy=name&sort=asc&offset=900" "?search=OFFER%2099"; do
    echo "== GET /api/links$query, 1 connection"
    wrk -t1 -c1 -d"${duration}s" --latency -H "Authorization: Bearer $token" "$base/api/links$query" \
        | grep -E '50%|90%|99%|Requests/sec|Non-2xx'
done
