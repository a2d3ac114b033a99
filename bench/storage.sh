#!/usr/bin/env bash
# Bytes per stored click, indexes and lookup tables included, over a
# million clicks with realistic values (a ~130-character User-Agent out of
# a few hundred, two sub_ids, a random IPv4 address), seeded by
# `apextrack dev-seed` into the same rows the click path writes; then the
# click path's p99 at 32 keep-alive connections, alone and while
# `apextrack purge` deletes most of those clicks.
# Needs wrk and sqlite3 (Debian: apt-get install wrk sqlite3).
# Usage: bench/storage.sh [clicks] [seconds per load run]
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-1000000}
duration=${2:-10}
. bench/lib.sh
need wrk sqlite3 curl
build
work=$(mktemp -d)
trap 'kill $apex_pid 2>/dev/null || true; rm -rf "$work"' EXIT
apex_pid=
export APEXTRACK_DATABASE_PATH=$work/storage.db
"$bin" dev-seed --clicks "$clicks" --leads 0 --days 30 --links 10 --sub-ids 200 >/dev/null 2>&1
db=$APEXTRACK_DATABASE_PATH
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
# dbstat counts every page of each b-tree, used or not: what the file holds.
read -r rows bytes < <(sqlite3 -separator ' ' "$db" "
    SELECT (SELECT count(*) FROM clicks),
           (SELECT sum(pgsize) FROM dbstat WHERE name IN ('clicks', 'clicks_user_time', 'user_agents',
               'sqlite_autoindex_user_agents_1', 'click_values', 'sqlite_autoindex_click_values_1'))")
table=$(sqlite3 "$db" "SELECT sum(pgsize) FROM dbstat WHERE name = 'clicks'")
index=$(sqlite3 "$db" "SELECT sum(pgsize) FROM dbstat WHERE name = 'clicks_user_time'")
ua_len=$(sqlite3 "$db" "SELECT avg(length(text)) FROM user_agents")
awk -v n="$rows" -v all="$bytes" -v t="$table" -v i="$index" -v ua="$ua_len" 'BEGIN {
    printf "storage: %d clicks, %.1f bytes per click (table %.1f, time index %.1f, interned User-Agents and sub values %.1f); User-Agents average %.0f characters\n",
        n, all / n, t / n, i / n, (all - t - i) / n, ua }' 

# The click path's p99, alone and while a purge runs.
"$bin" user create --name Bench --email bench@example.com --password bench-password --verified >/dev/null
start_server
bench_link "$(login bench@example.com bench-password)"
p99() { click_p99 "$duration" 'sub_id=s1&sub2=tiktok'; }
alone=$(p99)
before=$(date -u -d '-2 days' +%F)
"$bin" purge --before "$before" > "$work/purge.out" 2>&1 &
purge_pid=$!
during=$(p99)
wait $purge_pid
echo "purge: $(tail -1 "$work/purge.out")"
echo "click p99 at 32 keep-alive connections: $alone alone, $during during the purge"
