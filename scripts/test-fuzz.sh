#!/usr/bin/env bash
# The bounded fuzz run for the test command: every target in fuzz/, from its
# committed seeds into a throw-away corpus, within FRESHTOKEN_FUZZ_BUDGET
# seconds in all (default 110, the build included; each target gets an equal
# share of what the build leaves, 5 to 20 s). One line per target (runs,
# result), then "N passed, N failed"; non-zero exit on a crash.
# The seeds themselves are replayed on stable by tests/fuzz_corpus.rs
# (cargo test --features fuzzing).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-fuzz.sh || exit 1
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
FRESHTOKEN_FUZZ_CORPUS=$corpus FRESHTOKEN_FUZZ_BUDGET=${FRESHTOKEN_FUZZ_BUDGET:-110} \
  bash scripts/fuzz.sh "${FRESHTOKEN_FUZZ_SECONDS:-20}"
