#!/usr/bin/env bash
# Installs what the fuzz targets (fuzz/, scripts/fuzz.sh) need, skipping what
# is already there: cargo-fuzz, and a C++ compiler for libFuzzer itself
# (libfuzzer-sys compiles it from source). No extra Rust toolchain: without
# nightly, scripts/fuzz.sh runs cargo-fuzz on stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-fuzz] %s\n' "$*"; }
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (about 40 s)"
    cargo install --quiet cargo-fuzz --locked
  fi
}

ensure_cxx() {
  command -v c++ >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing g++ (apt): libFuzzer is C++"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null
  else
    log "no C++ compiler (c++) and apt-get unavailable as this user: fuzz builds will fail"
    return 1
  fi
}

ensure_cargo_fuzz
ensure_cxx
log "fuzzing tools ready ($(cargo fuzz --version))"
