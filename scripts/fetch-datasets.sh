#!/usr/bin/env bash
# Fetch the pinned real data sets into target/datasets/ (a cache, never committed).
# Recipe and terms: /work/shared/datasets.md. MovieLens 100K comes from the PyPI wheel
# recbole==1.2.1 (folder recbole/dataset_example/ml-100k/); its terms allow research use,
# not redistribution, which is why we fetch instead of vendoring it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DATASETS_DIR:-$ROOT/target/datasets}"
PIP="${PIP:-python3 -m pip}"

fetch_ml100k() {
    local out="$CACHE/ml-100k"
    if [[ -s "$out/ml-100k.inter" ]]; then
        echo "ml-100k: cached at $out"
        return
    fi
    local dl="$CACHE/.download/recbole-1.2.1"
    mkdir -p "$dl" "$out"
    # --no-deps: we only want the wheel's bundled example data, not recbole's dependencies.
    $PIP download --no-deps recbole==1.2.1 -d "$dl"
    unzip -o -j "$dl/recbole-1.2.1-py3-none-any.whl" 'recbole/dataset_example/ml-100k/*' -d "$out"
    # Sanity check: the documented size (100,000 ratings + 1 header line).
    local lines
    lines=$(wc -l < "$out/ml-100k.inter")
    if [[ "$lines" -ne 100001 ]]; then
        echo "ml-100k.inter has $lines lines, expected 100001" >&2
        exit 1
    fi
    echo "ml-100k: fetched into $out"
}

fetch_ml100k
