#!/usr/bin/env bash
# The click redirect under load, side by side with nginx `return 302` (the
# ceiling of this machine), with the same wrk settings, in three modes:
# keep-alive, one new connection per click, and keep-alive with distinct
# visitors (a new address and User-Agent on every click); for a link with
# one URL (part one) and for a smart link with 5 offers, 1 lander and 5
# rules (TARGETS="nginx smart" for one of them). Each mode runs 3 times;
# medians are reported, plus the server CPU time per click and a check that
# every 302 left a committed click row.
# Needs wrk, nginx and sqlite3 (Debian: apt-get install wrk nginx-light sqlite3).
# Usage: bench/click.sh [seconds per run] [runs]; MODES="visitors" for one mode;
# BIN=path to measure another build.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
runs=${2:-3}
. bench/lib.sh
need wrk nginx sqlite3 curl
build
work=$(mktemp -d)
trap 'kill $apex_pid 2>/dev/null || true; nginx -p "$work/nginx" -c nginx.conf -s stop 2>/dev/null || true; rm -rf "$work"' EXIT

apex_port=$((20000 + RANDOM % 10000)); nginx_port=$((apex_port + 1))
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 302 https://shop.example/p?cid=x; }
    }
}
NGINX
nginx -p "$work/nginx" -c nginx.conf

export APEXTRACK_SERVER_BIND=127.0.0.1:$apex_port APEXTRACK_DATABASE_PATH=$work/bench.db
export APEXTRACK_SERVER_TRUSTED_PROXIES=127.0.0.1
[ -n "${THREADS:-}" ] && export APEXTRACK_SERVER_THREADS=$THREADS
"$bin" user create --name Bench --email bench@example.com --password bench-password --verified >/dev/null
"$bin" serve 2>/dev/null &
apex_pid=$!
base=http://127.0.0.1:$apex_port
until curl -sf "$base/api/health" >/dev/null; do sleep 0.05; done
token=$(curl -sf "$base/api/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password","device_name":"bench"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
slug=$(curl -sf "$base/api/links" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"Bench","url":"https://shop.example/p?cid={clickid}&s={sub_id}","slug":"bench"}' | sed 's/.*"slug":"\([^"]*\)".*/\1/')
apex_url="$base/go/$slug?sub_id=campaign-7"
# The smart link: five offers by weight (one capped), a lander, five rules
# that most clicks test and pass over (so the weights decide).
targets=${TARGETS:-nginx apextrack smart}
if [[ " $targets " == *" smart "* ]]; then
smart_id=$(curl -sf "$base/api/links" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"Smart","url":"https://shop.example/p?cid={clickid}","slug":"smart"}' | sed 's/.*"id":\([0-9]*\).*/\1/')
curl -sf -X PUT "$base/api/links/$smart_id/routing" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{
  "destinations": [
    {"name": "A", "url": "https://a.example/p?cid={clickid}&s={sub_id}&d={destination}", "weight": 300},
    {"name": "B", "url": "https://b.example/p?cid={clickid}&s={sub_id}&os={os}", "weight": 200, "daily_cap": 1000},
    {"name": "C", "url": "https://c.example/p?cid={clickid}", "weight": 100},
    {"name": "D", "url": "https://d.example/p?cid={clickid}", "weight": 100},
    {"name": "E", "url": "https://e.example/p?cid={clickid}", "weight": 50},
    {"kind": "lander", "name": "L", "url": "https://lp.example/?next={click_url}", "weight": 100}
  ],
  "rules": [
    {"name": "de", "if": {"country": ["DE", "AT", "CH"]}, "to": ["C"]},
    {"name": "tiktok", "if": {"param": {"sub2": ["tiktok"]}}, "to": ["L"]},
    {"name": "night bots", "if": {"device": ["bot"], "hour": {"from": 23, "to": 5}}, "to": ["E"]},
    {"name": "english ios", "if": {"language": ["en"], "os": ["ios"], "device": ["tablet"]}, "to": ["D"]},
    {"name": "repeat", "if": {"unique": false, "param": {"sub3": ["retarget"]}}, "to": ["B"]}
  ],
  "fallback_url": "https://fallback.example/"
}' >/dev/null
fi
smart_url="$base/go/smart?sub_id=campaign-7"
nginx_url="http://127.0.0.1:$nginx_port/go/bench?sub_id=campaign-7"
ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1'

clicks() { sqlite3 "$work/bench.db" "SELECT count(*) FROM clicks" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$apex_pid/stat; }

