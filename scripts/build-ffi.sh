#!/usr/bin/env bash
# Builds the uniffi library (libfreshtoken.so, feature "ffi") and generates
# the Kotlin, Python and Swift bindings from it.
#   bash scripts/build-ffi.sh            debug build (tests)
#   bash scripts/build-ffi.sh --release  release build (benchmarks, wheels)
# Kotlin and Python go to target/bindings/<language>/ (generated on every
# build, not committed); Swift goes to bindings/swift/Sources/ (committed,
# because no Swift compiler runs here: a test checks it is not stale).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

profile=debug
flags=()
if [ "${1:-}" = "--release" ]; then profile=release; flags=(--release); fi

cargo build --quiet "${flags[@]}" --features ffi --lib
cargo build --quiet --features uniffi-cli --bin uniffi-bindgen
lib="target/$profile/libfreshtoken.so"
bindgen=target/debug/uniffi-bindgen

for language in kotlin python; do
  out="target/bindings/$language"
  rm -rf "$out"
  "$bindgen" generate --library "$lib" --language "$language" --out-dir "$out" --no-format >/dev/null
done
cp "$lib" target/bindings/python/

swift_tmp=target/bindings/swift
rm -rf "$swift_tmp"
"$bindgen" generate --library "$lib" --language swift --out-dir "$swift_tmp" --no-format >/dev/null
echo "[build-ffi] $lib and bindings in target/bindings/ ($profile)"
