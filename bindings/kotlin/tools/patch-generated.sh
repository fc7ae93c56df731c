#!/usr/bin/env bash
# Patches uniffi 0.32's generated Kotlin (freshtoken.kt) so that EVERY
# Throwable a host callback throws reaches the core as a failure.
#
# The generated helpers that run host callbacks (uniffiTraitInterfaceCall,
# …WithError, uniffiTraitInterfaceCallAsync, …AsyncWithError) catch only
# kotlin.Exception. An Error (NotImplementedError from TODO(),
# AssertionError, StackOverflowError, ExceptionInInitializerError, …) then
# escapes: an async callback never answers the core (its call waits for the
# store deadline) and the Error goes to the thread's uncaught-exception
# handler (on Android: the app crashes); a sync callback returns a zeroed
# value as if it had succeeded. Catching Throwable there makes each of them a
# HostException-style failure (CancellationException already was one: it is
# an Exception).
#
#   bash bindings/kotlin/tools/patch-generated.sh path/to/freshtoken.kt
# Fails, without touching the file, unless it finds exactly the four catches
# it expects (a uniffi upgrade must be looked at, not silently patched).
set -euo pipefail
file=$1
pattern='} catch(e: kotlin.Exception) {'
count=$(grep -cF "$pattern" "$file" || true)
if grep -qF 'freshtoken: catches Throwable' "$file"; then
  exit 0 # already patched
fi
if [ "$count" != 4 ]; then
  echo "[patch-generated] expected 4 host-callback catches of kotlin.Exception in $file, found $count" >&2
  exit 1
fi
sed -i "s/} catch(e: kotlin\.Exception) {/} catch(e: kotlin.Throwable) { \/\/ freshtoken: catches Throwable (bindings\/kotlin\/tools\/patch-generated.sh)/" "$file"
