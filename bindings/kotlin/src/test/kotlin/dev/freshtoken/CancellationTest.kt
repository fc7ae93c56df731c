package dev.freshtoken

import dev.freshtoken.support.GatedSaveStore
import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.same
import java.util.concurrent.Callable
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Callers that give up (`withTimeout`, an interrupted request thread) while
 * the core waits for the store's save of a rotated record: the shared
 * refresh still finishes and saves for everyone else, nobody sends the
 * consumed refresh token again, and a restarted process carries on from the
 * saved record. The "slow save" is held at a gate until every caller of
 * interest has given up, so nothing depends on timing; it is then released
 * with nobody waiting, and must still complete. (Issue 11, item 2.)
 */
class CancellationTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** How long a test waits for something that must happen before it fails (never a pause). */
        const val BOUND_MS = 30_000L
    }

    @Before fun setUp() { emu.reset() }

    /** A client as a server module holds it: real clock, default HTTP client. */
    private fun moduleClient() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
        HttpUrlConnectionClient(),
    )

    /** The record stored under [key]. */
    private fun record(store: GatedSaveStore, key: String): Map<String, Any?> = Json.obj(store.get(key)!!)

    /** A seeded session's store whose save of a rotated record waits at its gate: the slow save. */
    private suspend fun seededStore(client: TokenClient, key: String = "u1"): Pair<GatedSaveStore, String> {
        val rt = emu.seed()["refresh_token"] as String
        val store = GatedSaveStore(rt)
        client.session(key, store).use { it.seed(SeedOptions(refreshToken = rt)) }
        return store to rt
    }

    private suspend fun awaitHeld(store: GatedSaveStore) {
        try {
            withTimeout(BOUND_MS) { store.held.await() }
        } catch (e: TimeoutCancellationException) {
            fail("the rotated record never reached the store: the refresh stopped when its caller gave up")
        }
    }

    /**
     * Releases the held save, with no caller waiting any more, and waits for
     * it to complete; returns the access token it saved.
     */
    private fun releaseAndAwaitSave(client: TokenClient, store: GatedSaveStore): String = runBlocking {
        store.release()
        try {
            withTimeout(BOUND_MS) { store.saved.await() }
        } catch (e: TimeoutCancellationException) {
            fail("the rotated record was never saved: the refresh stopped when its callers gave up")
        }
        val saved = record(store, "u1")["access_token"] as String
        // The core, not only the store, finished the refresh with nobody
        // waiting: its memory serves the saved token without a suspending call.
        // (Nothing signals that moment, so this checks until a bound, never pausing.)
        val session = client.session("u1", store)
        val until = System.nanoTime() + BOUND_MS * 1_000_000
        while (session.cachedAccessToken() != saved) {
            if (System.nanoTime() > until) fail("the core never took up the saved record: its refresh was left unpolled")
            Thread.yield()
        }
        saved
    }

    /** After the run: one refresh, the handed-out token stored, the rotated refresh token alive. */
    private fun assertSavedOnce(store: GatedSaveStore, oldRt: String, token: String) {
        val stored = record(store, "u1")
        same(stored["access_token"], token, "the stored access token is the one handed out")
        assertEquals(1L, emu.refreshRequests())
        assertEquals(1, store.rotatedSaves.get())
        assertEquals("consumed", emu.refreshTokenState(oldRt))
        assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    /** A restart: a new client on the same store serves the saved token and sends nothing. */
    private fun assertRestartCarriesOn(store: GatedSaveStore, oldRt: String, token: String) = runBlocking {
        val restarted = moduleClient()
        same(restarted.session("u1", store).accessToken(), token, "the restarted process serves the saved token")
        assertEquals("exactly one refresh, the consumed refresh token never resent", 1L, emu.refreshRequests())
        assertEquals("consumed", emu.refreshTokenState(oldRt))
        assertEquals("the family is not revoked", "active",
            emu.refreshTokenState(record(store, "u1")["refresh_token"] as String))
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `coroutines that time out during a slow save do not stop the refresh or its save`() = blocking {
        val client = moduleClient()
        val (store, oldRt) = seededStore(client)

        // The first caller starts the refresh and gives up after 50 ms.
        try {
            withTimeout(50) { client.session("u1", store).accessToken() }
            fail("token() returned before the save finished")
        } catch (_: TimeoutCancellationException) {
        }
        awaitHeld(store)
        // Ten more give up while the save is still pending.
        val gaveUp = (1..10).map {
            async(Dispatchers.Default) {
                try {
                    withTimeout(50) { client.session("u1", store).accessToken() }
                    false
                } catch (_: TimeoutCancellationException) {
                    true
                }
            }
        }.awaitAll()
        assertEquals(List(10) { true }, gaveUp)
        assertEquals(1L, emu.refreshRequests())

        val saved = releaseAndAwaitSave(client, store)
        val tokens = (1..10).map { async(Dispatchers.Default) { client.session("u1", store).accessToken() } }.awaitAll()
        assertEquals("later callers get the saved token", setOf(saved), tokens.toSet())
        assertSavedOnce(store, oldRt, saved)
        assertRestartCarriesOn(store, oldRt, saved)
    }

    @Test fun `blocking requests (runBlocking per request) that time out during a slow save lose nothing`() {
        // A blocking web framework: a module-level client, each request on a
        // pool thread in its own runBlocking with a 50 ms budget.
        val client = moduleClient()
        val (store, oldRt) = runBlocking { seededStore(client) }
        val pool = Executors.newFixedThreadPool(4)
        fun request(budgetMs: Long?) = pool.submit(Callable {
            try {
                runBlocking {
                    val session = client.session("u1", store)
                    if (budgetMs == null) session.accessToken() else withTimeout(budgetMs) { session.accessToken() }
                }
            } catch (_: TimeoutCancellationException) {
                null
            }
        })
        val token = try {
            assertNull("the first request gives up", request(50).get(BOUND_MS, TimeUnit.MILLISECONDS))
            runBlocking { awaitHeld(store) }
            val during = (1..8).map { request(50) }.map { it.get(BOUND_MS, TimeUnit.MILLISECONDS) }
            assertEquals("every request during the save gives up", List<String?>(8) { null }, during)
            assertEquals(1L, emu.refreshRequests())

            val saved = releaseAndAwaitSave(client, store)
            val later = (1..8).map { request(null) }.map { it.get(BOUND_MS, TimeUnit.MILLISECONDS)!! }
            assertEquals("later requests get the saved token", setOf(saved), later.toSet())
            saved
        } finally {
            pool.shutdownNow()
        }
        assertSavedOnce(store, oldRt, token)
        assertRestartCarriesOn(store, oldRt, token)
    }

    @Test fun `an interrupted request thread does not stop the refresh or its save`() {
        // A servlet container's request timeout interrupts the thread; runBlocking
        // then throws InterruptedException and cancels its coroutine.
        val client = moduleClient()
        val (store, oldRt) = runBlocking { seededStore(client) }
        val outcome = AtomicReference<String>()
        val thread = Thread {
            outcome.set(
                try {
                    runBlocking { client.session("u1", store).accessToken() }
                    "returned"
                } catch (_: InterruptedException) {
                    "interrupted"
                },
            )
        }
        thread.start()
        runBlocking { awaitHeld(store) }
        thread.interrupt()
        thread.join(BOUND_MS)
        assertEquals("interrupted", outcome.get())

        val token = releaseAndAwaitSave(client, store)
        same(runBlocking { client.session("u1", store).accessToken() }, token, "the next request gets the saved token")
        assertSavedOnce(store, oldRt, token)
        assertRestartCarriesOn(store, oldRt, token)
    }
}
