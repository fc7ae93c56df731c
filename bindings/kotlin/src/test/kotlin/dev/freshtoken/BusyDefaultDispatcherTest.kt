package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.differ
import dev.freshtoken.support.same
import java.nio.file.Files
import java.util.concurrent.Callable
import java.util.concurrent.CountDownLatch
import java.util.concurrent.ExecutionException
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * Host callbacks do not run on Dispatchers.Default (tools/patch-generated.sh,
 * change 8): an app that keeps every Default worker busy while the token
 * endpoint answers a refresh still gets the answer to the core, the rotated
 * refresh token saved and its token. Before, the answer waited for a Default
 * worker past the HTTP deadline: Timeout, then LOST_ROTATION. The workers
 * are held by latches until the refresh has completed (or the bound passed),
 * the request by the emulator's `hold`; nothing sleeps.
 */
class BusyDefaultDispatcherTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** How long the test waits for something that must happen before it fails (never a pause). */
        const val BOUND_MS = 30_000L

        /**
         * How long the app holds the workers at most (the test frees them
         * sooner): longer than a caller's BOUND_MS and than the IO test's
         * deadlines, so that a refresh waiting for a worker fails instead of
         * going on once they are free.
         */
        const val HOLD_MS = 2 * BOUND_MS

        /** Dispatchers.IO's threads, as kotlinx.coroutines counts them. */
        fun ioWorkers(): Int =
            System.getProperty("kotlinx.coroutines.io.parallelism")?.toInt()
                ?: Runtime.getRuntime().availableProcessors().coerceAtLeast(64)

        /** Dispatchers.Default's workers, as kotlinx.coroutines counts them. */
        fun defaultWorkers(): Int =
            System.getProperty("kotlinx.coroutines.scheduler.core.pool.size")?.toInt()
                ?: Runtime.getRuntime().availableProcessors().coerceAtLeast(2)
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() { emu.reset() }

    @Test fun `a refresh answered while every Default worker is busy is saved and returned`() {
        val options = TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
            // Long enough for a busy machine: an answer kept from the core
            // still fails, as the caller's BOUND_MS comes first.
            timeoutMs = 60_000, retry = RetryOptions(maxAttempts = 1),
        )
        val store = TestStore()
        val seeded = emu.seed()["refresh_token"] as String
        val session = TokenClient(options).session("u1", store)
        session.seedBlocking(SeedOptions(refreshToken = seeded))

        val caller = Executors.newSingleThreadExecutor { r -> Thread(r, "request-thread").apply { isDaemon = true } }
        val app = CoroutineScope(SupervisorJob() + Dispatchers.Default)
        val busy = CountDownLatch(defaultWorkers())
        val free = CountDownLatch(1)
        try {
            emu.hold(1)
            val token = caller.submit(Callable { session.accessTokenBlocking() })
            emu.waitHeld(1)
            // The app now takes every Default worker, until this test frees them.
            repeat(defaultWorkers()) { app.launch { busy.countDown(); free.await(HOLD_MS, TimeUnit.MILLISECONDS) } }
            assertTrue("every Default worker is busy", busy.await(BOUND_MS, TimeUnit.MILLISECONDS))
            assertEquals(1L, emu.releaseHeld())
            val got = try {
                token.get(BOUND_MS, TimeUnit.MILLISECONDS)
            } catch (e: ExecutionException) {
                fail("the refresh failed while Default was busy: ${e.cause}")
                throw e
            }
            val record = store.record("u1") ?: throw AssertionError("no record")
            same(record["access_token"], got, "the token returned is the one saved")
            differ(record["refresh_token"], seeded, "the rotated refresh token is saved")
            assertEquals("one refresh request", 1L, emu.refreshRequests())
        } finally {
            free.countDown()
            app.cancel()
            caller.shutdownNow()
        }
    }

    @Test fun `a refresh while every Dispatchers IO thread is busy is not held by FileTokenStore or the default HttpClient`() {
        val options = TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
            // Long enough for a busy machine, and shorter than HOLD_MS: a store
            // call or a request waiting for an IO thread still fails (Storage, Timeout).
            timeoutMs = 20_000, storeTimeoutMs = 20_000, retry = RetryOptions(maxAttempts = 1),
        )
        val dir = Files.createTempDirectory("freshtoken-busy-io")
        val seeded = emu.seed()["refresh_token"] as String
        TokenClient(options).session("u1", FileTokenStore(dir)).seedBlocking(SeedOptions(refreshToken = seeded))
        // A new client: its first call reads the file and sends the refresh.
        val session = TokenClient(options).session("u1", FileTokenStore(dir))

        val app = CoroutineScope(SupervisorJob() + Dispatchers.IO)
        val busy = CountDownLatch(ioWorkers())
        val free = CountDownLatch(1)
        try {
            // The app's blocking I/O takes every IO thread, until this test frees them.
            repeat(ioWorkers()) { app.launch { busy.countDown(); free.await(HOLD_MS, TimeUnit.MILLISECONDS) } }
            assertTrue("every IO thread is busy", busy.await(BOUND_MS, TimeUnit.MILLISECONDS))
            val got = try {
                session.accessTokenBlocking()
            } catch (e: FreshTokenException) {
                fail("the refresh failed while Dispatchers.IO was busy: $e")
                throw e
            }
            val record = FileTokenStore(dir).fileFor("u1").toFile().readText()
            assertTrue("the token returned is the one saved", record.contains(got))
            assertTrue("the rotated refresh token is saved", !record.contains(seeded))
            assertEquals("one refresh request", 1L, emu.refreshRequests())
        } finally {
            free.countDown()
            app.cancel()
        }
    }
}
