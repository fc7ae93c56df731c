package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Store calls that never answer (a database stall) end at `storeTimeoutMs`
 * with FreshTokenException.Storage; the session is never stuck, the renewed
 * record stays in memory and is saved first on the next call, and a late
 * answer changes nothing. Issue 11, item 1.
 */
class StoreDeadlineTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Also bounds the healthy store calls, which must not reach it on a busy machine. */
        const val DEADLINE_MS = 1_000L
        /** A bound for failure detection, far above the deadline. */
        const val BOUND_MS = 20_000L
    }

    @Before fun setUp() { emu.reset() }

    private fun client() = TokenClient(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint,
            clientId = "test-client",
            clientSecret = "test-secret",
            storeTimeoutMs = DEADLINE_MS,
        ),
        HttpUrlConnectionClient(),
    )

    /**
     * Stalls, while set, the loads, or the saves of a rotated record (one
     * with a refresh token other than [seeded]). A stalled call waits
     * until it is cancelled ([abandoned] completes then; the core keeps an
     * abandoned save running instead, until it ends or is given up) or,
     * with [lateRelease], until the test releases it, then writes anyway
     * (a late answer).
     */
    private class StallingStore : MemoryTokenStore() {
        @Volatile var seeded: String? = null
        @Volatile var stallRotatedSaves = false
        @Volatile var stallLoads = false
        @Volatile var lateRelease: CompletableDeferred<Unit>? = null
        val abandoned = CompletableDeferred<Unit>()

        override suspend fun save(key: String, record: String) {
            if (stallRotatedSaves && Json.obj(record)["refresh_token"] != seeded) stall()
            super.save(key, record)
        }

        override suspend fun load(key: String): String? {
            if (stallLoads) stall()
            return super.load(key)
        }

        private suspend fun stall() {
            val late = lateRelease
            if (late != null) {
                withContext(NonCancellable) { late.await() }
                return
            }
            try {
                awaitCancellation()
            } finally {
                abandoned.complete(Unit)
            }
        }
    }

    private suspend fun seeded(client: TokenClient, store: StallingStore): Pair<UserSession, String> {
        val rt = emu.seed()["refresh_token"] as String
        store.seeded = rt
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    /** Runs `block`, expects Storage naming the deadline, not sooner than it, and returns it. */
    private suspend fun storageAfterDeadline(block: suspend () -> Any?): FreshTokenException.Storage {
        val started = System.nanoTime()
        val err = try {
            withTimeout(BOUND_MS) { expectError<FreshTokenException.Storage> { block() } }
        } catch (e: TimeoutCancellationException) {
            fail("no answer within $BOUND_MS ms: the stalled store call hangs the session")
            throw e
        }
        val elapsedMs = (System.nanoTime() - started) / 1_000_000
        assertTrue("the message names the deadline: ${err.detail}", err.detail.contains("$DEADLINE_MS ms"))
        assertTrue("ended after $elapsedMs ms, before the $DEADLINE_MS ms deadline", elapsedMs >= DEADLINE_MS)
        return err
    }

    @Test fun `a save that never answers is Storage after storeTimeoutMs, and the session is not stuck`() = blocking {
        val client = client()
        val store = StallingStore()
        val (session, oldRt) = seeded(client, store)
        store.stallRotatedSaves = true

        storageAfterDeadline { session.accessToken() }
        assertEquals("the server rotated before the save stalled", 1L, emu.refreshRequests())
        // The stalled save is kept running, not cancelled: were it a write
        // still under way, it could land later over a newer refresh token.
        assertFalse("the stalled save is kept", store.abandoned.isCompleted)

        // A new handle with a healthy store: the renewed record is saved there first.
        val healthy = MemoryTokenStore()
        val token = withTimeout(BOUND_MS) { client.session("u1", healthy).accessToken() }
        val saved = Json.obj(healthy.get("u1")!!)
        same(saved["access_token"], token, "the kept record was saved to the healthy store")
        differ(saved["refresh_token"], oldRt, "with the rotated refresh token")
        assertEquals("the consumed refresh token was not sent again", 1L, emu.refreshRequests())
        assertEquals("active", emu.refreshTokenState(saved["refresh_token"] as String))
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `a load that never answers is Storage after storeTimeoutMs and sends nothing`() = blocking {
        val store = StallingStore()
        seeded(client(), store)
        val session = client().session("u1", store) // another process: reads the store first
        store.stallLoads = true

        storageAfterDeadline { session.accessToken() }
        assertEquals(0L, emu.refreshRequests())
        store.stallLoads = false
        val token = withTimeout(BOUND_MS) { session.accessToken() }
        same(Json.obj(store.get("u1")!!)["access_token"], token, "refreshed and saved once the store answers")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a save that answers after the deadline changes nothing`() = blocking {
        val client = client()
        val store = StallingStore()
        val (session, _) = seeded(client, store)
        val late = CompletableDeferred<Unit>()
        store.lateRelease = late
        store.stallRotatedSaves = true

        storageAfterDeadline { session.accessToken() }
        late.complete(Unit) // the abandoned save now writes the rotated record
        store.stallRotatedSaves = false

        val token = withTimeout(BOUND_MS) { session.accessToken() }
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the stored token is the one handed out")
        same(client().session("u1", store).accessToken(), token, "a restart serves it too")
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }
}
