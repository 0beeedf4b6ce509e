#!/usr/bin/env bash
# Schemathesis (PyPI) for the API fuzz test (tests/fuzz.rs), in a venv cached under
# ~/.cache/shopflow so that a warm CI run pays nothing.
#   scripts/schemathesis.sh install   create the venv / install the pinned version if missing,
#                                     print the path of the `st` executable
#   scripts/schemathesis.sh path      print that path (no install)
set -euo pipefail

# Pinned: the fuzz test parses its JUnit report, and checks differ between releases.
SCHEMATHESIS_VERSION="${SHOPFLOW_SCHEMATHESIS_VERSION:-4.32.5}"
VENV="${SHOPFLOW_SCHEMATHESIS_VENV:-$HOME/.cache/shopflow/schemathesis-$SCHEMATHESIS_VERSION}"
ST="$VENV/bin/st"

die() { echo "schemathesis.sh: $*" >&2; exit 1; }

install() {
    if [[ -f "$VENV/.complete" && -x "$ST" ]]; then
        echo "$ST"
        return
    fi
    command -v python3 >/dev/null || die "python3 is needed to install schemathesis"
    # The marker is written last: an interrupted install is redone, never taken as cached.
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
    "$ST" --version >/dev/null || die "install finished but $ST does not run"
    touch "$VENV/.complete"
    echo "$ST"
}

case "${1:-}" in
    install) install ;;
    path) echo "$ST" ;;
    *) die "usage: $0 install|path" ;;
esac
