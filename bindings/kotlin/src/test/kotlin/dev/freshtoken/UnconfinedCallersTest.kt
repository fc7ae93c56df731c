package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.concurrent.CountDownLatch
import kotlin.coroutines.Continuation
import kotlin.coroutines.EmptyCoroutineContext
import kotlin.coroutines.startCoroutine
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.DelicateCoroutinesApi
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.GlobalScope
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.completeWith
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * Callers whose coroutine has no dispatcher: `Dispatchers.Unconfined` (and
 * unconfined test dispatchers), or a suspend function called from Java with
 * a bare `Continuation`. Rust wakes a pending call on the thread that
 * completed what it waited for (a host callback's worker, inside its call
 * into Rust that delivers the answer; freshtoken-timer; freshtoken-flights);
 * resumed right there, such a caller polled its Rust future from inside the
 * delivery and hung for good, or ran its own code on freshtoken-timer.
 */
@OptIn(DelicateCoroutinesApi::class)
class UnconfinedCallersTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Longer than any answer may take here. */
        const val BOUND_MS = 20_000L
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun client(storeTimeoutMs: Long? = null) = TokenClient(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
            storeTimeoutMs = storeTimeoutMs,
        ),
    )

    private suspend fun seeded(store: MemoryTokenStore): UserSession =
        client().session("u1", store).also { it.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String)) }

    /** A store whose load never answers. */
    private class SilentStore : MemoryTokenStore() {
        override suspend fun load(key: String): String? = awaitCancellation()
    }

    @Test fun `a refresh called from Dispatchers Unconfined returns`() = blocking {
        val store = MemoryTokenStore()
        val session = seeded(store)
        val call = GlobalScope.async(Dispatchers.Unconfined) { session.accessToken() }
        val token = withTimeout(BOUND_MS) { call.await() }
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a suspend call with a bare Continuation, as Java makes one, returns`() = blocking {
        val store = MemoryTokenStore()
        val session = seeded(store)
        val answer = CompletableDeferred<String>()
        suspend { session.refresh().accessToken }
            .startCoroutine(Continuation(EmptyCoroutineContext) { answer.completeWith(it) })
        val token = withTimeout(BOUND_MS) { answer.await() }
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `an Unconfined caller's code after a store deadline holds up no other call's deadline`() = blocking {
        val client = client(storeTimeoutMs = 200)
        val callerBlocks = CountDownLatch(1)
        val failed = CompletableDeferred<String>()
        val first = GlobalScope.async(Dispatchers.Unconfined) {
            val e = expectError<FreshTokenException.Storage> { client.session("a", SilentStore()).status() }
            failed.complete(e.code)
            callerBlocks.await() // the caller's own blocking code, on whatever thread resumed it
        }
        try {
            assertEquals("storage", withTimeout(BOUND_MS) { failed.await() })
            // Another call's store deadline must still fire while that caller's code blocks.
            val second = async(Dispatchers.Default) {
                expectError<FreshTokenException.Storage> { client.session("b", SilentStore()).status() }.code
            }
            assertEquals("storage", withTimeout(BOUND_MS) { second.await() })
        } finally {
            callerBlocks.countDown()
        }
        withTimeout(BOUND_MS) { first.await() }
    }
}
