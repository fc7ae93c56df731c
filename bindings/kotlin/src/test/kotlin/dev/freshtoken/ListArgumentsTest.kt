package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * List arguments are what their type says only at compile time: Java passes
 * `Arrays.asList("a", null)`, raw lists with other elements, and lists that
 * another thread changes while freshtoken reads them. uniffi's converter
 * reads a list twice (sizes, then bytes), so each of these threw
 * NullPointerException, ClassCastException or BufferOverflowException, none a
 * FreshTokenException. Each is Config naming the parameter now, nothing is
 * sent, and a list is read once: what was checked is what is sent.
 */
class ListArgumentsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun client() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
    )

    /** A list that gains an element every time it is iterated (another thread adding to it meanwhile). */
    private class GrowingList : AbstractList<String>() {
        @Volatile private var count = 1
        override val size: Int get() = count
        override fun get(index: Int): String = "scope$index"
        override fun iterator(): Iterator<String> {
            val snapshot = (0 until count).map { get(it) }
            count++
            return snapshot.iterator()
        }
    }

    @Suppress("UNCHECKED_CAST")
    private fun <T> javaList(vararg elements: Any?): List<T> = java.util.Arrays.asList(*elements) as List<T>

    private fun clientCredentials() = emu.grantRequests("client_credentials")

    @Test fun `a null or non-String scope is Config naming scopes, nothing is sent, and the client works on`() = blocking {
        val client = client()
        for (scopes in listOf(javaList<String>("accounts", null), javaList<String>("accounts", 42))) {
            val e = expectError<FreshTokenException.Config> { client.clientToken(scopes) }
            assertEquals("scopes", e.field)
            assertEquals("scopes", expectError<FreshTokenException.Config> { client.clientTokenBlocking(scopes) }.field)
            assertEquals("scopes", expectError<FreshTokenException.Config> { client.clientTokens().token(scopes) }.field)
            assertEquals("scopes", expectError<FreshTokenException.Config> { client.clientTokens().invalidate(scopes) }.field)
            assertEquals("scopes", expectError<FreshTokenException.Config> {
                client.authorizationUrl(AuthorizationUrlOptions(redirectUri = "http://127.0.0.1/cb", scopes = scopes))
            }.field)
        }
        assertEquals("nothing was sent", 0L, clientCredentials())
        assertTrue(client.clientToken(listOf("accounts")).isNotEmpty())
        assertEquals(1L, clientCredentials())
    }

    @Test fun `a scope list that changes while it is read is read once, and that copy is sent`() = blocking {
        val client = client()
        val token = client.clientToken(GrowingList())
        assertTrue(token.isNotEmpty())
        assertEquals(1L, clientCredentials())
        // The same single read for ClientTokens and the authorize URL.
        assertTrue(client.clientTokens().token(GrowingList()).isNotEmpty())
        val url = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = "http://127.0.0.1/cb", scopes = GrowingList())).url
        assertTrue("one scope read", url.contains("scope0") && !url.contains("scope1"))
    }

    @Test fun `a null old key for EncryptedStore is Config naming old`() {
        EncryptionKey("k1", ByteArray(32)).use { key ->
            val e = expectError<FreshTokenException.Config> { EncryptedStore(MemoryTokenStore(), key, javaList(null)) }
            assertEquals("old", e.field)
        }
    }
}
