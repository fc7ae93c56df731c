#!/usr/bin/env bash
# The main job: sets up what is missing, then runs the demo on the built-in
# token-endpoint emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi
exec cargo run --quiet --example demo --features native-http
