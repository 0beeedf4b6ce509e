#!/usr/bin/env bash
# The one benchmark command. Builds the release binary, starts a local Kafka-protocol broker
# (nisshi) for the Kafka backend, runs the other suites' scripts (which write their JSON next
# to the report), then `shopflow bench`, which runs the pipeline suite on the embedded log and
# on the broker, the recommend, auth and commerce suites (the order saga: decisions/s in the
# dataflow on both backends, POST /orders?wait=decision latency and top-sellers freshness over
# HTTP; commerce.json and commerce.md), and writes the merged report.
#
#   scripts/bench.sh [shopflow bench flags...]     e.g. scripts/bench.sh --quick
#
# Environment: SHOPFLOW_BENCH_PORT (broker port, default 19092), SHOPFLOW_BENCH_OUT (report
# directory, default target/bench; also passed as --out).
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${SHOPFLOW_BENCH_PORT:-19092}"
OUT="${SHOPFLOW_BENCH_OUT:-target/bench}"
mkdir -p "$OUT"

echo "==> building (release)"
cargo build --release --bin shopflow

scripts/broker.sh install >/dev/null
echo "==> starting broker on 127.0.0.1:$PORT"
scripts/broker.sh start "$PORT" >/dev/null
trap 'scripts/broker.sh stop "$PORT" || true' EXIT INT TERM

# Other suites write OUT/<suite>.json; shopflow bench merges what it finds. A stale file from an
# earlier run must not pass for this run's result.
rm -f "$OUT/recommender.json"
if [[ -x scripts/bench-recommender.sh ]]; then
    echo "==> recommender suite"
    SHOPFLOW_BENCH_OUT="$OUT" scripts/bench-recommender.sh
elif [[ -f scripts/bench-recommender.sh ]]; then
    echo "==> recommender suite"
    SHOPFLOW_BENCH_OUT="$OUT" bash scripts/bench-recommender.sh
fi

rm -f "$OUT/analytics.json"
echo "==> analytics suite"
SHOPFLOW_BENCH_OUT="$OUT" scripts/bench-analytics.sh

echo "==> pipeline, recommend, auth and commerce suites"
target/release/shopflow bench --out "$OUT" --kafka "127.0.0.1:$PORT" "$@"

echo "==> search suite (tantivy in process and over HTTP, PostgreSQL GIN baseline)"
target/release/shopflow bench-search --out "$OUT"

echo "==> report: $OUT/report.md (and report.json); search: $OUT/search.md"
