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
for tool in wrk sqlite3 curl; do
    command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
cargo build --release --quiet
bin=$PWD/target/release/apextrack
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
port=$((20000 + RANDOM % 10000))
export APEXTRACK_SERVER_BIND=127.0.0.1:$port
"$bin" user create --name Bench --email bench@example.com --password bench-password --verified >/dev/null
"$bin" serve 2>/dev/null &
apex_pid=$!
base=http://127.0.0.1:$port
until curl -sf "$base/api/health" >/dev/null; do sleep 0.05; done
token=$(curl -sf "$base/api/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password","device_name":"bench"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
curl -sf "$base/api/links" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"Bench","url":"https://shop.example/p?cid={clickid}","slug":"bench"}' >/dev/null
ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1'
p99() { wrk -t1 -c32 -d"${duration}s" --latency -H "User-Agent: $ua" "$base/go/bench?sub_id=s1&sub2=tiktok" | awk '$1 == "99%" {print $2}'; }
alone=$(p99)
before=$(date -u -d '-2 days' +%F)
"$bin" purge --before "$before" > "$work/purge.out" 2>&1 &
purge_pid=$!
during=$(p99)
wait $purge_pid
echo "purge: $(tail -1 "$work/purge.out")"
echo "click p99 at 32 keep-alive connections: $alone alone, $during during the purge"