# run LABEL URL PORT [wrk args...] -> prints "rps p50 p99"
run() {
    local url=$1 port=$2; shift 2
    local uah=(-H "User-Agent: $ua")
    [ "${mode:-}" = visitors ] && uah=()   # the script sets one per request
    wrk -t1 -c32 -d"${duration}s" --latency "${uah[@]}" "$@" "$url" > "$work/wrk.out"
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    echo "$rps $p50 $p99"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Distinct visitors: every click from another address (through the trusted
# proxy's X-Forwarded-For) with one of a few hundred realistic User-Agents,
# so each is unique and fingerprints, User-Agents and rows all grow.
cat > "$work/visitors.lua" <<'LUA'
math.randomseed(7)
-- 300 User-Agents of about 140 characters: a day's traffic repeats a few hundred.
local agents = {}
for i = 1, 300 do
    agents[i] = "Mozilla/5.0 (Linux; Android " .. (10 + i % 5) .. "; SM-A" .. (100 + i) ..
        "E Build/UP1A.231005.007) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" .. (110 + i % 20) ..
        ".0.6099." .. (i % 50) .. " Mobile Safari/537.36"
end
request = function()
    local ip = math.random(11, 220) .. "." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
    return wrk.format("GET", nil, { ["X-Forwarded-For"] = ip, ["User-Agent"] = agents[math.random(1, 300)] })
end
LUA

for mode in ${MODES:-keepalive close visitors}; do
    extra=()
    [ $mode = close ] && extra=(-H 'Connection: close')
    [ $mode = visitors ] && extra=(-s "$work/visitors.lua")
    for target in $targets; do
        results=()
        for _ in $(seq "$runs"); do
            if [ $target = nginx ]; then
                results+=("$(run "$nginx_url" "$nginx_port" "${extra[@]}")")
            else
                url=$apex_url; [ $target = smart ] && url=$smart_url
                before_rows=$(clicks); before_cpu=$(cpu_ticks)
                line=$(run "$url" "$apex_port" "${extra[@]}")
                after_cpu=$(cpu_ticks); after_rows=$(clicks)
                total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
                non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.out"); non2xx=${non2xx:-0}
                rows=$((after_rows - before_rows))
                # wrk counts 302 as "Non-2xx or 3xx"? no: 3xx count as success. Rows must match responses.
                cpu_us=$(awk -v t=$((after_cpu - before_cpu)) -v n=$rows -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print 0 }')
                # Rows may pass responses by the clicks in flight when wrk stopped (at most one per connection).
                committed="every 302 committed"; [ "$rows" -ge "$total" ] || committed="MISSING $((total - rows)) rows"
                echo "  $target $mode run: $line req/s p50 p99; $rows click rows for $total responses ($committed); ${cpu_us} us CPU/click" >&2
                results+=("$line $cpu_us")
            fi
        done
        rps=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | median)
        p50=$(printf '%s\n' "${results[@]}" | awk '{print $2}' | median)
        p99=$(printf '%s\n' "${results[@]}" | awk '{print $3}' | median)
        cpu=$(printf '%s\n' "${results[@]}" | awk '{print $4}' | median)
        echo "$mode $target rps=$rps p50=$p50 p99=$p99 ${cpu:+cpu_us_per_click=$cpu}"
        eval "${target}_${mode}=$rps"
    done
    for target in $targets; do
        [ $target = nginx ] && continue
        awk -v a="$(eval echo \$${target}_$mode)" -v n="$(eval echo \${nginx_$mode:-0})" -v m=$mode -v t=$target \
            'BEGIN { if (n > 0) printf "%s: %s at %.0f%% of nginx\n", m, t, 100 * a / n }'
    done
done
echo "RSS of apextrack after the click runs: $(awk '/VmRSS/ {print $2, $3}' /proc/$apex_pid/status)"

# Conversion postbacks, each with a new transaction id, on one click.
clickid=$(curl -s -o /dev/null -w '%{redirect_url}' -A "$ua" "$apex_url" | sed 's/.*cid=\([^&]*\).*/\1/')
secret=$(curl -sf "$base/api/user" -H "Authorization: Bearer $token" | sed 's/.*secret=\([^"]*\)".*/\1/')
cat > "$work/postback.lua" <<LUA
counter = 0
request = function()
    counter = counter + 1
    return wrk.format("GET", "/api/postback/conversion?clickid=$clickid&status=pending&payout=1.50&secret=$secret&txid=" .. counter)
end
LUA
wrk -t1 -c32 -d"${duration}s" --latency -s "$work/postback.lua" "$base" > "$work/wrk.out"
leads=$(sqlite3 "$work/bench.db" "SELECT count(*) FROM leads")
echo "postbacks: $(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") req/s, p50 $(awk '$1 == "50%" {print $2}' "$work/wrk.out"), p99 $(awk '$1 == "99%" {print $2}' "$work/wrk.out"); $leads leads stored"
echo "RSS of apextrack at the end: $(awk '/VmRSS/ {print $2, $3}' /proc/$apex_pid/status)"
