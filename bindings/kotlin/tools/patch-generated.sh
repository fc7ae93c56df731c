#!/usr/bin/env bash
# Patches uniffi 0.32's generated Kotlin (freshtoken.kt). Four changes, each
# applied only if the generated text is exactly what it expects; otherwise
# the script fails without touching the file (a uniffi upgrade must be looked
# at, not silently patched). Running it twice is a no-op.
#
# 1. EVERY Throwable a host callback throws reaches the core as a failure.
#    The generated helpers that run host callbacks (uniffiTraitInterfaceCall,
#    …WithError, uniffiTraitInterfaceCallAsync, …AsyncWithError) catch only
#    kotlin.Exception. An Error (NotImplementedError from TODO(),
#    AssertionError, StackOverflowError, ExceptionInInitializerError, …)
#    then escapes: an async callback never answers the core (its call waits
#    for the store deadline) and the Error goes to the thread's
#    uncaught-exception handler (on Android: the app crashes); a sync
#    callback returns a zeroed value as if it had succeeded. Catching
#    Throwable there makes each of them a HostException-style failure.
#
# 2. The call status is reused instead of allocated on every call.
#    uniffiRustCallWithError (every FFI call but the async ones' start)
#    made a new UniffiRustCallStatus, a JNA Structure holding a nested
#    RustBuffer Structure: two native allocations, each registered with
#    JNA's single Cleaner thread, and reflective field setup. With Debian's
#    JNA 5.13 that cost ~10-45 µs per call here, most of a call (an FFI
#    call with a reused status costs ~3 µs). The patch keeps one status per
#    thread: it is taken out of a ThreadLocal for the call (so a nested call
#    from a callback on the same thread gets its own), and put back only
#    after a SUCCESS, when Rust has not written to it (uniffi's happy path
#    leaves the status untouched: code 0, an empty error buffer). A status
#    that carried an error is dropped.
#
# 3. uniffi 0.32's `rename` (uniffi.toml [bindings.kotlin.rename]) misses
#    a few places: secondary constructors (TokenClient's three and EncryptionKey's)
#    still name the old error type
#    (`FreshTokenException`), return type and converter of TokenClient and
#    of EncryptionKey.fromBase64, and
#    the Display trait methods of TokenInfo and the error their old converters. Each is
#    replaced by the renamed one, with the exact count checked.
#
# 4. The event listener's thread is a named daemon, attached once.
#    The core calls EventListener.onEvent on a thread of its own per client
#    (src/ffi/events.rs). JNA attaches such a native thread to the JVM for
#    each callback by default: as an anonymous non-daemon "Thread-N" (a
#    listener stuck in a call could hold up the JVM's exit), attached and
#    detached again for every event. The patch gives the onEvent callback a
#    CallbackThreadInitializer (daemon, stays attached, "freshtoken-events")
#    before the vtable that holds it is first written to native memory;
#    JNA detaches the thread when it ends (its thread-local destructor).
#
#   bash bindings/kotlin/tools/patch-generated.sh path/to/freshtoken.kt
set -euo pipefail
file=$1
fail() { echo "[patch-generated] $* in $file (uniffi's output changed: review the patch)" >&2; exit 1; }

if grep -qF 'freshtoken: catches Throwable' "$file" && grep -qF 'freshtoken: reused call status' "$file" \
  && grep -qF 'freshtoken: the event listener' "$file"; then
  exit 0 # already patched
fi

# --- 1: catch Throwable in the four host-callback helpers.
pattern='} catch(e: kotlin.Exception) {'
count=$(grep -cF "$pattern" "$file" || true)
[ "$count" = 4 ] || fail "expected 4 host-callback catches of kotlin.Exception, found $count"

