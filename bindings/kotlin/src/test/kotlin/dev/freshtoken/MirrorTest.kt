package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.withContext
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * The client's token mirror: a fresh access token is served from a map in
 * Kotlin (no FFI call: `nativeUses` counts every time a session goes to its
 * native object), exactly until the core's fresh-until on the client's
 * clock; every other call replaces it; handles of one key share it; it is
 * bounded by maxSessions.
 */
class MirrorTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Default leeway: fresh until expiry minus 60 s. */
        const val LEEWAY_MS = 60_000L
    }

    private val clock = FakeClock()
    private val store = TestStore()
    private lateinit var client: TokenClient

    @Before fun setUp() {
        emu.reset()
        client = newClient()
    }

    private fun newClient(maxSessions: Long? = null) = TokenClient.withClock(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint,
            clientId = "test-client",
            clientSecret = "test-secret",
            maxSessions = maxSessions,
        ),
        HttpUrlConnectionClient(),
        clock,
    )

    /** Seeds `key` with a new emulator family and the access token `at`, valid 900 s from now. */
    private suspend fun seeded(key: String, at: String, c: TokenClient = client): UserSession {
        val rt = emu.seed()["refresh_token"] as String
        return c.session(key, store).also { it.seed(SeedOptions(refreshToken = rt, accessToken = at, expiresIn = 900)) }
    }

    @Test fun `a fresh token is served without an FFI call until exactly its fresh-until`() = blocking {
        val t0 = clock.now()
        val session = seeded("u1", "at-seeded")
        val freshUntil = t0 + 900_000 - LEEWAY_MS
        val before = client.nativeUses.get()

        repeat(1000) { same(session.accessToken(), "at-seeded", "the mirrored token") }
        same(session.accessTokenBlocking(), "at-seeded", "blocking, mirrored")
        same(session.accessTokenAsync().get(), "at-seeded", "future, mirrored")
        assertTrue("a completed future on the fresh path", session.accessTokenAsync().isDone)
        clock.set(freshUntil - 1)
        same(session.accessToken(), "at-seeded", "1 ms before fresh-until")
        assertEquals("no FFI call while the mirror is fresh", before, client.nativeUses.get())
        assertEquals(0L, emu.refreshRequests())

        clock.set(freshUntil)
        val renewed = session.accessToken()
        differ(renewed, "at-seeded", "stale exactly at fresh-until: the core refreshed")
        assertTrue("the stale read crossed into the core", client.nativeUses.get() > before)
        assertEquals(1L, emu.refreshRequests())

        val afterRefill = client.nativeUses.get()
        repeat(100) { same(session.accessToken(), renewed, "the renewed token, mirrored") }
        assertEquals("mirrored again after the refresh", afterRefill, client.nativeUses.get())
    }

    @Test fun `a host clock set back asks the core, which renews a token issued an hour ahead`() = blocking {
        val t0 = clock.now()
        val session = seeded("u1", "at-seeded")
        same(session.accessToken(), "at-seeded", "mirrored")
        // Four minutes back (ordinary skew): the core, asked, still serves it.
        clock.set(t0 - 240_000)
        val before = client.nativeUses.get()
        same(session.accessToken(), "at-seeded", "within the skew tolerance")
        assertTrue("the mirror asked the core", client.nativeUses.get() > before)
        assertEquals(0L, emu.refreshRequests())
        // An hour back: issued under a clock that read ahead; renewed.
        clock.set(t0 - 3_600_000)
        differ(session.accessToken(), "at-seeded", "an hour back: renewed")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `tokenRejected, refresh and seed replace the mirrored token`() = blocking {
        val session = seeded("u1", "at-1")
        same(session.accessToken(), "at-1", "seeded")

        val rejected = session.tokenRejected("at-1")
        differ(rejected.accessToken, "at-1", "a new token after tokenRejected")
        same(session.accessToken(), rejected.accessToken, "tokenRejected's token is served")

        val refreshed = session.refresh()
        differ(refreshed.accessToken, rejected.accessToken, "a new token after refresh")
        same(session.accessToken(), refreshed.accessToken, "refresh's token is served")

        val rt = emu.seed()["refresh_token"] as String
        session.seed(SeedOptions(refreshToken = rt, accessToken = "at-2", expiresIn = 900))
        val before = client.nativeUses.get()
        same(session.accessToken(), "at-2", "seed's token is served")
        assertEquals("from the mirror", before, client.nativeUses.get())
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `handles of one key share the mirrored token and its replacement`() = blocking {
        val a = seeded("u1", "at-shared")
        val before = client.nativeUses.get()
        val b = client.session("u1", store)
        same(b.accessToken(), "at-shared", "a second handle reads the first one's token")
        same(client.session("u1", store).accessTokenBlocking(), "at-shared", "a third, blocking")
        assertEquals("no FFI call, no native handle for b", before, client.nativeUses.get())

        val rejected = b.tokenRejected("at-shared")
        same(a.accessToken(), rejected.accessToken, "a sees b's replacement")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `the mirror holds at most maxSessions keys and an evicted key still gets its token`() = blocking {
        val small = newClient(maxSessions = 2)
        val keys = listOf("k1", "k2", "k3", "k4")
        for (k in keys) seeded(k, "at-$k", small)
        assertTrue("bounded: ${small.mirror.size}", small.mirror.size <= 2)
        for (k in keys) same(small.session(k, store).accessToken(), "at-$k", "the core still has $k")
        assertTrue("still bounded: ${small.mirror.size}", small.mirror.size <= 2)
        assertEquals("nothing was refreshed", 0L, emu.refreshRequests())
        small.close()
    }

    @Test fun `an empty key fails at the handle's first call with a Config error naming key`() = blocking {
        val err = expectError<FreshTokenException.Config> { client.session("", store).accessToken() }
        assertEquals("key", err.field)
    }

    @Test fun `a closed client's handles throw, also where the mirror had a token`() = blocking {
        val session = seeded("u1", "at-1")
        same(session.accessToken(), "at-1", "mirrored")
        client.close()
        try {
            session.accessToken()
            fail("a closed client served a token")
        } catch (_: IllegalStateException) {
        }
    }

    @Test fun `a host clock that goes negative is replaced by the system clock, as in the core`() = blocking {
        // The fake clock starts ten days back: the seeded token is fresh on
        // it, and long stale on the system clock.
        clock.set(System.currentTimeMillis() - 10 * 86_400_000L)
        val session = seeded("u1", "at-seeded")
        same(session.accessToken(), "at-seeded", "fresh on the host clock")
        assertEquals(0L, emu.refreshRequests())

        // A negative reading: the core falls back to the system clock, on
        // which the token is stale; so must the mirror.
        clock.set(-1)
        val renewed = session.accessToken()
        differ(renewed, "at-seeded", "stale on the system clock: the core refreshed")
        assertEquals(1L, emu.refreshRequests())
        same(session.accessToken(), renewed, "the renewed token, fresh on the system clock")
        assertEquals(1L, emu.refreshRequests())

        // Past the year 9999 (Long.MAX_VALUE, nanoseconds by mistake): the
        // system clock again, for the core and the mirror; the renewed token
        // stays fresh and its record keeps real instants.
        clock.set(Long.MAX_VALUE)
        same(session.accessToken(), renewed, "still fresh on the system clock")
        clock.set(System.currentTimeMillis() * 1_000_000)
        session.seed(SeedOptions(refreshToken = "rt-later", accessToken = "at-later", expiresIn = 900))
        val expires = session.status().accessExpiresAtMs!!
        assertTrue("$expires", expires <= System.currentTimeMillis() + 900_000)
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `close during a refresh in flight leaves nothing mirrored and every call throws`() = blocking {
        // The system clock: the mirror also keeps an expiry timer per token.
        val client = TokenClient(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
        )
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        emu.hold()
        val inFlight = async(Dispatchers.Default) { runCatching { client.session("u1", store).accessToken() } }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        client.close()
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        inFlight.await() // a token or an error: it was already in flight

        assertEquals("mirrored entries after close", 0, client.mirror.size)
        assertEquals("expiry timers after close", 0, client.mirror.timerCount)
        val calls = listOf<Pair<String, suspend () -> Any?>>(
            "accessToken" to { session.accessToken() },
            "accessTokenBlocking" to { session.accessTokenBlocking() },
            "accessTokenAsync" to { session.accessTokenAsync().join() },
            "cachedAccessToken" to { session.cachedAccessToken() },
            "a new handle's accessToken" to { client.session("u1", store).accessToken() },
            "tokens" to { session.tokens() },
            "status" to { session.status() },
            "sessionCount" to { client.sessionCount() },
        )
        for ((name, call) in calls) {
            val thrown = runCatching { call() }.exceptionOrNull()
            val cause = (thrown as? java.util.concurrent.CompletionException)?.cause ?: thrown
            assertTrue("$name after close: ${thrown?.javaClass?.name ?: "returned"}", cause is IllegalStateException)
        }
    }

    /**
     * Starts [close] on another thread from inside [mirror]'s next fill, after
     * that fill's re-check of `closed` and before it stores its token (a
     * filler descheduled there), and lets the fill go on once close() waits
     * for it, or has finished without waiting (as it once did, sweeping the
     * mirror before the token was stored and leaving it served after close).
     */
    private class CloseDuringFill(mirror: TokenMirror, close: () -> Unit) {
        @Volatile private var closer: Thread? = null

        init {
            mirror.beforeStore = {
                mirror.beforeStore = null
                val thread = Thread(close, "closer").apply { start() }
                closer = thread
                val deadline = System.nanoTime() + 10_000_000_000L
                while (thread.state != Thread.State.BLOCKED && thread.state != Thread.State.TERMINATED) {
                    check(System.nanoTime() < deadline) { "close() neither waited for the fill nor finished" }
                    Thread.sleep(1)
                }
            }
        }

        /** Waits for close() to return. */
        fun join() {
            val thread = checkNotNull(closer) { "no fill ran" }
            thread.join(10_000)
            check(!thread.isAlive) { "close() did not return" }
        }
    }

    /** Every read of [session] and of a new handle of its key throws IllegalStateException (its client is closed). */
    private suspend fun assertServesNothing(session: UserSession, c: TokenClient) {
        val calls = listOf<Pair<String, suspend () -> Any?>>(
            "accessToken" to { session.accessToken() },
            "accessTokenBlocking" to { session.accessTokenBlocking() },
            "accessTokenAsync" to { session.accessTokenAsync().join() },
            "cachedAccessToken" to { session.cachedAccessToken() },
            "a new handle's accessToken" to { c.session(session.key, store).accessToken() },
            "a new handle's accessTokenBlocking" to { c.session(session.key, store).accessTokenBlocking() },
            "a new handle's cachedAccessToken" to { c.session(session.key, store).cachedAccessToken() },
        )
        for ((name, call) in calls) {
            val thrown = runCatching { call() }.exceptionOrNull()
            val cause = (thrown as? java.util.concurrent.CompletionException)?.cause ?: thrown
            assertTrue("$name after close: ${thrown?.javaClass?.name ?: "returned a token"}", cause is IllegalStateException)
        }
    }

    @Test fun `a fill that stores its token while close() runs leaves nothing mirrored`() {
        val timers = java.util.concurrent.ScheduledThreadPoolExecutor(1)
        try {
            for (hostClock in listOf<(() -> Long)?>({ 1_000L }, null)) {
                val clock = if (hostClock != null) "host clock" else "system clock"
                val mirror = TokenMirror(10, hostClock, timers)
                val closing = CloseDuringFill(mirror) { mirror.close() }
                val freshUntil = if (hostClock != null) 2_000L else System.currentTimeMillis() + 3_600_000
                mirror.fill("u1", mirror.epoch("u1"), "tok", freshUntil)
                closing.join()
                assertEquals("served after close ($clock)", null, mirror.get("u1"))
                assertEquals("entries after close ($clock)", 0, mirror.size)
                assertEquals("expiry timers after close ($clock)", 0, mirror.timerCount)
                mirror.fill("u1", mirror.epoch("u1"), "later", freshUntil)
                assertEquals("a fill after close ($clock)", 0, mirror.size)
            }
        } finally {
            timers.shutdownNow()
        }
    }

    @Test fun `a read whose refill lands while its client closes leaves nothing served after close`() = blocking {
        val session = seeded("u1", "at-1")
        client.mirror.drop("u1") // the next read misses, asks the core and refills the mirror
        val closing = CloseDuringFill(client.mirror) { client.close() }
        same(session.accessToken(), "at-1", "the read in flight during close gets its token")
        closing.join()
        assertEquals("mirrored entries after close", 0, client.mirror.size)
        assertServesNothing(session, client)
    }

    @Test fun `a closed client's handles never serve a token left in its mirror`() = blocking {
        val session = seeded("u1", "at-1")
        same(session.accessToken(), "at-1", "mirrored")
        client.close()
        // As if a fill had stored it after close() swept the mirror (a String
        // is served as it is, on either clock).
        client.mirrorEntries["u1"] = "at-1"
        assertServesNothing(session, client)
    }

    @Test fun `a drop during a read keeps the read from mirroring an old token`() {
        var now = 0L
        val mirror = TokenMirror(10, { now })
        val epoch = mirror.epoch("u1")
        mirror.drop("u1") // a tokenRejected started after the read's epoch
        mirror.fill("u1", epoch, "old", Long.MAX_VALUE)
        assertEquals(null, mirror.get("u1"))
        mirror.fill("u1", mirror.epoch("u1"), "new", 10)
        now = 9
        same(mirror.get("u1"), "new", "a refill under the current epoch")
        now = 10
        assertEquals("stale at fresh-until", null, mirror.get("u1"))
    }

    @Test fun `on the system clock a token already past fresh-until is not mirrored`() {
        val mirror = TokenMirror(10, null)
        mirror.fill("u1", mirror.epoch("u1"), "late", System.currentTimeMillis() - 1)
        assertEquals(null, mirror.get("u1"))
        mirror.fill("u1", mirror.epoch("u1"), "fresh", System.currentTimeMillis() + 3_600_000)
        same(mirror.get("u1"), "fresh", "served until its timer fires")
        mirror.drop("u1")
        assertEquals(null, mirror.get("u1"))
    }

    /** Expiry timers that fire before schedule() returns: a timer thread that ran before the filling thread went on. */
    private class EarlyTimers : java.util.concurrent.ScheduledThreadPoolExecutor(1) {
        override fun schedule(command: Runnable, delay: Long, unit: java.util.concurrent.TimeUnit): java.util.concurrent.ScheduledFuture<*> {
            command.run()
            return super.schedule({}, 0, unit)
        }
    }

    @Test fun `a timer that fires before its fill went on leaves no token mirrored without a timer`() {
        val timers = EarlyTimers()
        try {
            val mirror = TokenMirror(10, null, timers)
            // Fresh for 5 ms more: a filling thread descheduled that long lets its timer fire first.
            mirror.fill("u1", mirror.epoch("u1"), "due", System.currentTimeMillis() + 5)
            assertEquals("nothing served past fresh-until", null, mirror.get("u1"))
            assertEquals(0, mirror.size)
            assertEquals(0, mirror.timerCount)
        } finally {
            timers.shutdownNow()
        }
    }

    @Test fun `concurrent fills near fresh-until leave nothing mirrored once their timers are due`() {
        val timers = java.util.concurrent.ScheduledThreadPoolExecutor(1)
        val mirror = TokenMirror(1_000_000, null, timers)
        val threads = 4
        val start = java.util.concurrent.CountDownLatch(1)
        val pool = java.util.concurrent.Executors.newFixedThreadPool(threads)
        try {
            val work = (0 until threads).map { t ->
                pool.submit {
                    start.await()
                    for (i in 0 until 30_000) {
                        // Shared keys, fresh for 1-3 ms: fills of a key race each other and its timers.
                        val key = "k${i % 64}"
                        mirror.fill(key, mirror.epoch(key), "t$t-$i", System.currentTimeMillis() + 1 + (i % 3))
                    }
                }
            }
            start.countDown()
            work.forEach { it.get() }
            // The timer thread runs tasks in due order: once a task due after every fill's
            // fresh-until has run, every expiry timer has fired.
            timers.schedule({}, 50, java.util.concurrent.TimeUnit.MILLISECONDS).get()
            assertEquals("tokens still mirrored past their fresh-until", 0, mirror.size)
        } finally {
            pool.shutdown()
            timers.shutdownNow()
        }
    }

    @Test fun `a wall clock that moved apart from the monotonic one is noticed`() {
        var wall = 1_000_000L
        var mono = 5_000L
        val detector = ClockJumpDetector({ wall }, { mono }, 500)
        wall += 1_000; mono += 1_000
        assertEquals("both clocks ran alike", false, detector.check())
        wall += 3_600_000; mono += 1_000 // the device slept an hour
        assertEquals("a sleep is a jump", true, detector.check())
        wall += 1_000; mono += 1_000
        assertEquals("measured from the new offset", false, detector.check())
        wall -= 10_000 // the clock was set back
        assertEquals("a clock set back is a jump", true, detector.check())
    }

    @Test fun `after a clock jump every system-clock mirror is empty`() {
        val mirror = TokenMirror(10, null)
        mirror.fill("u1", mirror.epoch("u1"), "fresh", System.currentTimeMillis() + 3_600_000)
        same(mirror.get("u1"), "fresh", "mirrored")
        ClockJumpGuard.clearAll()
        assertEquals("dropped: the next read asks the core", null, mirror.get("u1"))
    }
}
