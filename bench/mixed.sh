#!/usr/bin/env bash
# Clicks under load while the dashboard is in use: the click p99 at 32
# keep-alive connections alone, then while 8 clients poll
# /api/dashboard-data (each once a second, as eight open dashboards
# refreshing faster than the UI does) and one pulls the biggest CSV report
# (10 000 rows by sub_id, over 30 days) again and again, on a database
# seeded with a million clicks. Target: the p99 with readers at most twice
# the p99 alone.
# Needs wrk and curl. Usage: bench/mixed.sh [clicks] [seconds]; SUB_IDS=200 for fewer sub_ids (default 20 000), CSV_LIMIT for smaller CSV reports (default 10 000 rows).
set -euo pipefail
cd "$(dirname "$0")/.."
clicks=${1:-1000000}
duration=${2:-10}
. bench/lib.sh
need wrk curl
build
work=$(mktemp -d)
apex_pid=
readers=()
trap 'kill $apex_pid "${readers[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export APEXTRACK_DATABASE_PATH=$work/mixed.db
"$bin" dev-seed --email bench@example.com --clicks "$clicks" --leads 50000 --days 30 --sub-ids "${SUB_IDS:-20000}" >/dev/null 2>&1
start_server
token=$(login bench@example.com seed-password)
bench_link "$token"
p99() { click_p99 "$duration" 'sub_id=s1'; }
alone=$(p99)
from=$(date -u -d '-30 days' +%F); to=$(date -u +%F)
# The readers: one process, keep-alive connections, no process per request.
cat > "$work/readers.py" <<'PY'
import http.client, sys, threading, time
host, port, token, csv_path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
end = time.time() + seconds
dash, csv, rows = [], [], [0]
failed = [0]
def get(conn, path):
    t = time.time()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        failed[0] += 1
    return time.time() - t, body
def poller():
    conn = http.client.HTTPConnection(host, port, timeout=30)
    while time.time() < end:
        dash.append(get(conn, "/api/dashboard-data")[0])
        time.sleep(1)
def puller():
    conn = http.client.HTTPConnection(host, port, timeout=60)
    while time.time() < end:
        took, body = get(conn, csv_path)
        csv.append(took)
        rows[0] = body.count(b"\n") - 1
import os
threads = [threading.Thread(target=poller) for _ in range(int(os.environ.get("DASHBOARDS", "8")))] + \
    [threading.Thread(target=puller) for _ in range(int(os.environ.get("CSV_CLIENTS", "1")))]
for t in threads: t.start()
for t in threads: t.join()
med = lambda xs: sorted(xs)[len(xs) // 2] * 1000 if xs else 0
print(f"readers: dashboard-data median {med(dash):.1f} ms ({len(dash)} calls), {rows[0]}-row CSV report median {med(csv):.1f} ms ({len(csv)} pulls), {failed[0]} answers not 200")
PY
nice -n 10 python3 "$work/readers.py" 127.0.0.1 "$port" "$token" \
    "/api/reports?group_by=sub_id&from=$from&to=$to&limit=${CSV_LIMIT:-10000}&format=csv" "$((duration + 2))" > "$work/readers.out" &
readers+=($!)
(peak=0; while [ ! -e "$work/done" ]; do
    size=$(stat -c %s "$APEXTRACK_DATABASE_PATH-wal" 2>/dev/null || echo 0)
    [ "$size" -gt "$peak" ] && peak=$size && echo "$peak" > "$work/wal.peak"
    sleep 0.2
done) &
sampler=$!
sleep 1
with=$(p99)
touch "$work/done"
wait $sampler
wait "${readers[@]}" 2>/dev/null || true
echo "click p99 at 32 keep-alive connections: $alone alone, $with while 8 clients poll the dashboard and one pulls the biggest CSV report"
cat "$work/readers.out"
echo "WAL peak while readers ran: $(( $(cat "$work/wal.peak" 2>/dev/null || echo 0) / 1048576 )) MiB"
