#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each.
#
#   bash scripts/fuzz.sh [SECONDS-PER-TARGET] [TARGET...]
#
# SECONDS defaults to 300; TARGETs default to every fuzz/fuzz_targets/*.rs.
# The committed seeds (fuzz/corpus/<target>/) are read, never written: new
# inputs go to a working corpus (fuzz/work/corpus/<target>/, git-ignored),
# crashes to fuzz/artifacts/<target>/. Ends with one line per target and
# "N passed, N failed"; exits non-zero when any target crashed (a panic or
# a broken invariant in freshtoken::fuzzing) or failed to build.
#
# Environment:
#   FRESHTOKEN_FUZZ_TOOLCHAIN  auto (default): nightly when rustup has it,
#                              else the default (stable) toolchain with
#                              RUSTC_BOOTSTRAP=1 so cargo-fuzz's -Z flags work;
#                              nightly or stable force one.
#   FRESHTOKEN_FUZZ_SANITIZER  auto (default): address when the toolchain
#                              ships its runtime and the build works, else
#                              none; address or none force one.
#   FRESHTOKEN_FUZZ_CORPUS     working corpus root (default fuzz/work/corpus).
#   FRESHTOKEN_FUZZ_BUDGET     total seconds, build included: when set, each
#                              target gets an equal share of what the build
#                              left (between 5 and SECONDS), see test-fuzz.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

log() { printf '[fuzz] %s\n' "$*"; }
started=$SECONDS

seconds=${1:-300}
case $seconds in '' | *[!0-9]*) log "seconds must be a number: $seconds"; exit 2 ;; esac
shift $(($# > 0 ? 1 : 0))
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi
for target in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$target.rs" ] || { log "no such target: $target"; exit 2; }
done

bash scripts/setup-fuzz.sh >/dev/null || exit 1

# The toolchain: `cargo +nightly fuzz`, or stable with RUSTC_BOOTSTRAP=1.
toolchain=${FRESHTOKEN_FUZZ_TOOLCHAIN:-auto}
if [ "$toolchain" = auto ]; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then toolchain=nightly; else toolchain=stable; fi
fi
case $toolchain in
  nightly) cargo_fuzz=(cargo +nightly fuzz); rustc=(rustc +nightly) ;;
  stable) cargo_fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz); rustc=(rustc) ;;
  *) log "FRESHTOKEN_FUZZ_TOOLCHAIN must be auto, nightly or stable"; exit 2 ;;
esac

# The sanitizer: AddressSanitizer when this toolchain ships its runtime.
sanitizer=${FRESHTOKEN_FUZZ_SANITIZER:-auto}
auto_sanitizer=false
if [ "$sanitizer" = auto ]; then
  auto_sanitizer=true
  sysroot=$("${rustc[@]}" --print sysroot 2>/dev/null || true)
  if compgen -G "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib/librustc-*_rt.asan.a" >/dev/null; then
    sanitizer=address
  else
    sanitizer=none
  fi
fi
log "toolchain: $toolchain ($("${rustc[@]}" --version)); sanitizer: $sanitizer"

# Optimised, with debug assertions and overflow checks: an overflow in a
# parser is a crash too.
build() { "${cargo_fuzz[@]}" build -a -s "$sanitizer"; }
build_started=$SECONDS
if ! build; then
  if $auto_sanitizer && [ "$sanitizer" = address ]; then
    log "the AddressSanitizer build failed; building without a sanitizer"
    sanitizer=none
    build || { log "build failed"; printf '0 passed, %d failed\n' "${#targets[@]}"; exit 1; }
  else
    log "build failed"; printf '0 passed, %d failed\n' "${#targets[@]}"; exit 1
  fi
fi
log "built every target in $((SECONDS - build_started)) s"

# With a total budget, share what the build left between the targets
# (about 2 s each go to startup and corpus loading).
if [ -n "${FRESHTOKEN_FUZZ_BUDGET:-}" ]; then
  share=$(((FRESHTOKEN_FUZZ_BUDGET - (SECONDS - started)) / ${#targets[@]} - 2))
  [ "$share" -lt "$seconds" ] || share=$seconds
  [ "$share" -ge 5 ] || share=5
  seconds=$share
  log "budget ${FRESHTOKEN_FUZZ_BUDGET} s: $seconds s per target"
fi

corpus_root=${FRESHTOKEN_FUZZ_CORPUS:-fuzz/work/corpus}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
summary=()
for target in "${targets[@]}"; do
  work="$corpus_root/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log "$target: $seconds s"
  # A per-input timeout keeps a hang from outliving the time budget.
  "${cargo_fuzz[@]}" run -a -s "$sanitizer" "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$out/$target.log" 2>&1
  status=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$out/$target.log" | tail -n 1)
  if [ "$status" -eq 0 ] && [ -n "$runs" ]; then
    passed=$((passed + 1))
    summary+=("fuzz $target: ok ($runs, no crash; corpus $(find "$work" -type f | wc -l) inputs)")
  else
    failed=$((failed + 1))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out/$target.log" | tail -n 1)
    executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log" | tail -n 1)
    printf '\n---- %s (exit %d):\n' "$target" "$status"
    grep -m 1 -A 2 'panicked at' "$out/$target.log"
    printf -- '---- last lines of its log:\n'
    tail -n 30 "$out/$target.log"
    summary+=("fuzz $target: FAILED (exit $status after ${executed:-?} runs; input: ${artifact:-none})")
  fi
done

printf '\n'
printf '%s\n' "${summary[@]}"
log "$toolchain, sanitizer $sanitizer, $((SECONDS - started)) s in all"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
