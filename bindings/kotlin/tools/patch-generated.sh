#!/usr/bin/env bash
# Patches uniffi 0.32's generated Kotlin (freshtoken.kt). Eleven changes, each
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
# 5. What a host callback hands back, or leaves behind, always reaches Rust
#    properly (the async helpers, and the interrupt flag in the sync one).
#    - The conversion of an async callback's result for Rust (`handleSuccess`:
#      lowering the value, writing the struct) ran outside the `try`: a
#      value the converter cannot lower (a null HttpResponse or CasResult
#      from Java code, a null element in a headers list) threw there, so
#      neither success nor error reached Rust; the call waited out its
#      whole deadline (a misleading "did not answer within" or Timeout) and
#      the exception went to the uncaught-exception handler. Now a failure
#      before the JNA call into Rust is reported as the callback's failure
#      (Storage for a store; Network that may have been sent for HTTP, since
#      the host's send ran). Each of the 8 success lambdas wraps its JNA
#      call in `uniffiSuccessCallback`, so a failure of that call itself
#      (Rust may hold its answer) is never answered a second time.
#    - The failure's text was `e.toString()`, unguarded: an exception whose
#      toString() throws escaped the same way. Now it falls back to the
#      class name; a HostException whose lowering fails is reported as an
#      unexpected error instead.
#    - A failure's text with a lone UTF-16 surrogate (a message holding
#      one, e.g. a driver quoting a bad row) has no UTF-8: lowering it threw
#      inside the catch, so again nothing reached Rust (the call waited out
#      its deadline, the exception went to the uncaught-exception handler,
#      and an abandoned save locked the key out for 12 deadlines). Now every
#      failure text is made safe first (`uniffiSafeText`: each lone
#      surrogate becomes U+FFFD), in the async helpers and the sync ones (the
#      stack trace they report), and a HostException is lowered as the
#      same kind with its message made safe (`uniffiSafeHostError`, in each
#      of the 12 lowerError lambdas), so it reaches Rust at once as
#      itself: Failed as `storage`/`network`, NotSent still retried.
#    - A callback that sets its thread's interrupt flag (Java's idiom:
#      `Thread.currentThread().interrupt(); throw …`) left a shared
#      Dispatchers.Default worker interrupted until it next idled; a later
#      FileChannel on it (FileTokenStore) failed with
#      ClosedByInterruptException. The async helpers clear the flag when
#      the callback ends (their coroutine runs on a shared dispatcher
#      worker, never a caller's thread: change 8); the sync one (Clock.nowMs, supportsLease,
#      …, which run on the thread that polls the core, possibly the
#      caller's own) clears it only on a DefaultDispatcher worker whose
#      flag was clear before the callback.
#
# 6. A string without UTF-8 is a typed error, never a checked IOException.
#    FfiConverterString.toUtf8 (every String lowered for Rust) encodes with
#    CodingErrorAction.REPORT, so a lone UTF-16 surrogate threw
#    java.nio.charset.MalformedInputException, a checked IOException that no
#    public method declares. The hand-written layer checks every String
#    argument first (Arguments.kt: a Config error naming the parameter);
#    as a backstop for one it misses, the converter throws
#    FfiFreshTokenException.Config (field `argument`, the value never
#    quoted) instead, which the layer's ffiCall turns into
#    FreshTokenException.Config. (A host callback's result with a lone
#    surrogate is the callback's failure through change 5, as before.)
#
# 7. A closed (destroyed) object never reaches Rust.
#    Every object's uniffiCloneHandle(), which the converters' `lower` call
#    when the object is passed as an argument (an EncryptionKey to
#    EncryptedStore, an EncryptedStore to a session), cloned the native Arc
#    without asking whether destroy() had already freed it: a closed key or
#    store used again crashed the JVM (SIGILL/SIGSEGV in Arc's refcount).
#    It now keeps the object alive for the clone with the same call counter
#    its methods use (callWithHandle), and throws IllegalStateException
#    ("… object has already been destroyed", as a closed object's own
#    methods do) once it was destroyed. The hand-written layer checks first
#    and names the parameter (FreshTokenException.Config); this is the
#    backstop for every uniffi object, and closes the check-then-use race.
#
# 8. Host callbacks run, and are cancelled, on freshtoken's own dispatcher.
#    - uniffi launches each async callback (store, HTTP) in GlobalScope on
#      Dispatchers.Default. An app that keeps Default's workers (one per
#      CPU) busy, with CPU work or runBlocking, held a callback's answer past
#      its deadline: the HTTP response with a rotated refresh token never
#      reached Rust, the call ended in Timeout, and the next one in
#      ReauthorizationRequired(LOST_ROTATION). They now run on
#      uniffiHostDispatcher, a view of Dispatchers.IO with its own
#      parallelism (see the comment on it for why not IO itself).
#    - When Rust drops a callback's future (its deadline passed),
#      uniffiForeignFutureDroppedCallbackImpl called job.cancel() at once, on
#      the Rust thread that dropped it (the caller's, or the process-wide
#      freshtoken-flights thread): a host cancellation handler that blocked
#      (invokeOnCancellation, a CompletableFuture's dependent stage under
#      await()) held up the caller's deadline and other clients' abandoned
#      refreshes. The cancel is now handed off to uniffiHostDispatcher.
#    - A cancellation handler that threw reached the uncaught-exception
#      handler (CompletionHandlerException; on Android the app dies). The
#      callbacks' context has a CoroutineExceptionHandler that drops those
#      (the core already took the callback's failure) and passes anything
#      else to the thread's uncaught-exception handler, as before.
#
# 9. A caller's coroutine never resumes inline on the thread that woke it.
#    Rust wakes a pending call (uniffiRustFutureContinuationCallbackImpl) on
#    whatever thread completed what it waited for: a host callback's worker
#    inside its JNA call into Rust that delivers the answer, freshtoken-timer
#    (a deadline), freshtoken-flights. uniffi resumed the continuation right
#    there; a continuation with no dispatcher (Dispatchers.Unconfined, an
#    unconfined test dispatcher, a suspend function called from Java with a
#    bare Continuation) then ran on that thread, polled its Rust future again
#    from inside the call that was delivering its answer, and hung there for
#    good: the caller never returned (no deadline could end it) and a host
#    worker was lost. Woken by the timer, it ran the caller's own code on
#    freshtoken-timer, where a blocking line stopped every deadline of the
#    process. Such a continuation is now resumed on Dispatchers.Default
#    instead; one with a dispatcher is resumed as before (it dispatches).
#
# 10. One host object's stuck callbacks cannot starve every other's.
#    Every async callback of every client ran on the one dispatcher of
#    change 8, 64 threads. A host whose callbacks block their thread for
#    good (a blocking HTTP client with no read timeout against a server
#    that never answers, a JDBC call on a dead connection) is abandoned by
#    the core at each deadline but keeps the thread: once 64 were stuck,
#    no callback of any client ran, not even the delivery of an answer
#    that another client's healthy HttpClient had already received, so
#    that client's rotated refresh token was lost (Timeout, in doubt,
#    LOST_ROTATION). Each host object (a store, an HTTP client, a clock;
#    a store under the per-session FixedCapabilities wrapper counts as
#    itself) now gets its own view of 64 threads, within a process-wide
#    view of 1024: one stuck host holds at most 64 threads, and the
#    others' callbacks go on. Hosts are told apart by identity (weakly
#    held), never by their own hashCode/equals, which would run host code
#    on the Rust thread that starts the callback.
#
# 11. A record's toString() never throws.
#    The records exported with Display (SeedOptions, TokenClientOptions,
#    HttpHeader, …) print through Rust, which lowers every field: a field
#    holding a lone UTF-16 surrogate made toString() throw change 6's
#    FfiFreshTokenException.Config, so a logger or a debugger printing bad
#    user input threw, with an internal exception type. toString() now
#    prints `TypeName(<unprintable: …>)` then, naming no value.
#
#   bash bindings/kotlin/tools/patch-generated.sh path/to/freshtoken.kt
set -euo pipefail
file=$1
fail() { echo "[patch-generated] $* in $file (uniffi's output changed: review the patch)" >&2; exit 1; }

