#!/usr/bin/env bash
# The Kotlin/JVM jar as users install it: the binding's classes and the
# RELEASE native library for linux-x86-64 inside (JNA's resource path
# linux-x86-64/libfreshtoken.so). Prints the jar's path.
#   bash scripts/package-kotlin.sh      -> target/kotlin/dist/freshtoken-linux-x86-64.jar
# A JVM app then needs only: this jar, JNA 5.x, kotlin-stdlib,
# kotlinx-coroutines-core-jvm (no -Djna.library.path).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi
bash scripts/setup-kotlin.sh >&2
built=$(bash scripts/build-ffi.sh --release)
lib=$(sed -n 's/^\[build-ffi\] \([^ ]*libfreshtoken\.so\) .*/\1/p' <<<"$built" | tail -1)
K=.tools/node_modules/kotlin-compiler/lib
J=/usr/share/java
runtime="$K/kotlin-stdlib.jar:$K/kotlinx-coroutines-core-jvm.jar:$J/jna.jar"
bash bindings/kotlin/tools/compile.sh target/kotlin/freshtoken.jar "$runtime" \
  target/bindings/kotlin/dev/freshtoken/freshtoken.kt bindings/kotlin/src/main/kotlin >&2
bash bindings/kotlin/tools/pack-jar.sh "$lib" target/kotlin/freshtoken.jar target/kotlin/dist/freshtoken-linux-x86-64.jar >&2
echo target/kotlin/dist/freshtoken-linux-x86-64.jar
