#!/usr/bin/env bash
# Installs what freshtoken's demo and tests need, skipping what is already
# there. Safe to run again and again; called by demo.sh and test.sh.
#   bash scripts/setup.sh          Rust toolchain pieces (the demo)
#   bash scripts/setup.sh --test   plus the JS, Kotlin and Python build and test tools
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
want_test=false
[ "${1:-}" = "--test" ] && want_test=true

# Rust: rustup's stable toolchain is expected on the machine (cargo on PATH).
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { log "cargo not found: install rustup's stable Rust first"; exit 1; }

installed_components=$(rustup component list --installed 2>/dev/null || true)
for component in rustfmt clippy; do
  if ! grep -q "^${component}" <<<"$installed_components"; then
    log "adding rustup component ${component}"
    rustup component add "$component"
  fi
done

# The core must keep compiling for the browser/Node target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
log "Rust ready ($(cargo --version))"
$want_test || exit 0

# wasm-bindgen CLI, the same version as the wasm-bindgen crate in Cargo.toml.
WASM_BINDGEN_VERSION=0.2.130
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen ${WASM_BINDGEN_VERSION}" ]; then
  log "installing wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (about 2 minutes)"
  # No --locked: its lockfile pins a crate version the registry no longer has.
  cargo install --quiet wasm-bindgen-cli --version "=${WASM_BINDGEN_VERSION}"
fi

# wasm-opt from npm binaryen (Debian's binaryen 108 emits wasm that fails to load).
if [ ! -x .tools/node_modules/.bin/wasm-opt ]; then
  log "installing binaryen (wasm-opt) into .tools/"
  mkdir -p .tools
  [ -f .tools/package.json ] || echo '{ "private": true }' > .tools/package.json
  (cd .tools && npm install --no-audit --no-fund --no-save --loglevel=error binaryen@132)
fi

# esbuild, which minifies the package's JavaScript (scripts/minify-js.mjs).
# Its own folder: an `npm install --no-save` in .tools/ prunes what its
# package.json does not list.
ESBUILD_VERSION=0.25.12
if [ "$(node -p "require('./.tools/esbuild/node_modules/esbuild/package.json').version" 2>/dev/null)" != "$ESBUILD_VERSION" ]; then
  log "installing esbuild ${ESBUILD_VERSION} into .tools/esbuild/"
  mkdir -p .tools/esbuild
  [ -f .tools/esbuild/package.json ] || echo '{ "private": true }' > .tools/esbuild/package.json
  (cd .tools/esbuild && npm install --no-audit --no-fund --no-save --loglevel=error "esbuild@${ESBUILD_VERSION}")
fi

# cargo-fuzz (and a C++ compiler for libFuzzer) for the bounded fuzz run.
bash scripts/setup-fuzz.sh

# rust-src: the npm package's wasm rebuilds std for size (scripts/build-js.sh).
if ! grep -q '^rust-src' <<<"$installed_components"; then
  log "adding rustup component rust-src"
  rustup component add rust-src
fi

# The npm package must exist before the JS tests link it.
bash scripts/build-js.sh

# Redis and PostgreSQL for the fleet tests and the lease bench (Debian's packages; root).
bash scripts/setup-servers.sh

# JS test dependencies (oidc-provider, typescript, …) and the package itself.
for dir in bindings/js; do
  [ -f "$dir/package.json" ] || continue
  stamp="$dir/node_modules/.installed-from"
  if [ ! -f "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ]; then
    log "npm install in $dir"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    touch "$stamp"
  fi
done

# Headless Chromium for the browser test (Debian's package; no downloads).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    log "chromium missing and apt-get unavailable as this user: the browser test will be skipped"
  fi
fi
log "JS tools ready (node $(node --version))"

# The Kotlin (kotlinc, JNA, JUnit) and Python (venv: maturin, pytest) tools.
for binding in kotlin python; do
  [ -f "scripts/setup-$binding.sh" ] && bash "scripts/setup-$binding.sh"
done
log "binding tools ready"