if grep -qF 'freshtoken: catches Throwable' "$file" && grep -qF 'freshtoken: reused call status' "$file" \
  && grep -qF 'freshtoken: the event listener' "$file" && grep -qF 'freshtoken: host results reach Rust' "$file" \
  && grep -qF 'freshtoken: a string without UTF-8' "$file" && grep -qF 'freshtoken: a destroyed object' "$file" \
  && grep -qF 'freshtoken: host callbacks run on' "$file" && grep -qF 'freshtoken: a woken call resumes' "$file" \
  && grep -qF 'freshtoken: a view per host object' "$file" && grep -qF 'freshtoken: change 11' "$file"; then
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
# 5: results, failures and interrupt flags of host callbacks (on the text as patched by 1).
CATCH = "catch(e: kotlin.Throwable) { // freshtoken: catches Throwable (bindings/kotlin/tools/patch-generated.sh)"
MARK = "// freshtoken: host results reach Rust (bindings/kotlin/tools/patch-generated.sh, change 5)"
async_plain = """        val callResult = try {
            makeCall()
        } CATCH
            handleError(
                UniffiRustCallStatus.create(
                    UNIFFI_CALL_UNEXPECTED_ERROR,
                    FfiConverterString.lower(e.toString()),
                )
            )
            return@coroutineBlock
        }
        handleSuccess(callResult)
""".replace("CATCH", CATCH)
async_plain_new = """        MARK
        val callResult = try {
            try { makeCall() } finally { uniffiHostCallbackEnded() }
        } CATCH
            handleError(uniffiUnexpectedCallbackError(e, null))
            return@coroutineBlock
        }
        uniffiSUCCESS
""".replace("CATCH", CATCH).replace("MARK", MARK)
async_error = """        val callResult = try {
            makeCall()
        } CATCH
            if (e is E) {
                handleError(
                    UniffiRustCallStatus.create(
                        UNIFFI_CALL_ERROR,
                        lowerError(e),
                    )
                )
            } else {
                handleError(
                    UniffiRustCallStatus.create(
                        UNIFFI_CALL_UNEXPECTED_ERROR,
                        FfiConverterString.lower(e.toString()),
                    )
                )
            }
            return@coroutineBlock
        }
        handleSuccess(callResult)
""".replace("CATCH", CATCH)
async_error_new = """        MARK
        val callResult = try {
            try { makeCall() } finally { uniffiHostCallbackEnded() }
        } CATCH
            val status = if (e is E) {
                try {
                    UniffiRustCallStatus.create(UNIFFI_CALL_ERROR, lowerError(e))
                } catch(_: kotlin.Throwable) {
                    uniffiUnexpectedCallbackError(e, null)
                }
            } else {
                uniffiUnexpectedCallbackError(e, null)
            }
            handleError(status)
            return@coroutineBlock
        }
        uniffiSUCCESS
""".replace("CATCH", CATCH).replace("MARK", MARK)
success = """try {
            handleSuccess(callResult)
        } catch(e: UniffiSuccessCallbackFailed) {
            // The JNA call into Rust failed: Rust may hold its answer, so it gets no second one.
            throw e.cause ?: e
        } catch(e: kotlin.Throwable) {
            // Converting the host's result for Rust failed (a null from Java code, a null
            // element in a list, ...): nothing reached Rust yet, so it gets this failure.
            handleError(uniffiUnexpectedCallbackError(e, "the host's result cannot be passed to freshtoken"))
        }
"""
async_plain_new = async_plain_new.replace("uniffiSUCCESS\n", success)
async_error_new = async_error_new.replace("uniffiSUCCESS\n", success)
sync_error = """    try {
        writeReturn(makeCall())
    } CATCH
        if (e is E) {
            callStatus.code = UNIFFI_CALL_ERROR
            callStatus.error_buf = lowerError(e)
        } else {
""".replace("CATCH", CATCH)
sync_error_new = """    MARK
    val uniffiClearsInterrupt = uniffiMayClearInterrupt()
    try {
        try { writeReturn(makeCall()) } finally { if (uniffiClearsInterrupt) Thread.interrupted() }
    } CATCH
        val lowered = if (e is E) {
            try { lowerError(e) } catch(_: kotlin.Throwable) { null }
        } else {
            null
        }
        if (lowered != null) {
            callStatus.code = UNIFFI_CALL_ERROR
            callStatus.error_buf = lowered
        } else {
""".replace("CATCH", CATCH).replace("MARK", MARK)
helpers_anchor = "internal inline fun<T> uniffiTraitInterfaceCallAsync(\n"
helpers = """// freshtoken: helpers of the host-callback wrappers (bindings/kotlin/tools/patch-generated.sh, change 5).

/** A host callback's failure as uniffi's unexpected-error status; describing and lowering it never throw. */
internal fun uniffiUnexpectedCallbackError(e: Throwable, context: String?): UniffiRustCallStatus.ByValue {
    val described = try { e.toString() } catch(_: Throwable) { e.javaClass.name }
    val text = if (context == null) described else "$context ($described)"
    return UniffiRustCallStatus.create(UNIFFI_CALL_UNEXPECTED_ERROR, FfiConverterString.lower(uniffiSafeText(text)))
}

/**
 * [text] with each lone UTF-16 surrogate replaced by U+FFFD (the same
 * instance when it has none): a host's message with one has no UTF-8, and
 * lowering it would throw inside the failure path, so the failure would
 * never reach Rust.
 */
internal fun uniffiSafeText(text: String): String {
    var out: StringBuilder? = null
    var i = 0
    while (i < text.length) {
        val c = text[i]
        val pair = Character.isHighSurrogate(c) && i + 1 < text.length && Character.isLowSurrogate(text[i + 1])
        if (pair) {
            out?.append(c)?.append(text[i + 1])
            i += 2
            continue
        }
        if (Character.isSurrogate(c)) {
            if (out == null) out = StringBuilder(text.length).append(text, 0, i)
            out.append('\\uFFFD')
        } else {
            out?.append(c)
        }
        i++
    }
    return out?.toString() ?: text
}

/** [e], or the same HostException with its message made safe by [uniffiSafeText], so that it lowers as its own kind. */
internal fun uniffiSafeHostError(e: HostException): HostException = when (e) {
    is HostException.Failed -> uniffiSafeText(e.detail).let { if (it === e.detail) e else HostException.Failed(it) }
    is HostException.NotSent -> uniffiSafeText(e.detail).let { if (it === e.detail) e else HostException.NotSent(it) }
    is HostException.Timeout -> e
}

/** An async callback's JNA call into Rust (its success) failed; Rust may already hold the answer. */
internal class UniffiSuccessCallbackFailed(cause: Throwable) : RuntimeException(cause)

/** Runs a success lambda's JNA call into Rust, marking what it throws as [UniffiSuccessCallbackFailed]. */
internal inline fun uniffiSuccessCallback(call: () -> Unit) {
    try {
        call()
    } catch(e: Throwable) {
        throw UniffiSuccessCallbackFailed(e)
    }
}

/**
 * An async host callback ended (returned or threw) on this thread, a shared
 * dispatcher worker (change 8): clears an interrupt flag it may have left, so
 * that the next task on the worker (a FileChannel write, say) is not interrupted.
 */
internal fun uniffiHostCallbackEnded() {
    Thread.interrupted()
}

/**
 * Whether a sync host callback about to run here may have its interrupt
 * flag cleared afterwards: only on a shared DefaultDispatcher worker that
 * is not interrupted now (a caller's own thread, and an interrupt that was
 * there before, are left alone).
 */
internal fun uniffiMayClearInterrupt(): Boolean {
    val thread = Thread.currentThread()
    return thread.name.startsWith("DefaultDispatcher-worker-") && !thread.isInterrupted
}

"""
success_call = "uniffiFutureCallback.callback(uniffiCallbackData, uniffiResult)"
for old, new, n in [
    (async_plain, async_plain_new, 1),
    (async_error, async_error_new, 1),
    (sync_error, sync_error_new, 1),
    (helpers_anchor, helpers + helpers_anchor, 1),
    (success_call, "uniffiSuccessCallback { " + success_call + " }", 8),
    # A HostException lowers with its message made safe (still its own kind: NotSent stays retryable).
    ("{ e: HostException -> FfiConverterTypeHostError.lower(e) }",
     "{ e: HostException -> FfiConverterTypeHostError.lower(uniffiSafeHostError(e)) }", 12),
    # The sync helpers' unexpected-error text (a stack trace) too.
    ("callStatus.error_buf = FfiConverterString.lower(err)",
     "callStatus.error_buf = FfiConverterString.lower(uniffiSafeText(err))", 2),
]:
    if text.count(old) != n:
        sys.stderr.write(f"[patch-generated] change 5: expected {n} x {old[:60]!r}…, found {text.count(old)} in {path} (uniffi's output changed: review the patch)\n")
        sys.exit(1)
    text = text.replace(old, new)
