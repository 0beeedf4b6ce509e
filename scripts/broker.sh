#!/usr/bin/env bash
# A local Kafka-protocol broker (nisshi, in-memory storage) for tests and development.
#   scripts/broker.sh install        install nisshi into $SHOPFLOW_TOOLS if missing
#   scripts/broker.sh start PORT     start on 127.0.0.1:PORT, wait until it accepts connections,
#                                    print the address (use it as SHOPFLOW_TEST_KAFKA)
#   scripts/broker.sh stop [PORT]    stop the broker on PORT (default: every broker started here)
set -euo pipefail

NISSHI_VERSION=0.8.1
TOOLS="${SHOPFLOW_TOOLS:-$HOME/.cache/shopflow/tools}"
NISSHI="${SHOPFLOW_NISSHI:-$TOOLS/bin/nisshi}"
RUN="${SHOPFLOW_RUN:-$HOME/.cache/shopflow/run}"
START_TIMEOUT="${SHOPFLOW_BROKER_TIMEOUT:-60}"

die() { echo "broker.sh: $*" >&2; exit 1; }
# shellcheck source=lib/daemon.sh
source "$(dirname "$0")/lib/daemon.sh"

install() {
    if [[ -x "$NISSHI" ]]; then
        echo "nisshi: $NISSHI"
        return
    fi
    mkdir -p "$TOOLS"
    # No default features: the libsql and dynostore engines are enough for memory:// storage,
    # and skipping the rest keeps the build short.
    cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
        --no-default-features --features libsql,dynostore --root "$TOOLS"
    [[ -x "$NISSHI" ]] || die "install finished but $NISSHI is missing"
    echo "nisshi: $NISSHI"
}

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local port="${1:-}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "usage: $0 start PORT"
    [[ -x "$NISSHI" ]] || die "$NISSHI not found; run: $0 install"
    mkdir -p "$RUN"
    local pidfile="$RUN/broker-$port.pid" log="$RUN/broker-$port.log"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "a broker started here already runs on port $port (pid $(cat "$pidfile"))"
    fi
    accepts "$port" && die "port $port is already in use"
    local url="tcp://127.0.0.1:$port"
    nohup "$NISSHI" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s >"$log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"
    wait_ready "$pid" "$pidfile" "$log" "nisshi on port $port" "$START_TIMEOUT" accepts "$port"
    echo "127.0.0.1:$port"
}

case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop_started broker 100 "${2:-}" ;;
    *) die "usage: $0 install | start PORT | stop [PORT]" ;;
esac
