#!/usr/bin/env bash
# The Kotlin binding's benchmark: the cached session.token() path, against
# the RELEASE library. Builds what is missing (setup-kotlin.sh,
# build-ffi.sh --release, kotlinc into target/kotlin/), then prints one JSON
# line: {"name":"kotlin cached token()","ns_per_call":N}
#   bash scripts/bench-kotlin.sh [calls-per-round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then export PATH="$HOME/.cargo/bin:$PATH"; fi

bash scripts/setup-kotlin.sh >&2
# build-ffi.sh names the library it built ("[build-ffi] <path> and bindings …").
built=$(bash scripts/build-ffi.sh --release)
echo "$built" >&2
lib=$(sed -n 's/^\[build-ffi\] \([^ ]*libfreshtoken\.so\) .*/\1/p' <<<"$built" | tail -1)
[ -n "$lib" ] && [ -f "$lib" ] || { echo "[bench-kotlin] cannot find the release library" >&2; exit 1; }

K=.tools/node_modules/kotlin-compiler/lib
J=/usr/share/java
out=target/kotlin
mkdir -p "$out/jna-tmp"
runtime="$K/kotlin-stdlib.jar:$K/kotlinx-coroutines-core-jvm.jar:$J/jna.jar"

bash bindings/kotlin/tools/compile.sh "$out/freshtoken.jar" "$runtime" \
  target/bindings/kotlin/dev/freshtoken/freshtoken.kt bindings/kotlin/src/main/kotlin >&2
bash bindings/kotlin/tools/compile.sh "$out/freshtoken-bench.jar" "$out/freshtoken.jar:$runtime" \
  bindings/kotlin/bench >&2

exec java \
  -Djna.library.path="$PWD/$(dirname "$lib")" \
  -Djna.tmpdir="$PWD/$out/jna-tmp" \
  -cp "$out/freshtoken-bench.jar:$out/freshtoken.jar:$runtime" \
  dev.freshtoken.bench.CachedTokenBenchKt "$@"
