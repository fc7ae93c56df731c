#!/usr/bin/env bash
# Checks the Swift binding in bindings/swift/ without a Swift compiler (none
# can be installed on this Linux machine):
#   1. regenerates the uniffi Swift bindings (bash scripts/build-ffi.sh);
#   2. fixes the fresh FreshToken.swift where uniffi 0.32 mishandles renamed
#      objects (bindings/swift/scripts/patch_generated.py), then checks that
#      the committed FreshToken.swift and FreshTokenFFI.h equal the fresh ones;
#   3. static checks of the hand-written Swift (bindings/swift/scripts/
#      check_sources.py): every generated type, case, label, field and
#      protocol requirement they use exists; error and reason code strings
#      equal Rust's (src/error.rs); no logging; the URLSession and Keychain
#      contracts; the mirror (UserSession.accessToken() reads it before it
#      calls the generated async accessToken(); every other call drops it
#      first); no unsigned types in the public wrapper, Date for times;
#      the C header against FreshToken.swift and libfreshtoken.so;
#      the XCFramework script's syntax and targets.
# Ends with one "N passed, N failed" line; exits 1 when anything failed.
#
#   bash scripts/check-swift-bindings.sh            check
#   bash scripts/check-swift-bindings.sh --update   copy the fresh generated
#                                                   files in, then check
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

update=0
case "${1:-}" in
  "") ;;
  --update) update=1 ;;
  *) echo "usage: bash scripts/check-swift-bindings.sh [--update]" >&2; exit 2 ;;
esac

generated=target/bindings/swift
sources=bindings/swift/Sources
fix="bash scripts/check-swift-bindings.sh --update"
passed=0
failed=0

ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
bad() {
  failed=$((failed + 1))
  printf 'FAIL  %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '        %s\n' "$line"; done
}
summary() { printf '%d passed, %d failed\n' "$passed" "$failed"; [ "$failed" -eq 0 ]; exit $?; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== regenerating the Swift bindings (scripts/build-ffi.sh)"
if bash scripts/build-ffi.sh >"$log" 2>&1 \
  && [ -s "$generated/FreshToken.swift" ] && [ -s "$generated/FreshTokenFFI.h" ] && [ -s "$generated/FreshTokenFFI.modulemap" ]; then
  ok "regenerate: build-ffi.sh wrote $generated/{FreshToken.swift,FreshTokenFFI.h,FreshTokenFFI.modulemap}"
else
  mapfile -t tail_lines < <(tail -n 20 "$log")
  bad "regenerate: bash scripts/build-ffi.sh" "${tail_lines[@]}"
  summary
fi

# uniffi 0.32 leaves the secondary constructors of objects renamed in
# uniffi.toml pointing at the old names: fix them in the fresh copy (the
# committed one is the fixed one).
if python3 bindings/swift/scripts/patch_generated.py "$PWD" "$generated/FreshToken.swift" >"$log" 2>&1; then
  ok "patch: $(tail -n 1 "$log")"
else
  mapfile -t tail_lines < <(tail -n 5 "$log")
  bad "patch: bindings/swift/scripts/patch_generated.py" "${tail_lines[@]}"
  summary
fi

pairs=(
  "$generated/FreshToken.swift:$sources/FreshToken/FreshToken.swift"
  "$generated/FreshTokenFFI.h:$sources/FreshTokenFFI/include/FreshTokenFFI.h"
)

if [ "$update" -eq 1 ]; then
  for pair in "${pairs[@]}"; do
    from=${pair%%:*} to=${pair#*:}
    mkdir -p "$(dirname "$to")"
    if cmp -s "$from" "$to"; then
      echo "   unchanged $to"
    else
      cp "$from" "$to"
      echo "   updated   $to"
    fi
  done
fi

echo "== committed generated files"
for pair in "${pairs[@]}"; do
  from=${pair%%:*} to=${pair#*:}
  name=$(basename "$to")
  if [ ! -f "$to" ]; then
    bad "fresh: $to is missing" "fix: $fix"
  elif cmp -s "$from" "$to"; then
    ok "fresh: $to equals the generated $name"
  else
    # A diff --stat-like summary (committed -> generated) and the first changes.
    read -r added removed _ < <(git diff --no-index --numstat -- "$to" "$from" 2>/dev/null)
    mapfile -t first < <(diff "$to" "$from" | grep -E '^[<>]' | head -n 6 | cut -c 1-110)
    bad "fresh: $to is stale (differs from $from)" \
      "$name | $((added + removed)) changed: ${added} insertion(s)(+), ${removed} deletion(s)(-) to match the generated file" \
      "${first[@]}" "fix: $fix"
  fi
done

echo "== hand-written Swift, package and scripts (static checks)"
status_file=$(mktemp)
python3 bindings/swift/scripts/check_sources.py "$PWD" >"$status_file" 2>&1
python_status=$?
while IFS=$'\t' read -r status name reasons; do
  case "$status" in
    ok) ok "$name" ;;
    fail)
      IFS=$'\x1f' read -r -a detail <<<"$reasons"
      bad "$name" "${detail[@]}"
      ;;
    *) bad "check_sources.py output" "$status $name $reasons" ;;
  esac
done <"$status_file"
rm -f "$status_file"
if [ "$python_status" -ne 0 ]; then
  bad "check_sources.py exited with status $python_status"
fi

summary
