#!/usr/bin/env bash
# The test command. Installs what the tests need (cargo-nextest, the nisshi Kafka-protocol
# broker, schemathesis for the API fuzz test in tests/fuzz.rs, chDB for the analytics tests),
# starts one broker on 127.0.0.1 shared by every test (each test isolates itself in its own
# topic namespace) and one ClickHouse (chDB behind its HTTP adapter), runs the whole suite in
# parallel, and stops both by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A test run builds once from whatever is there; incremental caches only fill the disk (they
# reached 15 GB per checkout here).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
scripts/broker.sh install
# Cached in a venv under ~/.cache/shopflow; without python3 the fuzz test skips and says so.
if command -v python3 >/dev/null; then
    echo "schemathesis: $(scripts/schemathesis.sh install)"
fi

port="${SHOPFLOW_TEST_BROKER_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
scripts/broker.sh start "$port" >/dev/null
trap 'scripts/broker.sh stop "$port" >/dev/null 2>&1 || true' EXIT
export SHOPFLOW_TEST_KAFKA="127.0.0.1:$port"

# ClickHouse for the analytics tests: chDB behind its HTTP adapter (scripts/clickhouse.sh),
# one shared by every test (each uses a database of its own); tests that stop ClickHouse
# start their own adapter with the same Python.
scripts/clickhouse.sh install >/dev/null
ch_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export SHOPFLOW_TEST_CLICKHOUSE="$(scripts/clickhouse.sh start "$ch_port")"
export SHOPFLOW_CHDB_PYTHON="${SHOPFLOW_CHDB_VENV:-$HOME/.cache/shopflow/chdb-venv}/bin/python"
trap 'scripts/clickhouse.sh stop "$ch_port" >/dev/null 2>&1 || true; scripts/broker.sh stop "$port" >/dev/null 2>&1 || true' EXIT

# One build of every test binary, then the run; the binary the system tests spawn is built
# as part of the root package's test targets.
cargo nextest run --workspace --all-features --no-fail-fast --profile ci "$@"
