#!/usr/bin/env bash
# Builds and tests the Python binding (bindings/python):
#   1. the Python tools (scripts/setup-python.sh → .tools/venv: maturin, pytest);
#   2. the uniffi library and generated module (scripts/build-ffi.sh, debug);
#   3. the token emulator the tests run against, and the freshtoken command;
#   4. the importable package in bindings/python/build/dev/ (assemble.sh);
#   5. the wheel, with maturin from bindings/python/pyproject.toml — in the dev
#      profile, to stay fast (a release build of the library takes minutes on
#      two cores; `maturin build` makes the one to ship, in the release-ffi
#      profile pyproject.toml names — never `--release`, the wasm profile,
#      whose panics abort the host process);
#   6. pytest over bindings/python/tests, the installed-wheel test included.
# Its last line is pytest's summary; it exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

log() { printf '[test-python] %s\n' "$*"; }

bash scripts/setup-python.sh
bash scripts/build-ffi.sh
cargo build --quiet -p freshtoken-emulator -p freshtoken-cli
bash bindings/python/assemble.sh debug bindings/python/build/dev

wheels=bindings/python/build/wheels
rm -rf "$wheels"
mkdir -p "$wheels"
log "building the wheel (maturin, dev profile)"
if ! (cd bindings/python && ../../.tools/venv/bin/maturin build --profile dev --out build/wheels) \
    >"$wheels/maturin.log" 2>&1; then
  tail -n 40 "$wheels/maturin.log" >&2
  log "maturin build failed"
  exit 1
fi
wheel=$(ls "$wheels"/freshtoken-*.whl)
log "built $(basename "$wheel")"

cd bindings/python
export FRESHTOKEN_WHEEL="$PWD/../../$wheel"
export FRESHTOKEN_PYTHONPATH="$PWD/build/dev"
exec ../../.tools/venv/bin/python -m pytest -p no:cacheprovider tests
