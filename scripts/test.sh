#!/usr/bin/env bash
# Every check and every test: sets up what is missing, then formatting,
# lints (native and wasm), rustdoc, the Rust unit and integration suites,
# the fault matrix (its table printed), a bounded fuzz run of every target,
# the JavaScript package (emulator, oidc-provider, Chromium), the Kotlin and
# Python bindings, and the Swift bindings' freshness. Ends with one
# "N passed, N failed" line summing every suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

add() { passed=$((passed + $1)); failed=$((failed + $2)); }

# A check without a count of its own: one pass or one failure.
step() {
  local name=$1; shift
  printf '\n== %s\n' "$name"
  if "$@"; then
    printf '== %s: ok\n' "$name"; add 1 0
  else
    printf '== %s: FAILED\n' "$name"; add 0 1
  fi
}

# A suite: run it, keep its output, and read its counts with `parser`.
suite() {
  local name=$1 parser=$2; shift 2
  printf '\n== %s\n' "$name"
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]} p f
  read -r p f < <("$parser" "$log")
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # a crash or build failure counts
  printf '== %s: %d passed, %d failed\n' "$name" "$p" "$f"
  add "$p" "$f"
}

cargo_counts() { # every "test result:" line cargo printed
  awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { print p + 0, f + 0 }' "$1"
}
node_counts() { # node's test runner: "# pass N" / "# fail N"
  awk '/^# pass / { p = $3 } /^# fail / { f = $3 } END { print p + 0, f + 0 }' "$1"
}
summary_counts() { # the last line naming "passed" (pytest's or "N passed, N failed")
  grep -E '[0-9]+ passed' "$1" | tail -n 1 |
    awk '{ for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p = $i; if ($(i+1) ~ /^failed/) f = $i } } END { print p + 0, f + 0 }'
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo fmt --check (fuzz/)" bash -c 'cd fuzz && cargo fmt -- --check'
step "clippy (native, all targets)" cargo clippy --workspace --all-targets --features native-http,uniffi-cli,fuzzing -- -D warnings
step "clippy (wasm32 core and export)" cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
# The core as Rust users and the command get it (no ffi feature): code that
# only the exports use must be gated, not just unused there.
step "clippy (native core, default features)" cargo clippy --lib -- -D warnings
step "rustdoc (warnings denied)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features native-http,ffi --quiet

suite "cargo test (core, emulator, integration over loopback)" cargo_counts \
  cargo test --workspace --exclude freshtoken-cli --features native-http,ffi,fuzzing --no-fail-fast -- --skip fault_matrix
suite "freshtoken command (every subcommand against the emulator; oidc-provider; npx wrapper)" cargo_counts \
  env FRESHTOKEN_REQUIRE_SERVERS=1 cargo test -p freshtoken-cli --no-fail-fast
# Run on its own so that its table is printed (issue 6).
suite "fault matrix (every fault against both token flows)" cargo_counts \
  cargo test --features native-http --test fault_matrix -- --nocapture
suite "fuzzing (bounded cargo-fuzz run of every target)" summary_counts bash scripts/test-fuzz.sh

cargo build --quiet -p freshtoken-emulator
suite "JavaScript package (node --test: emulator, oidc-provider, Chromium, Redis, PostgreSQL)" node_counts \
  bash -c 'cd bindings/js && FRESHTOKEN_REQUIRE_SERVERS=1 node --test --test-concurrency=1 test/'
suite "Python binding (pytest)" summary_counts bash scripts/test-python.sh
suite "Kotlin binding (JUnit)" summary_counts bash scripts/test-kotlin.sh
suite "Swift bindings (generated sources fresh and consistent)" summary_counts bash scripts/check-swift-bindings.sh

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
