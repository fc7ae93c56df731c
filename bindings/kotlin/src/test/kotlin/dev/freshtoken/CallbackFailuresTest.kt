package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.concurrent.CancellationException
import kotlinx.coroutines.TimeoutCancellationException
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
 * Host callbacks that are cancelled, or throw a Throwable that is not an
 * Exception, reach the core as failures: the caller gets a typed error at
 * once (not after the store deadline, never a hang), nothing reaches the
 * thread's uncaught-exception handler, and the next call works. The
 * generated code catches only kotlin.Exception; scripts/build-ffi.sh widens
 * that to Throwable (bindings/kotlin/tools/patch-generated.sh). Issue 11,
 * item 2.
 */
class CallbackFailuresTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Longer than any answer may take here; the store deadline is longer still. */
        const val BOUND_MS = 20_000L
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun client(http: HttpClient = HttpUrlConnectionClient()) = TokenClient(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint,
            clientId = "test-client",
            clientSecret = "test-secret",
            // A hang must show as a hang here, not be cut short by the deadline.
            storeTimeoutMs = 120_000,
        ),
        http,
    )

    /** A store that throws `failure()` from the chosen member while it is set. */
    private class FailingStore : MemoryTokenStore() {
        @Volatile var failSave: (() -> Throwable)? = null
        @Volatile var failLoad: (() -> Throwable)? = null

        override suspend fun save(key: String, record: String) {
            failSave?.let { throw it() }
            super.save(key, record)
        }

        override suspend fun load(key: String): String? {
            failLoad?.let { throw it() }
            return super.load(key)
        }
    }

    /** An HttpClient that throws `failure()` while it is set, else sends. */
    private class FailingHttp : HttpClient {
        private val inner = HttpUrlConnectionClient()
        @Volatile var fail: (() -> Throwable)? = null
        override suspend fun send(request: HttpRequest): HttpResponse {
            fail?.let { throw it() }
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

    private suspend fun seeded(client: TokenClient, store: TokenStore): Pair<UserSession, String> {
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    private fun assertHealed(store: MemoryTokenStore, token: String) {
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `a save that throws CancellationException is Storage, then the session works`() = blocking {
        val store = FailingStore()
        val (session, _) = seeded(client(), store)
        store.failSave = { CancellationException("the store's scope was cancelled") }
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertTrue(err.detail, err.detail.contains("CancellationException"))
        store.failSave = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `a load that throws CancellationException is Storage and sends nothing`() = blocking {
        val store = FailingStore()
        seeded(client(), store)
        val session = client().session("u1", store) // another process: reads the store first
        store.failLoad = { CancellationException("cancelled") }
        promptly<FreshTokenException.Storage> { session.accessToken() }
        assertEquals(0L, emu.refreshRequests())
        store.failLoad = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `a save that throws an Error (TODO()) is Storage at once, then the session works`() = blocking {
        val store = FailingStore()
        val (session, _) = seeded(client(), store)
        store.failSave = { NotImplementedError("An operation is not implemented: the database layer") }
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertTrue(err.detail, err.detail.contains("NotImplementedError"))
        store.failSave = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `a load that throws StackOverflowError is Storage at once`() = blocking {
        val store = FailingStore()
        seeded(client(), store)
        val session = client().session("u1", store)
        store.failLoad = { StackOverflowError() }
        promptly<FreshTokenException.Storage> { session.accessToken() }
        store.failLoad = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `an HttpClient that throws CancellationException or an AssertionError fails the call, then works`() = blocking {
        val http = FailingHttp()
        val store = FailingStore()
        val (session, _) = seeded(client(http), store)
        for (failure in listOf<() -> Throwable>({ CancellationException("call cancelled") }, { AssertionError("bug") })) {
            http.fail = failure
            val err = promptly<FreshTokenException> { session.accessToken() }
            assertTrue("${err.code}: ${err.message}", err is FreshTokenException.Network)
            assertEquals(0L, emu.refreshRequests())
        }
        http.fail = null
        assertHealed(store, session.accessToken())
    }

    @Test fun `a Clock whose nowMs throws an Error falls back to the system clock`() = blocking {
        // A sync callback: before the patch JNA swallowed the Error and the
        // core read 0 ms (1970) as the time.
        val clock = object : Clock {
            override fun nowMs(): Long = throw AssertionError("clock broken")
            override suspend fun sleep(ms: Long) {}
        }
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
        val store = FailingStore()
        val (session, _) = seeded(client, store)
        val before = System.currentTimeMillis()
        val info = session.tokens()
        val expires = info.expiresAtMs.toLong()
        assertTrue("expires at $expires, sent at about $before", expires >= before + 899_000 && expires <= System.currentTimeMillis() + 900_000)
        assertHealed(store, info.accessToken)
    }
}
