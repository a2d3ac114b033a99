#!/usr/bin/env bash
# POST /api/conversions/import with 50 000 rows (a month of a network's
# export): the time of a dry run and of the import, and the click redirect's
# p99 while the import runs against its p99 alone.
# Needs wrk, curl and python3. Usage: bench/import.sh [rows] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-50000}
duration=${2:-10}
. bench/lib.sh
need wrk curl python3
build
work=$(mktemp -d)
apex_pid=
trap 'kill $apex_pid 2>/dev/null || true; rm -rf "$work"' EXIT
export APEXTRACK_DATABASE_PATH=$work/import.db
"$bin" user create --name Bench --email bench@example.com --password bench-password --verified >/dev/null
start_server
token=$(login bench@example.com bench-password)
bench_link "$token"
# One click per row, each clickid taken from its redirect.
python3 - "$port" "$rows" > "$work/import.csv" <<'PY'
import http.client, sys
port, rows = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
print("clickid,status,payout,txid")
for i in range(rows):
    conn.request("GET", f"/go/bench?sub_id=s{i % 300}", headers={"User-Agent": f"bench-{i}"})
    r = conn.getresponse(); r.read()
    clickid = r.getheader("Location").split("cid=")[1].split("&")[0]
    print(f"{clickid},{'approved' if i % 3 else 'pending'},{1 + i % 7}.25,net-{i}")
PY
echo "file: $(wc -l < "$work/import.csv") lines, $(du -h "$work/import.csv" | cut -f1)"
post() {
    curl -s -o "$work/answer.json" -w '%{time_total}' -X POST "$base/api/conversions/import$1" \
        -H "Authorization: Bearer $token" -H 'Content-Type: text/csv' --data-binary @"$work/import.csv"
}
echo "dry run: $(post '?dry_run=1') s; $(head -c 120 "$work/answer.json")"
alone=$(click_p99 "$duration" "sub_id=bench")
# The import again, this time for real, while wrk clicks for the same span.
(sleep 1; post '' > "$work/import.time") &
importer=$!
during=$(click_p99 "$duration" "sub_id=bench")
wait $importer
echo "import: $(cat "$work/import.time") s; $(head -c 120 "$work/answer.json")"
echo "click p99 at 32 keep-alive connections: $alone alone, $during while the import ran"
echo "again (all unchanged): $(post '') s; $(head -c 120 "$work/answer.json")"