# 6: a string without UTF-8 (a lone surrogate) is a typed error, not MalformedInputException.
to_utf8 = """    fun toUtf8(value: String): ByteBuffer {
        // Make sure we don't have invalid UTF-16, check for lone surrogates.
        return Charsets.UTF_8.newEncoder().run {
            onMalformedInput(CodingErrorAction.REPORT)
            encode(CharBuffer.wrap(value))
        }
    }
"""
to_utf8_new = """    fun toUtf8(value: String): ByteBuffer {
        // Make sure we don't have invalid UTF-16, check for lone surrogates.
        // freshtoken: a string without UTF-8 is a typed error (bindings/kotlin/tools/patch-generated.sh, change 6)
        return try {
            Charsets.UTF_8.newEncoder().run {
                onMalformedInput(CodingErrorAction.REPORT)
                encode(CharBuffer.wrap(value))
            }
        } catch(_: java.nio.charset.CharacterCodingException) {
            throw FfiFreshTokenException.Config(
                "argument",
                "invalid configuration `argument`: a string contains a lone UTF-16 surrogate (it has no UTF-8)",
                false,
            )
        }
    }
"""
if text.count(to_utf8) != 1:
    sys.stderr.write(f"[patch-generated] change 6: expected FfiConverterString.toUtf8 exactly once as written in the script, found it {text.count(to_utf8)} times in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
text = text.replace(to_utf8, to_utf8_new)
# 7: a destroyed object never reaches Rust (its handle is cloned under the call counter).
import re
clone = re.compile(r"""    fun uniffiCloneHandle\(\): Long \{
        if \(handle == 0\.toLong\(\)\) \{
            throw InternalException\("uniffiCloneHandle\(\) called on NoHandle object"\);
        \}
        return uniffiRustCall\(\) \{ status ->
            UniffiLib\.(uniffi_freshtoken_fn_clone_\w+)\(handle, status\)
        \}
    \}
""")
clone_new = r"""    fun uniffiCloneHandle(): Long {
        if (handle == 0.toLong()) {
            throw InternalException("uniffiCloneHandle() called on NoHandle object");
        }
        // freshtoken: a destroyed object never reaches Rust (bindings/kotlin/tools/patch-generated.sh, change 7)
        do {
            val c = this.callCounter.get()
            if (c == 0L) {
                throw IllegalStateException("$${this.javaClass.simpleName} object has already been destroyed")
            }
            if (c == Long.MAX_VALUE) {
                throw IllegalStateException("$${this.javaClass.simpleName} call counter would overflow")
            }
        } while (! this.callCounter.compareAndSet(c, c + 1L))
        try {
            return uniffiRustCall() { status ->
                UniffiLib.\1(handle, status)
            }
        } finally {
            if (this.callCounter.decrementAndGet() == 0L) {
                cleanable?.clean()
            }
        }
    }
""".replace("$$", "$")
n_defs = text.count("    fun uniffiCloneHandle(): Long {\n")
text, n = clone.subn(clone_new, text)
if n != 8 or n_defs != 8:
    sys.stderr.write(f"[patch-generated] change 7: expected 8 uniffiCloneHandle() as written in the script, found {n} of {n_defs} in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
# 8: host callbacks run, and are cancelled, on freshtoken's dispatcher.
host_helpers = """// freshtoken: host callbacks run on their own dispatcher (bindings/kotlin/tools/patch-generated.sh, change 8).

/**
 * Where every async host callback (store, HTTP) and its cancellation run.
 * Not Dispatchers.Default (uniffi's choice): an app that keeps its few
 * workers (one per CPU) busy held a callback's answer, a rotated refresh
 * token among them, past its deadline. Not Dispatchers.IO itself: the app's
 * own blocking I/O may fill its 64 threads. A view of IO with 64 of its own
 * is bounded by neither, and shares IO's daemon threads (nothing to shut down).
 */
@OptIn(kotlinx.coroutines.ExperimentalCoroutinesApi::class)
internal val uniffiHostDispatcher: kotlinx.coroutines.CoroutineDispatcher =
    kotlinx.coroutines.Dispatchers.IO.limitedParallelism(64)

/**
 * What a host callback's coroutine reports: a host cancellation handler that
 * threw (CompletionHandlerException) is dropped, since the core already took
 * the callback's failure (on Android the uncaught-exception handler ends the
 * app); anything else (a failed JNA call into Rust) goes to the thread's
 * uncaught-exception handler, as it did.
 */
@OptIn(kotlinx.coroutines.InternalCoroutinesApi::class)
internal fun uniffiHostCallbackReport(e: Throwable) {
    if (e is kotlinx.coroutines.CompletionHandlerException) return
    val thread = Thread.currentThread()
    thread.uncaughtExceptionHandler?.uncaughtException(thread, e)
}

/** The context host callbacks are launched in. */
internal val uniffiHostCallbackContext: kotlin.coroutines.CoroutineContext =
    uniffiHostDispatcher + kotlinx.coroutines.CoroutineExceptionHandler { _, e -> uniffiHostCallbackReport(e) }

/**
 * Cancels an abandoned host callback on [uniffiHostDispatcher], never on the
 * Rust thread that dropped its future (the caller's, or freshtoken-flights):
 * a host cancellation handler runs inside cancel(), and one that blocked
 * there held up the caller's deadline and other clients' refreshes.
 */
@OptIn(DelicateCoroutinesApi::class)
internal fun uniffiCancelHostCallback(job: Job) {
    GlobalScope.launch(uniffiHostCallbackContext) { job.cancel() }
}

"""
dropped = """        val job = uniffiForeignFutureHandleMap.remove(handle)
        if (!job.isCompleted) {
            job.cancel()
        }
"""
dropped_new = """        val job = uniffiForeignFutureHandleMap.remove(handle)
        if (!job.isCompleted) {
            uniffiCancelHostCallback(job) // freshtoken: handed off (change 8)
        }
"""
for old, new, n in [
    ("    val job = GlobalScope.launch coroutineBlock@ {\n",
     "    val job = GlobalScope.launch(uniffiHostCallbackContext) coroutineBlock@ { // freshtoken: change 8\n", 2),
    (dropped, dropped_new, 1),
    ("internal val uniffiForeignFutureHandleMap = UniffiHandleMap<Job>()\n",
     host_helpers + "internal val uniffiForeignFutureHandleMap = UniffiHandleMap<Job>()\n", 1),
]:
    if text.count(old) != n:
        sys.stderr.write(f"[patch-generated] change 8: expected {n} x {old[:60]!r}…, found {text.count(old)} in {path} (uniffi's output changed: review the patch)\n")
        sys.exit(1)
    text = text.replace(old, new)
# 9: a woken call never resumes inline on the waking (Rust or host-callback) thread.
resume = """internal object uniffiRustFutureContinuationCallbackImpl: UniffiRustFutureContinuationCallback {
    override fun callback(data: Long, pollResult: Byte) {
        uniffiContinuationHandleMap.remove(data).resume(pollResult)
    }
}
"""
resume_new = """internal object uniffiRustFutureContinuationCallbackImpl: UniffiRustFutureContinuationCallback {
    override fun callback(data: Long, pollResult: Byte) {
        // freshtoken: a woken call resumes off the waking thread (bindings/kotlin/tools/patch-generated.sh, change 9)
        val continuation = uniffiContinuationHandleMap.remove(data)
        if (uniffiResumesInline(continuation)) {
            kotlinx.coroutines.Dispatchers.Default.dispatch(
                kotlin.coroutines.EmptyCoroutineContext,
                Runnable { continuation.resume(pollResult) },
            )
        } else {
            continuation.resume(pollResult)
        }
    }
}

/**
 * Whether resuming [continuation] would run its coroutine right here, on the
 * thread Rust wakes it on (a host callback's worker inside its call into
 * Rust, freshtoken-timer, freshtoken-flights): it has no dispatcher
 * (Dispatchers.Unconfined, a bare Continuation from Java) or one that needs
 * no dispatch. Polling its Rust future again from inside the call that is
 * delivering its answer hung it for good, and its own code on
 * freshtoken-timer could stop every deadline of the process.
 */
internal fun uniffiResumesInline(continuation: CancellableContinuation<Byte>): Boolean {
    val context = continuation.context
    val interceptor = context[kotlin.coroutines.ContinuationInterceptor] ?: return true
    val dispatcher = interceptor as? kotlinx.coroutines.CoroutineDispatcher ?: return false
    return try {
        !dispatcher.isDispatchNeeded(context)
    } catch(_: kotlin.Throwable) {
        false
    }
}
"""
if text.count(resume) != 1:
    sys.stderr.write(f"[patch-generated] change 9: expected uniffiRustFutureContinuationCallbackImpl exactly as written in the script, found it {text.count(resume)} times in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
text = text.replace(resume, resume_new)
# 10: a view of the host dispatcher per host object, within a larger process-wide one.
per_host = """/**
 * The context of a callback on [host] (a store, an HTTP client, a clock):
 * its own view of [uniffiHostDispatcher] with 64 threads, so that a host
 * whose callbacks block their threads for good holds at most 64 of them and
 * every other host's callbacks (the delivery of a rotated refresh token
 * among them) still run. A store under its per-session capability wrapper
 * is itself here (hostObjectOf). Hosts are told apart by identity, never by
 * their own equals/hashCode (host code, here on a Rust thread: a data
 * class's hashCode over a big map, or one that blocks, would hold the
 * call), and held weakly.
 */
@OptIn(kotlinx.coroutines.ExperimentalCoroutinesApi::class)
internal fun uniffiHostCallbackContextFor(host: Any): kotlin.coroutines.CoroutineContext {
    val key = hostObjectOf(host)
    val id = System.identityHashCode(key)
    synchronized(uniffiHostContexts) {
        while (true) {
            val gone = uniffiHostGone.poll() as UniffiHostView? ?: break
            uniffiHostContexts[gone.id]?.let { views ->
                views.remove(gone)
                if (views.isEmpty()) uniffiHostContexts.remove(gone.id)
            }
        }
        val views = uniffiHostContexts.getOrPut(id) { ArrayList(1) }
        views.firstOrNull { it.get() === key }?.let { return it.context }
        val context = uniffiHostDispatcher.limitedParallelism(64) +
            uniffiHostCallbackContext.minusKey(kotlin.coroutines.ContinuationInterceptor)
        views.add(UniffiHostView(key, id, context))
        return context
    }
}

/** A host object's view (held weakly by its host), under its identity hash [id]. */
internal class UniffiHostView(host: Any, val id: Int, val context: kotlin.coroutines.CoroutineContext) :
    java.lang.ref.WeakReference<Any>(host, uniffiHostGone)

// freshtoken: a view per host object (bindings/kotlin/tools/patch-generated.sh, change 10), guarded by itself.
private val uniffiHostContexts = HashMap<Int, ArrayList<UniffiHostView>>()
private val uniffiHostGone = java.lang.ref.ReferenceQueue<Any>()

"""
helper_sig = """    uniffiOutDroppedCallback: UniffiForeignFutureDroppedCallbackStruct,
) {
    // Using `GlobalScope`"""
helper_sig_err = """    uniffiOutDroppedCallback: UniffiForeignFutureDroppedCallbackStruct,
) {
    // See uniffiTraitInterfaceCallAsync for details on `DelicateCoroutinesApi`"""
ctx_param = "    uniffiContext: kotlin.coroutines.CoroutineContext = uniffiHostCallbackContext, // freshtoken: change 10\n"
for old, new, n in [
    ("    kotlinx.coroutines.Dispatchers.IO.limitedParallelism(64)\n",
     "    kotlinx.coroutines.Dispatchers.IO.limitedParallelism(1024) // freshtoken: change 10 (64 per host object)\n", 1),
    ("    val job = GlobalScope.launch(uniffiHostCallbackContext) coroutineBlock@ { // freshtoken: change 8\n",
     "    val job = GlobalScope.launch(uniffiContext) coroutineBlock@ { // freshtoken: changes 8 and 10\n", 2),
    (helper_sig, helper_sig.replace(") {\n", ctx_param + ") {\n", 1), 1),
    (helper_sig_err, helper_sig_err.replace(") {\n", ctx_param + ") {\n", 1), 1),
    ("                uniffiOutDroppedCallback\n            )\n",
     "                uniffiOutDroppedCallback,\n                uniffiHostCallbackContextFor(uniffiObj),\n            )\n", 8),
    ("internal val uniffiForeignFutureHandleMap = UniffiHandleMap<Job>()\n",
     per_host + "internal val uniffiForeignFutureHandleMap = UniffiHandleMap<Job>()\n", 1),
]:
    if text.count(old) != n:
        sys.stderr.write(f"[patch-generated] change 10: expected {n} x {old[:60]!r}…, found {text.count(old)} in {path} (uniffi's output changed: review the patch)\n")
        sys.exit(1)
    text = text.replace(old, new)

# --- 11: a record's toString() never throws.
display = """    override fun toString(): String {
        return FfiConverterString.lift(
    uniffiRustCall() { _status ->
    UniffiLib.uniffi_freshtoken_fn_method_"""
printable = """    override fun toString(): String = uniffiPrintable(this) { // freshtoken: change 11
        FfiConverterString.lift(
    uniffiRustCall() { _status ->
    UniffiLib.uniffi_freshtoken_fn_method_"""
helper = """
// freshtoken: change 11 (bindings/kotlin/tools/patch-generated.sh): a
// record whose Display cannot be reached (a field without UTF-8) prints
// its type alone, never a value, and never throws.
internal inline fun uniffiPrintable(record: Any, display: () -> String): String =
    try {
        display()
    } catch (e: Exception) {
        "${record.javaClass.simpleName}(<unprintable: a field holds text without UTF-8>)"
    }
"""
if text.count(display) != 11:
    sys.stderr.write(f"[patch-generated] change 11: expected 11 Display toString()s, found {text.count(display)} in {path} (uniffi's output changed: review the patch)\n")
    sys.exit(1)
text = text.replace(display, printable) + helper
open(path, "w", encoding="utf-8").write(text)
PY
