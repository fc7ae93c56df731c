package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.same
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Host callbacks that block their thread for good (a blocking HTTP client
 * with no read timeout against a server that never answers, a JDBC call on
 * a dead connection) are abandoned by the core at their deadline, but keep
 * their thread. Every async callback of every client used to run on one
 * dispatcher of 64 threads: once 64 were stuck, nothing else ran, not even
 * the delivery of an answer another client's healthy HttpClient had
 * already received, so its rotated refresh token was lost (Timeout, in
 * doubt, LOST_ROTATION after a restart: a re-link for that user). Each host
 * object now has its own 64 threads (tools/patch-generated.sh, change 10).
 */
class StuckHostThreadsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** The threads one host object's callbacks may hold. */
        const val POOL = 64
        const val BOUND_MS = 30_000L
    }

    @Before fun setUp() {
        emu.reset()
    }

    private fun options(timeoutMs: Long) = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret", timeoutMs = timeoutMs,
    )

    /** Blocks the thread that runs it until [gate] opens. */
    private class StuckHttp(val entered: CountDownLatch, val gate: CountDownLatch) : HttpClient {
        override suspend fun send(request: HttpRequest): HttpResponse {
            entered.countDown()
            gate.await()
            throw HostException.Failed("gave up")
        }
    }

    @Test fun `another client's stuck HTTP threads do not keep a received answer from being saved`() = blocking {
        val storeB = MemoryTokenStore()
        // B's request is held until all of A's calls have timed out (each its
        // 200 ms and the core's 1 s grace): a timeout B outlasts on a busy
        // machine. Were B's answer kept from the core, callB hangs past BOUND_MS.
        val sessionB = TokenClient(options(60_000)).session("b", storeB)
        sessionB.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        emu.hold()
        val callB = async(Dispatchers.Default) { sessionB.accessToken() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) } // B's request is out, its answer held
        val entered = CountDownLatch(POOL)
        val gate = CountDownLatch(1)
        try {
            val a = TokenClient(options(200), StuckHttp(entered, gate))
            val callsA = (0 until POOL).map { i ->
                async(Dispatchers.Default) {
                    runCatching {
                        val s = a.session("a$i", MemoryTokenStore())
                        s.seed(SeedOptions(refreshToken = "rt-$i"))
                        s.accessToken()
                    }
                }
            }
            withContext(Dispatchers.IO) { entered.await() } // every host thread is stuck in A's client
            withTimeout(BOUND_MS) { callsA.awaitAll() } // A's callers all got their Timeout
            withContext(Dispatchers.IO) { emu.releaseHeld() }
            val token = withTimeout(BOUND_MS) { callB.await() }
            same(Json.obj(storeB.get("b")!!)["access_token"], token, "B's rotated record was saved")
        } finally {
            gate.countDown()
        }
        assertEquals(1L, emu.refreshRequests())
    }

    /** A store whose loads block the thread that runs them until [gate] opens. */
    private class StuckStore(val gate: CountDownLatch) : TokenStoreBase() {
        val entered = AtomicInteger()
        override suspend fun load(key: String): String? {
            entered.incrementAndGet()
            gate.await()
            return null
        }
        override suspend fun save(key: String, record: String) {}
    }

    @Test fun `a stuck store holds at most its own threads, however many sessions use it`() = blocking {
        val gate = CountDownLatch(1)
        val stuck = StuckStore(gate)
        try {
            // Each of the 100 stuck calls waits out the store deadline, and
            // the healthy store's calls run under it too: long enough for a
            // busy machine, short enough to keep the test quick.
            val client = TokenClient(options(60_000).copy(storeTimeoutMs = 2_000))
            val calls = (0 until POOL + 36).map { i ->
                async(Dispatchers.Default) { runCatching { client.session("s$i", stuck).status() }.exceptionOrNull() }
            }
            val failures = withTimeout(BOUND_MS) { calls.awaitAll() }
            assertEquals("every caller got Storage at its deadline", List(POOL + 36) { "storage" },
                failures.map { (it as? FreshTokenException)?.code })
            assertEquals("threads the stuck store holds", POOL, stuck.entered.get())
            // Another store of the same client still works meanwhile.
            val store = MemoryTokenStore()
            val session = client.session("b", store)
            session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
            val token = withTimeout(BOUND_MS) { session.accessToken() }
            same(Json.obj(store.get("b")!!)["access_token"], token, "the other store's session refreshed and saved")
        } finally {
            gate.countDown()
        }
    }

    /** A store that is a bad map key: its hashCode blocks at [gate], its equals throws. */
    private class BadKeyStore(val gate: CountDownLatch) : MemoryTokenStore() {
        override fun hashCode(): Int {
            gate.await()
            return 1
        }
        override fun equals(other: Any?): Boolean = throw IllegalStateException("no equals")
    }

    @Test fun `a host object is told apart by identity, never by its own hashCode or equals`() = blocking {
        val gate = CountDownLatch(1)
        val store = BadKeyStore(gate)
        try {
            val session = TokenClient(options(2_000)).session("u1", store)
            val rt = emu.seed()["refresh_token"] as String
            val call = async(Dispatchers.Default) {
                session.seed(SeedOptions(refreshToken = rt))
                session.accessToken()
            }
            val token = withTimeout(BOUND_MS) { call.await() }
            same(Json.obj(store.get("u1")!!)["access_token"], token, "refreshed and saved")
        } finally {
            gate.countDown()
        }
    }
}
