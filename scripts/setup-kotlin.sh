#!/usr/bin/env bash
# Installs what the Kotlin binding's build and tests need, skipping what is
# already there (safe to run again and again; called by test-kotlin.sh and
# bench-kotlin.sh):
#   - JNA and JUnit 4 from Debian (apt libjna-java junit4), as root;
#   - javac and jar (apt openjdk-17-jdk-headless) if the JDK lacks them;
#   - the Kotlin compiler from npm (kotlin-compiler 2.4.20) into .tools/,
#     which also ships kotlin-stdlib, kotlinx-coroutines-core-jvm and
#     kotlin-test under its lib/. No Gradle, no Maven.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup-kotlin] %s\n' "$*"; }

KOTLIN_VERSION=2.4.20
BINARYEN_VERSION=132

# JNA + JUnit 4 (+ hamcrest) as jars under /usr/share/java.
if [ ! -f /usr/share/java/jna.jar ] || [ ! -f /usr/share/java/junit4.jar ]; then
  if [ "$(id -u)" != 0 ]; then
    log "JNA/JUnit missing: run as root, or apt-get install libjna-java junit4"
    exit 1
  fi
  command -v apt-get >/dev/null 2>&1 || { log "apt-get not available: install JNA and JUnit 4 yourself"; exit 1; }
  log "installing libjna-java junit4 (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends libjna-java junit4 >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libjna-java junit4 >/dev/null
  fi
fi

# Java: the JDK (java, jar, and javac for the Java API tests).
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1 || ! command -v jar >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || { log "java/javac/jar missing: install a JDK 17 (apt openjdk-17-jdk-headless)"; exit 1; }
  log "installing openjdk-17-jdk-headless (apt) for javac and jar"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless >/dev/null; }
fi

# kotlinc from npm, next to binaryen (wasm-opt) in .tools/.
kotlinc=.tools/node_modules/kotlin-compiler/bin/kotlinc
if [ ! -x "$kotlinc" ]; then
  log "installing kotlin-compiler ${KOTLIN_VERSION} into .tools/"
  mkdir -p .tools
  [ -f .tools/package.json ] || echo '{ "private": true }' > .tools/package.json
  had_binaryen=false
  [ -x .tools/node_modules/.bin/wasm-opt ] && had_binaryen=true
  (cd .tools && npm install --no-audit --no-fund --no-save --loglevel=error "kotlin-compiler@${KOTLIN_VERSION}")
  # --no-save prunes packages that are not in package.json: put binaryen back
  # (both in one command, so that neither removes the other).
  if $had_binaryen && [ ! -x .tools/node_modules/.bin/wasm-opt ]; then
    log "npm removed binaryen: installing binaryen and kotlin-compiler together"
    (cd .tools && npm install --no-audit --no-fund --no-save --loglevel=error \
      "binaryen@${BINARYEN_VERSION}" "kotlin-compiler@${KOTLIN_VERSION}")
  fi
fi
[ -x "$kotlinc" ] || chmod +x "$kotlinc" 2>/dev/null || true
[ -x "$kotlinc" ] || { log "kotlinc missing at $kotlinc after install"; exit 1; }
log "Kotlin ready (kotlin-compiler ${KOTLIN_VERSION}, $(java -version 2>&1 | head -1))"
