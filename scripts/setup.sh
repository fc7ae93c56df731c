#!/usr/bin/env bash
# Installs what freshtoken's demo and tests need, skipping what is already
# there. Safe to run again and again; called by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

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

log "toolchain ready ($(cargo --version))"
