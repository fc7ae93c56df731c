package dev.freshtoken

import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.Test

/**
 * The generated helpers that run host callbacks, as patched by
 * bindings/kotlin/tools/patch-generated.sh (change 5), driven directly: what
 * Rust is told, exactly once, and the interrupt flag of the thread the
 * callback ran on, read on that thread right after the callback (an idle
 * DefaultDispatcher worker clears its flag when it parks, so only there is
 * a leftover flag certain to be seen). No Rust future is involved; the
 * statuses are read and freed here.
 */
class CallbackWrapperTest {
    /** What the helper reported, with the thread and its interrupt flag at that moment. */
    private class Report(val outcome: String, val thread: Thread, val interrupted: Boolean)

    private val reports = LinkedBlockingQueue<Report>()
    private val uncaught = LinkedBlockingQueue<Throwable>()
    private var previousHandler: Thread.UncaughtExceptionHandler? = null

    @Before fun setUp() {
        previousHandler = Thread.getDefaultUncaughtExceptionHandler()
        Thread.setDefaultUncaughtExceptionHandler { _, e -> uncaught.add(e) }
    }

    @After fun tearDown() {
        Thread.setDefaultUncaughtExceptionHandler(previousHandler)
    }

    private fun report(outcome: String) {
        val thread = Thread.currentThread()
        reports.add(Report(outcome, thread, thread.isInterrupted))
    }

    /** Runs `makeCall` through the async helper (as a store or HTTP callback is run); `convert` stands for the success lambda's lowering. */
    private fun runAsync(convert: () -> Unit = {}, rustCall: () -> Unit = {}, makeCall: suspend () -> Unit) {
        val dropped = UniffiForeignFutureDroppedCallbackStruct()
        uniffiTraitInterfaceCallAsyncWithError<Unit, HostException>(
            { makeCall() },
            { _: Unit ->
                convert()
                uniffiSuccessCallback {
                    report("success")
                    rustCall()
                }
            },
            { status: UniffiRustCallStatus.ByValue ->
                val text = FfiConverterString.lift(status.error_buf)
                report("error ${status.code}: $text")
            },
            { e: HostException -> FfiConverterTypeHostError.lower(e) },
            dropped,
        )
        // Rust would drop the handle when done; here the coroutine is awaited,
        // so that every report it makes (one or two) is in when this returns.
        val job = uniffiForeignFutureHandleMap.remove(dropped.handle)
        runBlocking { withTimeout(20_000) { job.join() } }
    }

    /** The one report of the run; fails if there was none or more than one. */
    private fun only(): Report {
        val r = reports.poll() ?: throw AssertionError("the helper reported nothing")
        assertEquals("reported more than once (${r.outcome})", emptyList<String>(), reports.map { it.outcome })
        return r
    }

    @Test fun `an async callback that re-interrupts its thread and throws leaves the worker's flag clear`() {
        runAsync { Thread.currentThread().interrupt(); throw InterruptedException("interrupted wait") }
        val r = only()
        assertTrue(r.outcome, r.outcome.startsWith("error $UNIFFI_CALL_UNEXPECTED_ERROR: "))
        assertTrue("on a dispatcher worker: ${r.thread.name}", r.thread.name.startsWith("DefaultDispatcher-worker-"))
        assertFalse("the worker is still interrupted after the callback", r.interrupted)
    }

    @Test fun `an async callback that interrupts its thread and returns leaves the worker's flag clear`() {
        runAsync { Thread.currentThread().interrupt() }
        val r = only()
        assertEquals("success", r.outcome)
        assertFalse("the worker is still interrupted after the callback", r.interrupted)
    }

    @Test fun `a result that cannot be converted is reported as the callback's failure, once`() {
        runAsync(convert = { throw NullPointerException("a null from Java") }) {}
        val r = only()
        assertEquals("error $UNIFFI_CALL_UNEXPECTED_ERROR: the host's result cannot be passed to freshtoken " +
            "(java.lang.NullPointerException: a null from Java)", r.outcome)
        assertEquals(emptyList<Throwable>(), uncaught.toList())
    }

    @Test fun `a failing call into Rust on success is never answered a second time`() {
        val failure = IllegalStateException("JNA could not call Rust")
        runAsync(rustCall = { throw failure }) {}
        assertEquals("success", only().outcome)
        // The coroutine fails with the JNA failure (uniffi's own choice: a
        // lost answer beats a double one); it was not reported as an error.
        assertEquals(failure, uncaught.poll(20, TimeUnit.SECONDS))
    }

    @Test fun `an exception whose toString throws is described by its class`() {
        class Indescribable : RuntimeException() {
            override fun toString(): String = throw IllegalStateException("toString broken")
        }
        runAsync { throw Indescribable() }
        assertEquals("error $UNIFFI_CALL_UNEXPECTED_ERROR: ${Indescribable::class.java.name}", only().outcome)
        assertEquals(emptyList<Throwable>(), uncaught.toList())
    }

    /** Runs `makeCall` through the sync helper (as Clock.nowMs is run); returns the flag right after it, on this thread. */
    private fun runSync(makeCall: () -> Long): Boolean {
        val status = UniffiRustCallStatus()
        var written = 0L
        uniffiTraitInterfaceCallWithError<Long, HostException>(
            status,
            makeCall,
            { v -> written = v },
            { e -> FfiConverterTypeHostError.lower(e) },
        )
        assertEquals(UNIFFI_CALL_SUCCESS, status.code)
        assertEquals(42L, written)
        return Thread.currentThread().isInterrupted
    }

    @Test fun `a sync callback that interrupts a dispatcher worker leaves its flag clear`() = runBlocking {
        val left = withContext(Dispatchers.Default) { runSync { Thread.currentThread().interrupt(); 42L } }
        assertFalse("the worker is still interrupted after the callback", left)
    }

    @Test fun `a sync callback leaves alone the interrupt of a caller's thread and one set before`() = runBlocking {
        try {
            // The caller's own thread (this one): its interrupt is the caller's.
            assertTrue("kept on the caller's thread", runSync { Thread.currentThread().interrupt(); 42L })
        } finally {
            Thread.interrupted()
        }
        val kept = withContext(Dispatchers.Default) {
            Thread.currentThread().interrupt() // set before the callback, not by it
            try { runSync { 42L } } finally { Thread.interrupted() }
        }
        assertTrue("an interrupt from before the callback is kept", kept)
    }
}
