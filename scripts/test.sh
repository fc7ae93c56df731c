#!/usr/bin/env bash
# Every check and every test: sets up what is missing, then formatting,
# lints (native and wasm), and the unit and integration suites against the
# emulator over loopback. Ends with one "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() {
  local name=$1; shift
  printf '\n== %s\n' "$name"
  if "$@"; then
    printf '== %s: ok\n' "$name"
  else
    printf '== %s: FAILED\n' "$name"
    failed=$((failed + 1))
  fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "clippy (native, all targets)" cargo clippy --workspace --all-targets --features native-http,uniffi-cli -- -D warnings
step "clippy (wasm32 core)" cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
step "rustdoc (warnings denied)" env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features native-http,ffi --quiet

printf '\n== cargo test (workspace: core, emulator, integration)\n'
cargo test --workspace --features native-http,ffi --no-fail-fast 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}

# Sum every "test result:" line cargo printed.
read -r tests_passed tests_failed < <(
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { print p + 0, f + 0 }' "$log"
)
if [ "$test_status" -ne 0 ] && [ "$tests_failed" -eq 0 ]; then
  tests_failed=1 # a build failure: count it
fi
passed=$((passed + tests_passed))
failed=$((failed + tests_failed))

# The JavaScript package against the emulator, oidc-provider and Chromium.
printf '\n== node --test (bindings/js)\n'
cargo build --quiet -p freshtoken-emulator
(cd bindings/js && node --test --test-concurrency=1 test/) 2>&1 | tee "$log"
node_status=${PIPESTATUS[0]}
read -r js_passed js_failed < <(
  awk '/^# pass / { p = $3 } /^# fail / { f = $3 } END { print p + 0, f + 0 }' "$log"
)
if [ "$node_status" -ne 0 ] && [ "$js_failed" -eq 0 ]; then js_failed=1; fi
passed=$((passed + js_passed))
failed=$((failed + js_failed))

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