# --- 2: the call-status pool. The function must read exactly like this.
expected='private inline fun <U, E: kotlin.Exception> uniffiRustCallWithError(errorHandler: UniffiRustCallStatusErrorHandler<E>, callback: (UniffiRustCallStatus) -> U): U {
    var status = UniffiRustCallStatus()
    val return_value = callback(status)
    uniffiCheckCallStatus(errorHandler, status)
    return return_value
}'
replacement='private inline fun <U, E: kotlin.Exception> uniffiRustCallWithError(errorHandler: UniffiRustCallStatusErrorHandler<E>, callback: (UniffiRustCallStatus) -> U): U {
    // freshtoken: reused call status (bindings/kotlin/tools/patch-generated.sh)
    val status = uniffiCallStatusPool.get()?.also { uniffiCallStatusPool.set(null) } ?: UniffiRustCallStatus()
    val return_value = callback(status)
    uniffiCheckCallStatus(errorHandler, status)
    if (status.code == UNIFFI_CALL_SUCCESS) uniffiCallStatusPool.set(status)
    return return_value
}

// freshtoken: one idle call status per thread; only ever holds a status after a success.
internal val uniffiCallStatusPool = ThreadLocal<UniffiRustCallStatus>()'

EXPECTED="$expected" REPLACEMENT="$replacement" python3 - "$file" "$pattern" <<'PY' || exit 1
import os, sys
path, pattern = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
expected, replacement = os.environ["EXPECTED"], os.environ["REPLACEMENT"]
if text.count(expected) != 1:
    sys.stderr.write(f"[patch-generated] expected uniffiRustCallWithError exactly as written in the script, found it {text.count(expected)} times in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
text = text.replace(expected, replacement)
text = text.replace(pattern, "} catch(e: kotlin.Throwable) { // freshtoken: catches Throwable (bindings/kotlin/tools/patch-generated.sh)")
# 3: names uniffi's rename missed: (old, new, how many).
for old, new, n in [
    ("uniffiRustCallWithError(FreshTokenException)", "uniffiRustCallWithError(FfiFreshTokenException)", 6),
    ("FfiConverterTypeTokenClient.lift(", "FfiConverterTypeFfiTokenClient.lift(", 3),
    ("FfiConverterTypeTokenInfo.lower(", "FfiConverterTypeFfiTokenInfo.lower(", 1),
    ("FfiConverterTypeFreshTokenError.lower(", "FfiConverterTypeFfiFreshTokenError.lower(", 1),
    ("@Throws(FreshTokenException::class) fun `", "@Throws(FfiFreshTokenException::class) fun `", 4),
    ("`http`: HttpClient): TokenClient {", "`http`: HttpClient): FfiTokenClient {", 1),
    ("`clock`: Clock): TokenClient {", "`clock`: Clock): FfiTokenClient {", 1),
    ("`clock`: Clock?): TokenClient {", "`clock`: Clock?): FfiTokenClient {", 1),
    ("FfiConverterTypeEncryptionKey.lift(", "FfiConverterTypeFfiEncryptionKey.lift(", 1),
    ("`key`: kotlin.String): EncryptionKey {", "`key`: kotlin.String): FfiEncryptionKey {", 1),
]:
    if text.count(old) != n:
        sys.stderr.write(f"[patch-generated] expected {n} x {old!r}, found {text.count(old)} in {path} (uniffi's output changed: review the patch)\n")
        sys.exit(1)
    text = text.replace(old, new)
# 4: the event listener's thread (a named daemon, attached once).
vtable = "    internal var vtable = UniffiVTableCallbackInterfaceEventListener.UniffiByValue(\n"
if text.count(vtable) != 1:
    sys.stderr.write(f"[patch-generated] expected the EventListener vtable once, found it {text.count(vtable)} times in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
text = text.replace(vtable, """    // freshtoken: the event listener's thread is a daemon named freshtoken-events, attached
    // once (bindings/kotlin/tools/patch-generated.sh); set before the vtable below is written.
    init {
        com.sun.jna.Native.setCallbackThreadInitializer(
            `onEvent`,
            com.sun.jna.CallbackThreadInitializer(true, false, "freshtoken-events"),
        )
    }

""" + vtable)
open(path, "w", encoding="utf-8").write(text)
PY
