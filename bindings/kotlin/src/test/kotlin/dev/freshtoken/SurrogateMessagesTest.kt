package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.io.IOException
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * A store or HTTP callback that fails with a message holding a lone UTF-16
 * surrogate (it has no UTF-8): the failure reaches the core at once, as its
 * own kind, with the surrogate replaced by U+FFFD. Before
 * tools/patch-generated.sh made failure texts safe (change 5), lowering the
 * text threw inside the failure path: the call waited out its whole
 * deadline, the exception went to the uncaught-exception handler, and an
 * unanswered save locked the key out for 12 store deadlines.
 *
 * The deadlines here are two minutes, so a lost answer shows as a hang
 * (caught by [promptly]) instead of being cut short.
 */
class SurrogateMessagesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Longer than any answer may take here; the deadlines are longer still. */
        const val BOUND_MS = 20_000L
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun options() = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint,
        clientId = "test-client",
        clientSecret = "test-secret",
        storeTimeoutMs = 120_000,
        timeoutMs = 120_000,
    )

    /**
     * A store that throws `failure()` from the chosen member while it is set
     * (saves: of rotated records only, not the write-ahead marker).
     */
    private class FailingStore : MemoryTokenStore() {
        @Volatile var failSave: (() -> Throwable)? = null
        @Volatile var failLoad: (() -> Throwable)? = null

        override suspend fun save(key: String, record: String) {
            if (!record.contains("\"in_doubt\":true")) failSave?.let { throw it() }
            super.save(key, record)
        }

        override suspend fun load(key: String): String? {
            failLoad?.let { throw it() }
            return super.load(key)
        }
    }

    /** An HttpClient that throws `failure()` for the next [failures] sends, then sends. */
    private class FailingHttp(private val failure: () -> Throwable) : HttpClient {
        private val inner = HttpUrlConnectionClient()
        val sends = AtomicInteger()
        @Volatile var failures = 0
        override suspend fun send(request: HttpRequest): HttpResponse {
            sends.incrementAndGet()
            if (failures > 0) {
                failures--
                throw failure()
            }
            return inner.send(request)
        }
    }

    /** `block`'s FreshTokenException of type T, failing the test if it takes longer than BOUND_MS. */
    private suspend inline fun <reified T : FreshTokenException> promptly(crossinline block: suspend () -> Any?): T =
        try {
            withTimeout(BOUND_MS) { expectError<T> { block() } }
        } catch (e: TimeoutCancellationException) {
            fail("no answer within $BOUND_MS ms: the failed callback never reached the core")
            throw e
        }

    private suspend fun seeded(client: TokenClient, store: TokenStore): UserSession =
        client.session("u1", store).also { it.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String)) }

    private fun assertHealed(store: MemoryTokenStore, token: String, refreshes: Long = 1) {
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        assertEquals(refreshes, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    private fun assertSafeText(detail: String, text: String) {
        assertTrue(detail, detail.contains(text.replace('\uD800', '\uFFFD').replace('\uDC00', '\uFFFD')))
        assertFalse(detail, detail.any { Character.isSurrogate(it) })
    }

    @Test fun `a load whose exception message has a lone surrogate is Storage at once and sends nothing`() = blocking {
        val store = FailingStore()
        seeded(TokenClient(options()), store)
        val session = TokenClient(options()).session("u1", store) // another process: reads the store first
        store.failLoad = { IOException("bad \uD800 row") }
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertSafeText(err.detail, "bad \uD800 row")
        assertEquals(0L, emu.refreshRequests())
        store.failLoad = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `a save failing with such a HostException is Storage at once, and the next call saves`() = blocking {
        val store = FailingStore()
        val session = seeded(TokenClient(options()), store)
        store.failSave = { HostException.Failed("disk \uDC00 full") }
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertSafeText(err.detail, "disk \uDC00 full")
        store.failSave = null
        // Answered, not abandoned: no lock-out, the renewed record is saved now.
        val token = withTimeout(BOUND_MS) { session.accessToken() }
        assertHealed(store, token)
    }

    @Test fun `an HTTP failure with such a message is Network at once`() = blocking {
        val http = FailingHttp { RuntimeException("conn \uD800 reset") }
        val store = FailingStore()
        val session = seeded(TokenClient(options(), http), store)
        http.failures = 1
        val err = promptly<FreshTokenException.Network> { session.accessToken() }
        assertTrue("the host's send ran: it may have been sent", err.maybeSent)
        assertSafeText(err.detail, "conn \uD800 reset")
        assertEquals(0L, emu.refreshRequests())
    }

    @Test fun `HostException NotSent with such a message stays NotSent and is retried`() = blocking {
        val http = FailingHttp { HostException.NotSent("connect \uD800 refused") }
        val store = FailingStore()
        val client = TokenClient.withClock(options(), http, FakeClock())
        val session = seeded(client, store)
        http.failures = 1
        // Lowered as an unexpected error instead, it would be a Network error
        // that may have been sent (not retried).
        val token = withTimeout(BOUND_MS) { session.accessToken() }
        assertEquals("one failed send, one retry", 2, http.sends.get())
        assertHealed(store, token)
    }

    @Test fun `a Clock whose nowMs throws such a message falls back to the system clock`() = blocking {
        // A sync callback: its failure text (the stack trace) is made safe too.
        val clock = object : Clock {
            @Volatile var broken = false
            override fun nowMs(): Long = if (broken) throw IllegalStateException("tick \uD800") else System.currentTimeMillis()
            override suspend fun sleep(ms: Long) {}
        }
        val store = FailingStore()
        val session = seeded(TokenClient.withClock(options(), HttpUrlConnectionClient(), clock), store)
        clock.broken = true
        val before = System.currentTimeMillis()
        val info = withTimeout(BOUND_MS) { session.tokens() }
        val expires = info.expiresAtMs
        assertTrue("expires at $expires, sent at about $before", expires >= before + 899_000 && expires <= System.currentTimeMillis() + 900_000)
        assertHealed(store, info.accessToken)
    }
}
