#!/usr/bin/env bash
# The analytics suite: the ClickHouse sink's throughput over a preloaded backlog and its lag
# behind the log at a steady 20,000 events/s, against chDB behind its HTTP adapter and a local
# broker. Writes $SHOPFLOW_BENCH_OUT/analytics.json (merged into `shopflow bench`'s report).
#   scripts/bench-analytics.sh [bench_sink flags: --backlog N --rate R --seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${SHOPFLOW_BENCH_OUT:-target/bench}"
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --release -p shopflow-analytics --example bench_sink
scripts/broker.sh install >/dev/null
scripts/clickhouse.sh install >/dev/null
kport="$(free_port)"; cport="$(free_port)"
scripts/broker.sh start "$kport" >/dev/null
trap 'scripts/clickhouse.sh stop "$cport" >/dev/null 2>&1 || true; scripts/broker.sh stop "$kport" >/dev/null 2>&1 || true' EXIT
url="$(scripts/clickhouse.sh start "$cport")"
target/release/examples/bench_sink --kafka "127.0.0.1:$kport" --clickhouse "$url" --out "$OUT" "$@"
