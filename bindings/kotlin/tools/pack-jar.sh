#!/usr/bin/env bash
# Packs the compiled binding and the native library into one jar, the library
# at JNA's resource path for this platform (linux-x86-64/libfreshtoken.so), so
# a JVM user adds this jar, JNA, kotlin-stdlib and kotlinx-coroutines-core
# and nothing else: JNA extracts the library from the classpath. Also packs
# the R8/ProGuard consumer rules (src/main/resources/META-INF/proguard/
# freshtoken.pro) at META-INF/proguard/, where the Android Gradle plugin
# applies them to an app that depends on the jar.
#   bash bindings/kotlin/tools/pack-jar.sh LIB.so CLASSES.jar OUT.jar
set -euo pipefail
lib=$1; classes=$2; out=$3
rules="$(cd "$(dirname "$0")/.." && pwd)/src/main/resources/META-INF/proguard/freshtoken.pro"
[ -f "$rules" ] || { echo "[pack-jar] missing $rules" >&2; exit 1; }
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "[pack-jar] only linux-x86-64 is packed here" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/linux-x86-64"
cp "$lib" "$work/linux-x86-64/libfreshtoken.so"
mkdir -p "$work/META-INF/proguard"
cp "$rules" "$work/META-INF/proguard/freshtoken.pro"
mkdir -p "$(dirname "$out")"
cp "$classes" "$out.tmp"
jar uf "$out.tmp" -C "$work" linux-x86-64/libfreshtoken.so -C "$work" META-INF/proguard/freshtoken.pro
mv "$out.tmp" "$out"
echo "[pack-jar] $out ($(du -h "$out" | cut -f1); linux-x86-64/libfreshtoken.so and META-INF/proguard/freshtoken.pro inside)"
