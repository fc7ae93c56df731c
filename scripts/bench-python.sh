#!/usr/bin/env bash
# Benchmarks the Python binding's cached access_token() against the RELEASE
# library: builds it (scripts/build-ffi.sh --release, a few minutes the first
# time), assembles the package in bindings/python/build/bench/, and prints
# bench.py's JSON line: {"name":"python cached access_token()","ns_per_call":N}.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

bash scripts/setup-python.sh >&2
bash scripts/build-ffi.sh --release >&2
cargo build --quiet -p freshtoken-emulator
bash bindings/python/assemble.sh release bindings/python/build/bench >&2
FRESHTOKEN_PYTHONPATH="$PWD/bindings/python/build/bench" exec .tools/venv/bin/python bindings/python/bench.py
