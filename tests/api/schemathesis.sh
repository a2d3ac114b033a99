#!/usr/bin/env bash
# Validates GET /api/openapi.json as OpenAPI 3.1, then runs schemathesis
# against the running server with a verified user's token: no 5xx, every
# status, content type and body as documented. Usage: schemathesis.sh BINARY [EXAMPLES]
set -euo pipefail
bin=$(realpath "$1")
examples=${2:-60}
python3 -m pip install -q --disable-pip-version-check schemathesis openapi-spec-validator 2>&1 | grep -v -i warning || true
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export APEXTRACK_SERVER_BIND=127.0.0.1:$port APEXTRACK_DATABASE_PATH=$work/st.db APEXTRACK_SECURITY_LOGIN_MAX_ATTEMPTS=1000
# Telegram at a closed local port: a fuzzed "send test" answers at once, and calls nobody.
export APEXTRACK_NOTIFY_TELEGRAM_API=http://127.0.0.1:9 APEXTRACK_MONITOR_INTERVAL_MINUTES=0
unset APEXTRACK_CONFIG
cd "$work"
"$bin" user create --name Fuzz --email fuzz@example.com --password fuzz-password --verified >/dev/null
"$bin" serve 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
base=http://127.0.0.1:$port
token=$(python3 - "$base" <<'PY'
import json, sys, time, urllib.request
base = sys.argv[1]
for _ in range(100):
    try:
        urllib.request.urlopen(f"{base}/api/health"); break
    except Exception:
        time.sleep(0.1)
doc = json.load(urllib.request.urlopen(f"{base}/api/openapi.json"))
from openapi_spec_validator import validate
validate(doc)
req = urllib.request.Request(f"{base}/api/login", data=json.dumps(
    {"email": "fuzz@example.com", "password": "fuzz-password", "device_name": "schemathesis"}).encode(),
    headers={"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(req))["token"]
# A link with id 1 (the documented example id), so operations on a link reach a real one.
req = urllib.request.Request(f"{base}/api/links", data=json.dumps(
    {"name": "Fuzzed", "url": "https://offer.example/?c={clickid}"}).encode(),
    headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
assert json.load(urllib.request.urlopen(req))["data"]["id"] == 1
print(token)
PY
)
echo "openapi: the document is valid OpenAPI 3.1"
st run "$base/api/openapi.json" -H "Authorization: Bearer $token" --seed 1 --max-examples "$examples" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --exclude-path /api/logout > "$work/st.out" 2>&1 || { cat "$work/st.out"; exit 1; }
cases=$(awk '$2 == "generated," {print $1; exit}' "$work/st.out")
grep -E "Tested:|[0-9]+ generated" "$work/st.out"
[ "${cases:-0}" -ge 2000 ] || { echo "schemathesis ran only ${cases:-0} cases"; exit 1; }
echo "schemathesis: $cases cases, no failures"
