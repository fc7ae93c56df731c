#!/usr/bin/env bash
# Builds the npm package in pkg/: the core for wasm32 (release), then the
# wasm-bindgen CLI for Node (nodejs) and browsers (web), then wasm-opt from
# npm binaryen, then esbuild minifies the JavaScript the entries load
# (pkg/lib/ from pkg/src/, and the glue; scripts/minify-js.mjs). Run
# scripts/setup.sh first (demo.sh and test.sh do).
#
# One build per target: private_key_jwt is in it (the host's WebCrypto
# signs, so it costs no wasm), and 'freshtoken/jwt' is an alias of 'freshtoken'.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

wasm=target/wasm32-unknown-unknown/release/freshtoken.wasm
wasm_opt=.tools/node_modules/.bin/wasm-opt

rm -rf pkg/dist
# Panic locations name their source files. Dependencies' paths would carry
# the builder's home directory and registry folder into the package: map
# each registry folder to nothing, so the wasm is the same whoever builds it
# ("base64-0.22.1/src/…"), and names no machine.
cargo fetch --quiet --target wasm32-unknown-unknown # unpacks them, so the folders exist
remap=()
for dir in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  if [ -d "$dir" ]; then remap+=("\"--remap-path-prefix=$dir=\""); fi
done
flags=$(IFS=,; echo "${remap[*]}")
# The small build: std rebuilt with the package (-Zbuild-std, its
# optimize_for_size feature), a panic a bare trap (-Cpanic=immediate-abort)
# and no source locations (-Zlocation-detail=none). 15.8 KB less gzipped
# wasm, about a tenth (bench/wasm-size.md). Nothing observable is lost: the
# package installs no panic hook, so a panic was already a bare
# "unreachable" trap with its message formatted for no one. Unstable flags
# on the stable toolchain through RUSTC_BOOTSTRAP=1, as scripts/fuzz.sh
# does, with the rust-src component scripts/setup.sh adds. Should a later
# stable change these flags, the plain build below still builds the
# package (bigger, with a warning), except in CI, which must notice.
small=(-Z build-std=std,panic_abort -Z build-std-features=optimize_for_size)
small_flags='"-Zunstable-options","-Cpanic=immediate-abort","-Zlocation-detail=none"'
if ! RUSTC_BOOTSTRAP=1 cargo build --quiet --release --lib --target wasm32-unknown-unknown "${small[@]}" \
  --config "target.wasm32-unknown-unknown.rustflags=[$flags${flags:+,}$small_flags]"; then
  if [ "${CI:-}" = true ]; then
    echo "[build-js] the small build failed (see above)" >&2
    exit 1
  fi
  echo "[build-js] WARNING: the small build failed (see above); building the plain one (about 16 KB bigger gzipped)" >&2
  cargo build --quiet --release --lib --target wasm32-unknown-unknown \
    --config "target.wasm32-unknown-unknown.rustflags=[$flags]"
fi
for target in nodejs web; do
  out=pkg/dist/${target/nodejs/node}
  wasm-bindgen --target "$target" --out-dir "$out" --out-name freshtoken \
    --no-typescript --remove-name-section --remove-producers-section "$wasm"
  # The features rustc's wasm32 target emits; wasm-opt must keep them.
  # --converge repeats -Oz until nothing shrinks (-220 bytes gzipped);
  # --low-memory-unused lets it fold address arithmetic into load/store
  # offsets (-540 bytes gzipped). It is true of rustc's layout: the stack
  # grows down from 1 MiB with the data above it, so the lowest KiB is only
  # reached a KiB before the stack overflows.
  "$wasm_opt" -Oz --converge --low-memory-unused --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    "$out/freshtoken_bg.wasm" -o "$out/freshtoken_bg.wasm"
done
# pkg/lib/ (what the entries load) and the glue, minified.
node scripts/minify-js.mjs
# The nodejs glue is CommonJS inside a "type": "module" package.
echo '{ "type": "commonjs" }' > pkg/dist/node/package.json
echo "[build-js] pkg/dist built: $(wc -c < pkg/dist/node/freshtoken_bg.wasm) bytes of wasm"
