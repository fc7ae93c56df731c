#!/usr/bin/env bash
# Benchmarks the Python binding's cached access_token() against the RELEASE
# library: builds it (scripts/build-ffi.sh --release, a few minutes the first
# time), assembles the package in bindings/python/build/bench/, and prints
# bench.py's JSON line: {"name":"python cached access_token()","ns_per_call":N}.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

bash scripts/setup-python.sh >&2
# build-ffi.sh names the library it built ("[build-ffi] <path> and bindings …"):
# --release builds the release-ffi profile, target/release-ffi/, not target/release/.
built=$(bash scripts/build-ffi.sh --release)
echo "$built" >&2
profile=$(sed -n 's|^\[build-ffi\] target/\([^/ ]*\)/libfreshtoken\.so .*|\1|p' <<<"$built" | tail -1)
[ -n "$profile" ] || { echo "[bench-python] cannot find the release library" >&2; exit 1; }
cargo build --quiet -p freshtoken-emulator
bash bindings/python/assemble.sh "$profile" bindings/python/build/bench >&2
FRESHTOKEN_PYTHONPATH="$PWD/bindings/python/build/bench" exec .tools/venv/bin/python bindings/python/bench.py
