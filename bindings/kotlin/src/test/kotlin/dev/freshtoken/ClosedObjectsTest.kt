package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * A closed EncryptionKey or EncryptedStore used again: passed as an
 * argument it is a Config error naming the parameter, its own members throw
 * IllegalStateException, and its freed handle never reaches native code
 * (before, the JVM crashed with SIGILL/SIGSEGV in the Arc's refcount, so
 * without the fix this class may end the whole run). The generated
 * converters refuse it too (tools/patch-generated.sh, change 7).
 */
class ClosedObjectsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private val KEY = ByteArray(32) { 7 }
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() { emu.reset() }

    private fun client() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
    )

    private inline fun config(field: String, block: () -> Any?) {
        val e = expectError<FreshTokenException.Config> { block() }
        assertEquals("the parameter named for ${e.message}", field, e.field)
    }

    private inline fun destroyed(block: () -> Any?) {
        try {
            block()
            fail("a destroyed object was accepted")
        } catch (e: IllegalStateException) {
            assertEquals("object has already been destroyed", e.message?.substringAfter(" "))
        }
    }

    /** A closed EncryptedStore (its key closed too: the store keeps its own). */
    private fun closedStore(): EncryptedStore =
        EncryptionKey("k1", KEY).use { EncryptedStore(MemoryTokenStore(), it) }.also { it.close() }

    @Test fun `a closed key given to EncryptedStore is Config naming current or old`() {
        val closed = EncryptionKey("k1", KEY).also { it.close() }
        repeat(50) { config("current") { EncryptedStore(MemoryTokenStore(), closed) } }
        EncryptionKey("k2", KEY).use { open ->
            config("old") { EncryptedStore(MemoryTokenStore(), open, listOf(closed)) }
            assertNotNull(EncryptedStore(MemoryTokenStore(), open))
        }
        destroyed { closed.id }
        assertEquals("EncryptionKey(closed)", closed.toString())
    }

    @Test fun `a closed EncryptedStore given to a session or as inner is Config, and its own members throw`() = blocking {
        val store = closedStore()
        val rt = emu.seed()["refresh_token"] as String
        client().use { c ->
            repeat(50) { i -> config("store") { c.session("u$i", store).seed(SeedOptions(refreshToken = rt)) } }
            config("store") { c.session("u1", store).accessToken() }
            val code = ExchangeCodeOptions(code = "c", codeVerifier = "v".repeat(43), redirectUri = "http://127.0.0.1/cb")
            config("store") { c.exchangeCode(code, "u2", store) }
            EncryptionKey("k2", KEY).use { config("inner") { EncryptedStore(store, it) } }
            destroyed { kotlinx.coroutines.runBlocking { store.load("u1") } }
            assertEquals("nothing was sent", 0L, emu.counter("token_requests"))
            // The client works with an open store.
            val open = EncryptionKey("k3", KEY).use { EncryptedStore(MemoryTokenStore(), it) }
            val session = c.session("u3", open)
            session.seed(SeedOptions(refreshToken = rt))
            assertNotNull(session.accessToken())
        }
    }

    @Test fun `accessTokenAsync on a closed handle or client fails its future instead of throwing`() = blocking {
        val rt = emu.seed()["refresh_token"] as String
        val c = client()
        val session = c.session("u1", MemoryTokenStore())
        session.seed(SeedOptions(refreshToken = rt))
        assertNotNull(session.accessTokenAsync().get()) // mirrored now: the fresh path
        session.close()
        val closedHandle = session.accessTokenAsync()
        assertEquals(true, closedHandle.isCompletedExceptionally)
        val cause = runCatching { closedHandle.join() }.exceptionOrNull()?.cause
        assertEquals(IllegalStateException::class.java, cause?.javaClass)
        val other = c.session("u1", MemoryTokenStore())
        c.close()
        val closedClient = runCatching { other.accessTokenAsync().join() }.exceptionOrNull()?.cause
        assertEquals(IllegalStateException::class.java, closedClient?.javaClass)
    }

    @Test fun `ClientTokens taken before the client closed throw IllegalStateException after it`() = blocking {
        val c = client()
        val tokens = c.clientTokens()
        assertNotNull(tokens.token(listOf("accounts")))
        c.close()
        val requests = emu.counter("token_requests")
        for (call in listOf<suspend () -> Any?>({ tokens.token(listOf("accounts")) }, { tokens.invalidate(listOf("accounts")) })) {
            try {
                call()
                fail("a ClientTokens of a closed client answered")
            } catch (e: IllegalStateException) {
                assertEquals("TokenClient has been closed", e.message)
            }
        }
        assertEquals(true, runCatching { tokens.tokenAsync(listOf("accounts")).join() }.exceptionOrNull()?.cause is IllegalStateException)
        assertEquals("nothing was sent", requests, emu.counter("token_requests"))
    }

    @Test fun `the generated converters refuse a destroyed object`() {
        // The backstop behind the layer's checks, for every uniffi object.
        val key = EncryptionKey("k1", KEY).also { it.close() }
        destroyed { FfiConverterTypeFfiEncryptionKey.lower(key.ffi) }
        val store = closedStore()
        destroyed { FfiConverterTypeTokenStore.lower(store) }
        EncryptionKey("k2", KEY).use { open ->
            destroyed { encryptedStore(store, FfiEncryptionKeys(open.ffi, emptyList(), false)) }
            destroyed { encryptedStore(MemoryTokenStore(), FfiEncryptionKeys(key.ffi, emptyList(), false)) }
        }
        val client = client().also { it.close() }
        destroyed { FfiConverterTypeFfiTokenClient.lower(client.ffi) }
    }
}
