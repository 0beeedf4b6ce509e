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
# shellcheck source=lib/daemon.sh
source "$(dirname "$0")/lib/daemon.sh"

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
    wait_ready "$pid" "$pidfile" "$log" "the adapter on port $port" "$START_TIMEOUT" pings "$port"
    echo "http://127.0.0.1:$port"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" "${3:-}" ;;
    stop) stop_started clickhouse 200 "${2:-}" ;;
    *) die "usage: $0 install | start PORT [DIR] | stop [PORT]" ;;
esac
