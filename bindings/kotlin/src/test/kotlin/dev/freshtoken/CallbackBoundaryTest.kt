package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.nio.file.Files
import java.util.Collections
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
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
 * What a host callback hands back that cannot cross to Rust, and what it
 * leaves on the thread it ran on:
 *
 * - a result the generated code cannot convert (a null `HttpResponse` or
 *   `CasResult` from Java code, a null element in the headers list) and an
 *   exception whose `toString()` throws reach the core as a failure at
 *   once: `network` with `maybeSent` for HTTP (the host's send ran),
 *   `storage` for stores; never a wait for the whole deadline, never the
 *   uncaught-exception handler;
 * - an interrupt flag a callback set on the dispatcher thread it ran on is
 *   cleared when the callback ends, so a later `FileTokenStore` save on that
 *   thread does not fail with `ClosedByInterruptException`. (Here the whole
 *   path; an idle worker clears its flag itself when it parks, so the flag
 *   right after the callback is checked in CallbackWrapperTest.)
 *
 * The conversion and the message are patched into uniffi's generated
 * helpers by bindings/kotlin/tools/patch-generated.sh (change 5).
 */
class CallbackBoundaryTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Longer than any answer may take here; the deadlines are longer still. */
        const val BOUND_MS = 20_000L

        /** A null where the Kotlin type says there is none: what Java code can return. */
        @Suppress("UNCHECKED_CAST")
        fun <T> javaNull(): T = null as T
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
            // A lost answer must show as a hang here, not be cut short by a deadline.
            storeTimeoutMs = 120_000,
            timeoutMs = 120_000,
        ),
        http,
    )

    /** An exception that cannot describe itself. */
    private class Indescribable : RuntimeException("x") {
        override fun toString(): String = throw IllegalStateException("toString broken")
        override val message: String get() = throw IllegalStateException("message broken")
    }

    /** An HttpClient that answers `answer()` without sending while it is set, else sends. */
    private class OddHttp : HttpClient {
        private val inner = HttpUrlConnectionClient()
        @Volatile var answer: (() -> HttpResponse)? = null
        override suspend fun send(request: HttpRequest): HttpResponse {
            val odd = answer ?: return inner.send(request)
            return odd()
        }
    }

    /** `block`'s FreshTokenException of type T, failing the test if it takes longer than BOUND_MS. */
    private suspend inline fun <reified T : FreshTokenException> promptly(crossinline block: suspend () -> Any?): T =
        try {
            withTimeout(BOUND_MS) { expectError<T> { block() } }
        } catch (e: TimeoutCancellationException) {
            fail("no answer within $BOUND_MS ms: the callback's outcome never reached the core")
            throw e
        }

    private suspend fun seeded(client: TokenClient, store: TokenStore, key: String = "u1"): UserSession {
        val rt = emu.seed()["refresh_token"] as String
        return client.session(key, store).also { it.seed(SeedOptions(refreshToken = rt)) }
    }

    /** The HTTP client's answer could not be passed on: `network`, may have been sent; then the session works. */
    private fun assertHttpAnswerLost(answer: () -> HttpResponse, mentions: String) = blocking {
        val http = OddHttp()
        val store = MemoryTokenStore()
        val session = seeded(client(http), store)
        http.answer = answer
        val err = promptly<FreshTokenException.Network> { session.accessToken() }
        assertTrue("the host's send ran: it may have been sent", err.maybeSent)
        assertTrue(err.detail, err.detail.contains(mentions))
        assertEquals("nothing reached the emulator", 0L, emu.refreshRequests())
        http.answer = null
        val token = session.accessToken()
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `an HttpClient returning null (Java) is a network error at once`() =
        assertHttpAnswerLost({ javaNull() }, "cannot be passed to freshtoken")

    @Test fun `a null element in the answer's headers is a network error at once`() =
        assertHttpAnswerLost({ HttpResponse(200, listOf(javaNull<HttpHeader>()), ByteArray(0)) }, "NullPointerException")

    @Test fun `an HttpClient throwing an exception whose toString throws is a network error naming its class`() =
        assertHttpAnswerLost({ throw Indescribable() }, Indescribable::class.java.name)

    @Test fun `a save throwing an exception whose toString throws is Storage at once`() = blocking {
        val store = object : MemoryTokenStore() {
            @Volatile var fail = false
            override suspend fun save(key: String, record: String) {
                if (fail) throw Indescribable()
                super.save(key, record)
            }
        }
        val session = seeded(client(), store)
        store.fail = true
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertTrue(err.detail, err.detail.contains(Indescribable::class.java.name))
        store.fail = false
        val token = session.accessToken()
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the renewed record was saved on the next call")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a fleet store whose saveVersioned returns null (Java) is Storage at once`() = blocking {
        val store = object : InMemoryFleetStore() {
            @Volatile var broken = false
            override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult =
                if (broken) javaNull() else super.saveVersioned(key, record, expected)
        }
        val session = seeded(client(), store)
        store.broken = true
        val err = promptly<FreshTokenException.Storage> { session.accessToken() }
        assertTrue(err.detail, err.detail.contains("cannot be passed to freshtoken"))
        store.broken = false
        val token = session.accessToken()
        same(Json.obj(store.get("u1")!!)["access_token"], token, "the renewed record was saved on the next call")
        assertEquals(1L, emu.refreshRequests())
    }

    /**
     * Java's idiom for an interrupted wait: set the flag again, then throw.
     * Over a FileTokenStore, armed for rotated records only.
     */
    private class ReinterruptingStore(private val file: FileTokenStore) : TokenStoreBase() {
        @Volatile var armed = false
        val threads: MutableList<Thread> = Collections.synchronizedList(mutableListOf())

        override suspend fun load(key: String): String? = file.load(key)

        override suspend fun save(key: String, record: String) {
            if (armed && !record.contains("\"in_doubt\":true")) {
                threads.add(Thread.currentThread())
                Thread.currentThread().interrupt()
                throw InterruptedException("the database wait was interrupted")
            }
            file.save(key, record)
        }
    }

    @Test fun `a store that re-interrupts its thread leaves no dispatcher thread interrupted`() = blocking {
        val store = ReinterruptingStore(FileTokenStore(Files.createTempDirectory("freshtoken-interrupt")))
        val client = client()
        val keys = (1..8).map { "k$it" }
        for (key in keys) seeded(client, store, key)
        store.armed = true
        val failed = keys.map { key ->
            async(Dispatchers.Default) { runCatching { client.session(key, store).accessToken() }.exceptionOrNull() }
        }.awaitAll()
        // Each call failed at its armed save, none earlier: a worker left
        // interrupted by another key's callback fails the FileTokenStore
        // save of the in-doubt marker instead ("cannot write the record file
        // (ClosedByInterruptException)").
        for (e in failed) {
            assertTrue("${e?.javaClass?.simpleName}: ${e?.message}",
                e is FreshTokenException.Storage && e.detail.contains("the database wait was interrupted"))
        }
        assertEquals(keys.size, store.threads.size)
        // Checked once each call has failed, i.e. after the callback ended.
        val left = store.threads.filter { it.isInterrupted }.map { it.name }
        assertEquals("dispatcher threads the store left interrupted", emptyList<String>(), left)

        store.armed = false
        val tokens = keys.map { key -> async(Dispatchers.Default) { client.session(key, store).accessToken() } }.awaitAll()
        for ((key, token) in keys.zip(tokens)) {
            same(Json.obj(store.load(key)!!)["access_token"], token, "$key saved by the FileTokenStore")
        }
    }
}
