# What the benchmarks share; sourced from the checkout's root.

# need TOOL...: stops with a clear message when one is missing.
need() {
    for tool; do
        command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
    done
}

# build: the release binary, as $bin; BIN=path measures that binary instead
# (another build, to compare).
build() {
    if [ -n "${BIN:-}" ]; then
        bin=$(realpath "$BIN")
        return
    fi
    cargo build --release --quiet
    bin=$PWD/target/release/apextrack
}

# seeded_db NAME [dev-seed args...]: a database of `apextrack dev-seed`
# ($clicks clicks, $leads leads, and the args) in $work (BENCH_DIR keeps it
# between runs), as APEXTRACK_DATABASE_PATH; removed at exit unless kept.
seeded_db() {
    local name=$1; shift
    work=${BENCH_DIR:-$(mktemp -d)}
    apex_pid=
    trap 'kill $apex_pid 2>/dev/null || true; [ -n "${BENCH_DIR:-}" ] || rm -rf "$work"' EXIT
    export APEXTRACK_DATABASE_PATH=$work/$name
    if [ ! -f "$work/$name" ]; then
        "$bin" dev-seed --clicks "$clicks" --leads "$leads" "$@" 2>/dev/null
    fi
    echo "database: $(du -h "$work/$name" | cut -f1)"
}

# start_server: `apextrack serve` on a free port, on APEXTRACK_DATABASE_PATH
# (its log to $SERVER_LOG if set);
# sets $apex_pid, $port and $base and returns once it answers.
start_server() {
    port=$((20000 + RANDOM % 10000))
    export APEXTRACK_SERVER_BIND=127.0.0.1:$port
    "$bin" serve 2>${SERVER_LOG:-/dev/null} &
    apex_pid=$!
    base=http://127.0.0.1:$port
    until curl -sf "$base/api/health" >/dev/null; do sleep 0.05; done
}

# login EMAIL PASSWORD: prints a token.
login() {
    curl -sf "$base/api/login" -H 'Content-Type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"$2\",\"device_name\":\"bench\"}" | sed 's/.*"token":"\([^"]*\)".*/\1/'
}

# bench_link TOKEN: a link with the slug "bench".
bench_link() {
    curl -sf "$base/api/links" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
        -d '{"name":"Bench","url":"https://shop.example/p?cid={clickid}","slug":"bench"}' >/dev/null
}

ua='Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1'

# click_p99 SECONDS QUERY: the click redirect's p99 at 32 keep-alive connections.
click_p99() {
    wrk -t1 -c32 -d"$1s" --latency -H "User-Agent: $ua" "$base/go/bench?$2" | awk '$1 == "99%" {print $2}'
}
