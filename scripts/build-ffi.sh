#!/usr/bin/env bash
# Builds the uniffi library (libfreshtoken.so, feature "ffi") and generates
# the Kotlin, Python and Swift bindings from it.
#   bash scripts/build-ffi.sh            debug build (tests)
#   bash scripts/build-ffi.sh --release  release build (benchmarks, wheels)
# All three go to target/bindings/<language>/ (generated on every build).
# The Swift sources are also committed under bindings/swift/Sources/, since
# no Swift compiler runs here: scripts/check-swift-bindings.sh compares them
# with these fresh ones.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

profile=debug
flags=()
# release-ffi: the release profile with unwinding, so that a Rust panic
# becomes an error in the host language instead of aborting the app.
if [ "${1:-}" = "--release" ]; then
  profile=release-ffi
  flags=(--profile release-ffi)
  # The shipped library (the wheel, the jar) names no machine: the panic
  # messages' source paths of dependencies and std lose the builder's home
  # directory, as the wasm's do (scripts/build-js.sh). Release only: other
  # flags for the test builds would rebuild every dependency.
  remap=("\"--remap-path-prefix=$PWD/=\"")
  for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ "$(rustc --print sysroot)/lib/rustlib/src/rust/"; do
    if [ -d "$dir" ]; then remap+=("\"--remap-path-prefix=$dir=\""); fi
  done
  flags+=(--config "build.rustflags=[$(IFS=,; echo "${remap[*]}")]")
fi

cargo build --quiet "${flags[@]}" --features ffi --lib
cargo build --quiet --features uniffi-cli --bin uniffi-bindgen
lib="target/$profile/libfreshtoken.so"
if [ "$profile" = release-ffi ] && grep -qaF -e "$PWD/" -e "${CARGO_HOME:-$HOME/.cargo}/" "$lib"; then
  echo "[build-ffi] $lib names a path of this machine (see the remapping above)" >&2
  exit 1
fi
bindgen=target/debug/uniffi-bindgen

for language in kotlin python; do
  out="target/bindings/$language"
  rm -rf "$out"
  "$bindgen" generate --library "$lib" --language "$language" --out-dir "$out" --no-format >/dev/null
done
cp "$lib" target/bindings/python/
# Kotlin: every Throwable from a host callback becomes a failure (see the script).
bash bindings/kotlin/tools/patch-generated.sh target/bindings/kotlin/dev/freshtoken/freshtoken.kt

swift_tmp=target/bindings/swift
rm -rf "$swift_tmp"
"$bindgen" generate --library "$lib" --language swift --out-dir "$swift_tmp" --no-format >/dev/null
echo "[build-ffi] $lib and bindings in target/bindings/ ($profile)"
