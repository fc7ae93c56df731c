#!/usr/bin/env bash
# Compiles Kotlin sources into a jar with the npm kotlinc, unless the jar is
# already built from the same inputs (sources, classpath jars, options).
#   bash bindings/kotlin/tools/compile.sh OUT.jar CLASSPATH SOURCE_OR_DIR...
# Run from the repository root, after scripts/setup-kotlin.sh.
set -euo pipefail

out=$1; classpath=$2; shift 2
kotlinc=.tools/node_modules/kotlin-compiler/bin/kotlinc
options=(-jvm-target 17 -nowarn)
# KOTLIN_WARNINGS=1 shows warnings (the generated code has many).
[ "${KOTLIN_WARNINGS:-0}" = 1 ] && options=(-jvm-target 17)
# KOTLIN_FRIEND=a.jar lets these sources see that jar's `internal` members
# (the tests read the client's mirror and its native-use counter).
[ -n "${KOTLIN_FRIEND:-}" ] && options+=("-Xfriend-paths=$KOTLIN_FRIEND")

sources=()
for arg in "$@"; do
  if [ -d "$arg" ]; then
    while IFS= read -r f; do sources+=("$f"); done < <(find "$arg" -name '*.kt' | sort)
  else
    sources+=("$arg")
  fi
done

stamp="$out.inputs"
digest=$(
  {
    echo "options ${options[*]}"
    cat "$(dirname "$kotlinc")/../build.txt" 2>/dev/null || true
    sha256sum "${sources[@]}"
    IFS=: read -ra cp <<<"$classpath"
    for jar in "${cp[@]}"; do [ -f "$jar" ] && sha256sum "$jar"; done
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  echo "[kotlinc] $out is up to date"
  exit 0
fi

mkdir -p "$(dirname "$out")"
rm -f "$out" "$stamp"
start=$(date +%s)
"$kotlinc" "${options[@]}" -cp "$classpath" -d "$out" "${sources[@]}"
echo "$digest" > "$stamp"
echo "[kotlinc] built $out (${#sources[@]} files) in $(( $(date +%s) - start )) s"
