package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import java.util.concurrent.Callable
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CountDownLatch
import java.util.concurrent.ExecutionException
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.currentCoroutineContext
import kotlinx.coroutines.future.await
import kotlinx.coroutines.launch
import kotlinx.coroutines.suspendCancellableCoroutine
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * A host HTTP client whose cancellation handler blocks or throws, run when
 * the core drops the call at its deadline (tools/patch-generated.sh, change
 * 8): the cancel is handed off to freshtoken's dispatcher, so the caller
 * gets Timeout on time and the process-wide freshtoken-flights thread goes
 * on with other clients' refreshes while the handler is still blocked (on
 * a latch this test holds); a handler that throws reaches no
 * uncaught-exception handler. Before, the cancel ran on the Rust thread
 * that dropped the call.
 */
class CallbackCancellationTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** How long the test waits for something that must happen before it fails (never a pause). */
        const val BOUND_MS = 15_000L
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() { emu.reset() }

    /** A send that never answers; its cancellation runs [onCancel] (host code) on whatever thread cancels. */
    private class NeverAnswers(private val onCancel: () -> Unit) : HttpClient {
        val sent = CountDownLatch(1)
        /** Counted down when the callback's coroutine has ended (after its cancellation handler). */
        val ended = CountDownLatch(1)

        override suspend fun send(request: HttpRequest): HttpResponse {
            currentCoroutineContext()[Job]!!.invokeOnCompletion { ended.countDown() }
            sent.countDown()
            return suspendCancellableCoroutine { cont -> cont.invokeOnCancellation { onCancel() } }
        }
    }

    /** The same through a CompletableFuture whose dependent stage blocks when the request is cancelled. */
    private class FutureNeverAnswers(private val onCancel: () -> Unit) : HttpClient {
        override suspend fun send(request: HttpRequest): HttpResponse =
            CompletableFuture<HttpResponse>().also { f -> f.whenComplete { _, e -> if (e != null) onCancel() } }.await()
    }

    /** A handler that records its thread and blocks until [release] (at most the bound). */
    private class BlockingHandler {
        val entered = CountDownLatch(1)
        val release = CountDownLatch(1)
        val thread = AtomicReference<String>()
        fun run() {
            thread.set(Thread.currentThread().name)
            entered.countDown()
            release.await(BOUND_MS * 2, TimeUnit.MILLISECONDS)
        }
    }

    /** A client whose HTTP deadline is [timeoutMs] (300 ms: a host client that never answers times out soon). */
    private fun client(http: HttpClient, timeoutMs: Long?) = TokenClient(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
            timeoutMs = timeoutMs, retry = RetryOptions(maxAttempts = 1),
        ),
        http,
    )

    private fun seeded(http: HttpClient, key: String, store: TokenStore = MemoryTokenStore(), timeoutMs: Long? = 300): UserSession =
        client(http, timeoutMs).session(key, store).apply { seedBlocking(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String)) }

    /** The call's Timeout, within the bound (the deadline is 300 ms plus the 1 s backstop). */
    private fun timesOutInTime(call: () -> Any?) {
        val thread = Executors.newSingleThreadExecutor { r -> Thread(r, "request-thread").apply { isDaemon = true } }
        try {
            thread.submit(Callable { call() }).get(BOUND_MS, TimeUnit.MILLISECONDS)
            fail("the call succeeded")
        } catch (e: ExecutionException) {
            assertTrue("Timeout, not ${e.cause}", e.cause is FreshTokenException.Timeout)
        } catch (e: java.util.concurrent.TimeoutException) {
            fail("the caller still waited after $BOUND_MS ms (its deadline was 1.3 s)")
        } finally {
            thread.shutdownNow()
        }
    }

    private fun assertHandedOff(handler: BlockingHandler) {
        assertTrue("the cancellation handler ran", handler.entered.await(BOUND_MS, TimeUnit.MILLISECONDS))
        assertTrue("on a dispatcher worker, not ${handler.thread.get()}",
            handler.thread.get().startsWith("DefaultDispatcher-worker-"))
    }

    @Test fun `a blocking cancellation handler does not hold up the caller's Timeout`() {
        val handler = BlockingHandler()
        try {
            timesOutInTime { seeded(NeverAnswers(handler::run), "u1").accessTokenBlocking() }
            assertHandedOff(handler)
        } finally {
            handler.release.countDown()
        }
    }

    @Test fun `a CompletableFuture stage that blocks on cancel does not hold up the caller's Timeout`() {
        val handler = BlockingHandler()
        try {
            timesOutInTime { seeded(FutureNeverAnswers(handler::run), "u1").accessTokenBlocking() }
            assertHandedOff(handler)
        } finally {
            handler.release.countDown()
        }
    }

    @Test fun `another client's abandoned refresh is saved while a cancellation handler blocks`() = blocking {
        val handler = BlockingHandler()
        try {
            // A's caller gives up: freshtoken's own thread drives A's flight and drops the call at its deadline.
            val httpA = NeverAnswers(handler::run)
            val a = seeded(httpA, "a")
            val callerA = launch(Dispatchers.IO) { runCatching { a.accessToken() } }
            withContext(Dispatchers.IO) { httpA.sent.await(BOUND_MS, TimeUnit.MILLISECONDS) }
            callerA.cancelAndJoin()
            withContext(Dispatchers.IO) { assertHandedOff(handler) }
            // B's caller gives up too, while its refresh is held at the server; then the server answers.
            val storeB = TestStore()
            val b = seeded(HttpUrlConnectionClient(), "b", storeB, timeoutMs = null)
            val seededB = storeB.record("b")!!["refresh_token"]
            val gate = storeB.gateSaves().apply { release.complete(Unit) }
            emu.hold(1)
            val callerB = launch(Dispatchers.IO) { runCatching { b.accessToken() } }
            withContext(Dispatchers.IO) { emu.waitHeld(1) }
            callerB.cancelAndJoin()
            assertEquals(1L, withContext(Dispatchers.IO) { emu.releaseHeld() })
            val saved = try {
                withTimeout(BOUND_MS) { gate.entered.await() }
            } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
                fail("B's rotated record was not saved while A's cancellation handler blocked")
                throw e
            }
            differ(dev.freshtoken.support.Json.obj(saved)["refresh_token"], seededB, "B's rotated refresh token")
            assertEquals("A's handler is still blocked", 1L, handler.release.count)
        } finally {
            handler.release.countDown()
        }
    }

    @Test fun `a cancellation handler that throws reaches no uncaught-exception handler`() {
        val http = NeverAnswers { throw IllegalStateException("cleanup failed") }
        timesOutInTime { seeded(http, "u1").accessTokenBlocking() }
        // Its coroutine has ended, so the handler's exception was reported (or not) by now; the rule checks.
        assertTrue("the callback ended", http.ended.await(BOUND_MS, TimeUnit.MILLISECONDS))
    }
}
