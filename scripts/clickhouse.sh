#!/usr/bin/env bash
# ClickHouse for tests and `up --analytics`: chDB (the ClickHouse engine in-process, from
# PyPI's chdb-core) behind analytics/adapter/chdb_http.py, which speaks ClickHouse's HTTP
# interface. The scale-out stack (docker-compose.yml) runs the real ClickHouse server instead.
#   scripts/clickhouse.sh install             venv with chdb-core under $SHOPFLOW_CHDB_VENV if missing
#   scripts/clickhouse.sh start PORT [DIR]    serve DIR (default: a fresh temp dir) on 127.0.0.1:PORT,
#                                             wait until it answers /ping, print the URL
#   scripts/clickhouse.sh stop [PORT]         stop the adapter on PORT (default: every one started here)
set -euo pipefail

CHDB_VERSION=26.9.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${SHOPFLOW_CHDB_VENV:-$HOME/.cache/shopflow/chdb-venv}"
RUN="${SHOPFLOW_RUN:-$HOME/.cache/shopflow/run}"
START_TIMEOUT="${SHOPFLOW_CLICKHOUSE_TIMEOUT:-60}"

die() { echo "clickhouse.sh: $*" >&2; exit 1; }

install() {
    if "$VENV/bin/python" -c "import chdb, sys; sys.exit(chdb.__version__ != '$CHDB_VERSION')" 2>/dev/null; then
        echo "chdb-core $CHDB_VERSION: $VENV"
        return
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "chdb-core==$CHDB_VERSION"
    echo "chdb-core $CHDB_VERSION: $VENV"
}

pings() { (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && grep -q 'Ok.' <&3) 2>/dev/null; }

start() {
    local port="${1:-}" dir="${2:-}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "usage: $0 start PORT [DIR]"
    [[ -x "$VENV/bin/python" ]] || die "$VENV not found; run: $0 install"
    mkdir -p "$RUN"
    [[ -n "$dir" ]] || dir="$(mktemp -d "${TMPDIR:-/tmp}/shopflow-chdb-XXXXXX")"
    local pidfile="$RUN/clickhouse-$port.pid" log="$RUN/clickhouse-$port.log"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "an adapter started here already runs on port $port (pid $(cat "$pidfile"))"
    fi
    nohup "$VENV/bin/python" "$ROOT/analytics/adapter/chdb_http.py" --port "$port" --path "$dir" >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"
    local deadline=$((SECONDS + START_TIMEOUT))
    until pings "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"; tail -n 20 "$log" >&2 || true
            die "the adapter exited during startup (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            kill "$pid" 2>/dev/null || true; rm -f "$pidfile"
            die "the adapter did not answer on $port within ${START_TIMEOUT}s (log: $log)"
        fi
        sleep 0.05 # probe interval, not a guess at readiness
    done
    echo "http://127.0.0.1:$port"
}

stop_one() {
    local pidfile="$1" pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop() {
    if [[ -n "${1:-}" ]]; then
        [[ -f "$RUN/clickhouse-$1.pid" ]] || die "no adapter started here on port $1"
        stop_one "$RUN/clickhouse-$1.pid"
        return
    fi
    shopt -s nullglob
    for f in "$RUN"/clickhouse-*.pid; do stop_one "$f"; done
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" "${3:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: $0 install | start PORT [DIR] | stop [PORT]" ;;
esac
