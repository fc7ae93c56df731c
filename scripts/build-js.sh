#!/usr/bin/env bash
# Builds the npm package in pkg/: the core for wasm32 (release), then the
# wasm-bindgen CLI for Node (nodejs) and browsers (web), then wasm-opt from
# npm binaryen. Run scripts/setup.sh first (demo.sh and test.sh do).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

wasm=target/wasm32-unknown-unknown/release/freshtoken.wasm
wasm_opt=.tools/node_modules/.bin/wasm-opt

rm -rf pkg/dist
# Two flavours: the lean default, and one with private_key_jwt (RSA) for
# certificate clients (the entry point 'freshtoken/jwt').
for flavour in lean jwt; do
  features=()
  suffix=
  if [ "$flavour" = jwt ]; then features=(--features private-key-jwt); suffix=-jwt; fi
  cargo build --quiet --release --lib --target wasm32-unknown-unknown "${features[@]}"
  for target in nodejs web; do
    out=pkg/dist/${target/nodejs/node}$suffix
    wasm-bindgen --target "$target" --out-dir "$out" --out-name freshtoken \
      --no-typescript --remove-name-section --remove-producers-section "$wasm"
    # The features rustc's wasm32 target emits; wasm-opt must keep them.
    "$wasm_opt" -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
      "$out/freshtoken_bg.wasm" -o "$out/freshtoken_bg.wasm"
  done
done
# The nodejs glue is CommonJS inside a "type": "module" package.
echo '{ "type": "commonjs" }' > pkg/dist/node/package.json
echo '{ "type": "commonjs" }' > pkg/dist/node-jwt/package.json
echo "[build-js] pkg/dist built: $(wc -c < pkg/dist/node/freshtoken_bg.wasm) bytes of wasm, $(wc -c < pkg/dist/node-jwt/freshtoken_bg.wasm) with private_key_jwt"
