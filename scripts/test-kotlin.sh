#!/usr/bin/env bash
# The Kotlin binding's tests, from a fresh machine: installs what is missing
# (scripts/setup-kotlin.sh), builds the uniffi library and its generated
# Kotlin (scripts/build-ffi.sh), the token-endpoint emulator and the
# `freshtoken` command (a test shares a directory with it), compiles
# generated + hand-written code and the tests with kotlinc into jars under
# target/kotlin/ (skipped when the inputs are unchanged), and runs them with
# JUnit 4. Ends with JUnit's summary and one "N passed, N failed" line; the
# exit status is non-zero when anything failed.
#   bash scripts/test-kotlin.sh [TestClass...]   (default: every *Test class)
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

fail_build() { echo "[test-kotlin] $*" >&2; echo "0 passed, 1 failed"; exit 1; }

bash scripts/setup-kotlin.sh || fail_build "setup failed"
built=$(bash scripts/build-ffi.sh) || fail_build "build-ffi.sh failed"
echo "$built"
# build-ffi.sh names the library it built ("[build-ffi] <path> and bindings …").
lib=$(sed -n 's/^\[build-ffi\] \([^ ]*libfreshtoken\.so\) .*/\1/p' <<<"$built" | tail -1)
[ -n "$lib" ] && [ -f "$lib" ] || lib=target/debug/libfreshtoken.so
cargo build --quiet -p freshtoken-emulator -p freshtoken-cli || fail_build "building the emulator and the command failed"

K=.tools/node_modules/kotlin-compiler/lib
J=/usr/share/java
out=target/kotlin
mkdir -p "$out/jna-tmp"
runtime="$K/kotlin-stdlib.jar:$K/kotlinx-coroutines-core-jvm.jar:$J/jna.jar"

compile_start=$(date +%s)
bash bindings/kotlin/tools/compile.sh "$out/freshtoken.jar" "$runtime" \
  target/bindings/kotlin/dev/freshtoken/freshtoken.kt bindings/kotlin/src/main/kotlin \
  || fail_build "compiling the binding failed"
KOTLIN_FRIEND="$out/freshtoken.jar" bash bindings/kotlin/tools/compile.sh "$out/freshtoken-tests.jar" \
  "$out/freshtoken.jar:$runtime:$J/junit4.jar:$J/hamcrest-core.jar" \
  bindings/kotlin/src/test/kotlin \
  || fail_build "compiling the tests failed"
# Java callers: the Java tests (javac against the jars), and the one-class
# check that PackagedJarTest runs against the packed jar.
rm -rf "$out/java-tests" "$out/packaging-check"
mkdir -p "$out/java-tests" "$out/packaging-check"
mapfile -t java_tests < <(find bindings/kotlin/src/test/java -name '*.java' | sort)
if [ ${#java_tests[@]} -gt 0 ]; then
  javac -d "$out/java-tests" \
    -cp "$out/freshtoken-tests.jar:$out/freshtoken.jar:$runtime:$J/junit4.jar:$J/hamcrest-core.jar" \
    "${java_tests[@]}" || fail_build "compiling the Java tests failed"
fi
javac -d "$out/packaging-check" -cp "$out/freshtoken.jar:$runtime" \
  $(find bindings/kotlin/src/packaging-check -name '*.java') || fail_build "compiling the packaging check failed"
bash bindings/kotlin/tools/pack-jar.sh "$lib" "$out/freshtoken.jar" "$out/dist/freshtoken-linux-x86-64.jar" \
  || fail_build "packing the jar failed"
echo "[test-kotlin] compile step: $(( $(date +%s) - compile_start )) s"

# Test classes: every top-level *Test.kt, named by its package.
classes=()
if [ $# -gt 0 ]; then
  for c in "$@"; do [[ "$c" == *.* ]] && classes+=("$c") || classes+=("dev.freshtoken.$c"); done
else
  while IFS= read -r f; do
    pkg=$(sed -n 's/^package \([A-Za-z0-9_.]*\).*/\1/p' "$f" | head -1)
    classes+=("${pkg:+$pkg.}$(basename "$f" .kt)")
  done < <(find bindings/kotlin/src/test/kotlin -name '*Test.kt' | sort)
  while IFS= read -r f; do
    classes+=("$(sed -n 's/^package \([A-Za-z0-9_.]*\);.*/\1/p' "$f" | head -1).$(basename "$f" .java)")
  done < <(find bindings/kotlin/src/test/java -name '*Test.java' | sort)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
java -Xss4m \
  -Djna.library.path="$PWD/$(dirname "$lib")" \
  -Djna.tmpdir="$PWD/$out/jna-tmp" \
  -Dfreshtoken.repo="$PWD" \
  -Dfreshtoken.packagedJar="$PWD/$out/dist/freshtoken-linux-x86-64.jar" \
  -Dfreshtoken.packagedCheck="$PWD/$out/packaging-check" \
  -Dfreshtoken.runtime="$PWD/$K/kotlin-stdlib.jar:$PWD/$K/kotlinx-coroutines-core-jvm.jar:$J/jna.jar" \
  -cp "$out/java-tests:$out/freshtoken-tests.jar:$out/freshtoken.jar:$runtime:$J/junit4.jar:$J/hamcrest-core.jar" \
  org.junit.runner.JUnitCore "${classes[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

if ok=$(grep -oE '^OK \(([0-9]+) tests?\)' "$log" | grep -oE '[0-9]+' | tail -1) && [ -n "$ok" ]; then
  passed=$ok; failed=0
elif line=$(grep -E '^Tests run: [0-9]+, +Failures: [0-9]+' "$log" | tail -1) && [ -n "$line" ]; then
  run=$(sed -E 's/^Tests run: ([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
  passed=$((run - failed))
else
  passed=0; failed=1
fi
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
