#!/usr/bin/env bash
# Sets up what is missing, then runs the benchmarks (bench/run.mjs): one
# table of ratios against named anchors, also written to bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi
cargo build --quiet -p freshtoken-emulator
stamp=bench/node_modules/.installed-from
if [ ! -f "$stamp" ] || [ bench/package.json -nt "$stamp" ]; then
  (cd bench && npm install --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
exec node bench/run.mjs
