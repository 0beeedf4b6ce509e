#!/usr/bin/env bash
# The recommender suite: MovieLens 100K (fetched from its pinned package, cached outside git)
# evaluated against popularity, training time against scikit-learn's NMF on the same matrix,
# and fold-in latency; writes $SHOPFLOW_BENCH_OUT/recommender.json for the benchmark report.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${SHOPFLOW_BENCH_OUT:-target/bench}"
mkdir -p "$OUT"
scripts/fetch-datasets.sh >/dev/null
if [[ ! -x target/bench-venv/bin/python ]] || ! target/bench-venv/bin/python -c 'import sklearn' 2>/dev/null; then
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install --quiet scikit-learn
fi
cargo run --release --quiet -p shopflow-recommender --example movielens -- \
    target/datasets/ml-100k/ml-100k.inter --bench --report "$OUT/recommender.json"
