#!/usr/bin/env bash
# Assembles the importable `freshtoken` package from the hand-written sources
# and the uniffi-generated module + library, without installing anything:
#   bash bindings/python/assemble.sh debug|release|release-ffi OUT_DIR
# → OUT_DIR/freshtoken/{__init__,_api,_http,_stores}.py
#   OUT_DIR/freshtoken/_ffi/{__init__.py,freshtoken.py,libfreshtoken.so}
# (the same layout as the wheel maturin builds). Needs `bash scripts/build-ffi.sh
# [--release]` first. The generated module is taken from target/bindings/python
# when that was generated from this very library, else generated again from the
# copied library, so that module and library always match.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=${1:?usage: assemble.sh debug|release OUT_DIR}
out=${2:?usage: assemble.sh debug|release OUT_DIR}

# "release" is the release build scripts/build-ffi.sh --release makes: the
# release-ffi profile (target/release-ffi/).
case "$profile" in
  release) dir=release-ffi ;;
  *) dir=$profile ;;
esac
lib="target/$dir/libfreshtoken.so"
bindgen=target/debug/uniffi-bindgen
[ -f "$lib" ] || { echo "[assemble] $lib missing: run scripts/build-ffi.sh first" >&2; exit 1; }

pkg="$out/freshtoken"
rm -rf "$pkg"
mkdir -p "$pkg/_ffi"
cp bindings/python/freshtoken/*.py bindings/python/freshtoken/py.typed "$pkg/"
cp "$lib" "$pkg/_ffi/libfreshtoken.so"
if [ -f target/bindings/python/freshtoken.py ] && cmp -s target/bindings/python/libfreshtoken.so "$pkg/_ffi/libfreshtoken.so"; then
  cp target/bindings/python/freshtoken.py "$pkg/_ffi/freshtoken.py"
else
  gen=$(mktemp -d)
  trap 'rm -rf "$gen"' EXIT
  "$bindgen" generate --library "$pkg/_ffi/libfreshtoken.so" --language python --out-dir "$gen" --no-format >/dev/null
  cp "$gen/freshtoken.py" "$pkg/_ffi/freshtoken.py"
fi
echo 'from .freshtoken import *  # NOQA' > "$pkg/_ffi/__init__.py"
echo "[assemble] $pkg ($profile)"
