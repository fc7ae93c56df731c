package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.nio.file.Files
import java.util.concurrent.ExecutionException
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * DESIGN point 16 for Kotlin: a String argument with a lone UTF-16
 * surrogate (it has no UTF-8, so it cannot reach the core) is
 * FreshTokenException.Config naming the parameter, at every public entry
 * point; never java.nio.charset.MalformedInputException (a checked
 * IOException no method declares). Nothing is sent, the value is never
 * quoted, and the client and its sessions keep working. A key made of
 * valid surrogate pairs (an emoji) is fine.
 */
class LoneSurrogateArgumentsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** A lone high surrogate, after a marker that must never show in a message. */
        const val LONE = "s3cr3t\uD800"
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun options() =
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret")

    /** [block]'s Config error, which must name [field] and not quote the value. */
    private inline fun config(field: String, block: () -> Any?) {
        val e = expectError<FreshTokenException.Config> { block() }
        assertEquals("the parameter named for ${e.message}", field, e.field)
        assertEquals("config", e.code)
        assertFalse("the value is not quoted: ${e.message}", e.message!!.contains("s3cr3t"))
    }

    @Test fun `the session key of every call`() = blocking {
        val client = TokenClient(options())
        val store = MemoryTokenStore()
        val session = client.session("u$LONE", store)
        config("key") { session.seed(SeedOptions(refreshToken = "rt")) }
        config("key") { session.accessToken() }
        config("key") { session.accessTokenBlocking() }
        config("key") {
            try {
                session.accessTokenAsync().get()
            } catch (e: ExecutionException) {
                throw e.cause!!
            }
        }
        config("key") { session.cachedAccessToken() }
        config("key") { session.tokens() }
        config("key") { session.refresh() }
        config("key") { session.tokenRejected("at") }
        config("key") { session.status() }
        config("key") { session.revoke() }
        config("key") { client.session(LONE, FileTokenStore(Files.createTempDirectory("freshtoken-lone"))).status() }
        val rt = emu.seed()["refresh_token"] as String
        config("key") { client.exchangeCode(ExchangeCodeOptions("code", "verifier", "https://app.example/cb"), LONE, store) }
        assertEquals("nothing was stored", emptySet<String>(), store.keys())
        // A key of valid surrogate pairs crosses; the client is not poisoned.
        val emoji = client.session("user-\uD83D\uDE00", store)
        emoji.seed(SeedOptions(refreshToken = rt))
        assertNotNull(emoji.accessToken())
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `the strings of seed, tokenRejected, client tokens and the code flow`() = blocking {
        val client = TokenClient(options())
        val store = MemoryTokenStore()
        val session = client.session("u1", store)
        config("refresh_token") { session.seed(SeedOptions(refreshToken = LONE)) }
        config("access_token") { session.seed(SeedOptions(refreshToken = "rt", accessToken = LONE, expiresIn = 900)) }
        config("scope") { session.seed(SeedOptions(refreshToken = "rt", scope = LONE)) }
        config("id_token") { session.seed(SeedOptions(refreshToken = "rt", idToken = LONE)) }
        assertEquals("no seed was stored", null, store.get("u1"))
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        config("token") { session.tokenRejected(LONE) }
        config("token") { session.tokenRejectedBlocking(LONE) }
        config("scopes") { client.clientToken(listOf("accounts", LONE)) }
        config("scopes") { client.clientTokens().token(listOf(LONE)) }
        config("scopes") { client.clientTokens().invalidate(listOf(LONE)) }
        val url = AuthorizationUrlOptions(redirectUri = "https://app.example/cb")
        config("redirect_uri") { client.authorizationUrl(url.copy(redirectUri = "https://app.example/$LONE")) }
        config("scopes") { client.authorizationUrl(url.copy(scopes = listOf(LONE))) }
        config("state") { client.authorizationUrl(url.copy(state = LONE)) }
        config("nonce") { client.authorizationUrl(url.copy(nonce = LONE)) }
        config("prompt") { client.authorizationUrl(url.copy(prompt = LONE)) }
        val exchange = ExchangeCodeOptions("code", "verifier", "https://app.example/cb")
        config("code") { client.exchangeCode(exchange.copy(code = LONE), "u2", store) }
        config("code_verifier") { client.exchangeCode(exchange.copy(codeVerifier = LONE), "u2", store) }
        config("redirect_uri") { client.exchangeCode(exchange.copy(redirectUri = LONE), "u2", store) }
        assertEquals("no token request was sent", 0L, emu.counter("token_requests"))
        // The session and the client still work.
        assertNotNull(session.accessToken())
        assertNotNull(client.clientToken(listOf("accounts")))
        assertEquals(2L, emu.counter("token_requests"))
    }

    @Test fun `the options of every way to make a client, and encryption keys`() = blocking {
        val fields = mapOf<String, (TokenClientOptions) -> TokenClientOptions>(
            "token_endpoint" to { it.copy(tokenEndpoint = "${emu.tokenEndpoint}/$LONE") },
            "client_id" to { it.copy(clientId = LONE) },
            "client_secret" to { it.copy(clientSecret = LONE) },
            "client_auth" to { it.copy(clientAuth = LONE) },
            "private_key_pem" to { it.copy(privateKeyPem = LONE) },
            "key_id" to { it.copy(keyId = LONE) },
            "assertion_audience" to { it.copy(assertionAudience = LONE) },
            "audience" to { it.copy(audience = LONE) },
            "authorization_endpoint" to { it.copy(authorizationEndpoint = LONE) },
            "revocation_endpoint" to { it.copy(revocationEndpoint = LONE) },
            "event_keys" to { it.copy(eventKeys = LONE) },
        )
        for ((field, change) in fields) {
            config(field) { TokenClient(change(options())) }
            config(field) { TokenClient.withClock(change(options()), HttpUrlConnectionClient(), dev.freshtoken.support.FakeClock()) }
        }
        config("event_keys") { TokenClient.discoverBlocking(emu.issuer, TokenClientOptions(clientId = "test-client", eventKeys = LONE)) }
        config("issuer") { TokenClient.discover("${emu.issuer}/$LONE", TokenClientOptions(clientId = "test-client")) }
        val json = """{"clientId":"test-client","clientSecret":"test-secret","slidingRefreshTokenLifetime":31536000,"tokenEndpoint":"${emu.tokenEndpoint}"}"""
        config("credentials") { TokenClient.fromCredentialsJson(json.replace("test-secret", LONE)) }
        config("event_keys") {
            TokenClient.fromCredentialsJson(json, options = TokenClientOptions(clientId = "", eventKeys = LONE))
        }
        config("id") { EncryptionKey(LONE, ByteArray(32)) }
        config("id") { EncryptionKey.fromBase64(LONE, "A".repeat(43)) }
        config("key") { EncryptionKey.fromBase64("k1", "A".repeat(42) + "\uDC00") }
        assertEquals("no request reached the emulator", 0L, emu.counter("token_requests"))
        // The same calls with good strings work.
        TokenClient.fromCredentialsJson(json).use { assertNotNull(it.clientToken(listOf("accounts"))) }
        EncryptionKey.fromBase64("k1", "A".repeat(43)).use { assertEquals("k1", it.id) }
    }

    @Test fun `an EncryptedStore's own members called directly`() = blocking {
        val inner = MemoryTokenStore()
        val store = EncryptionKey("k1", ByteArray(32)).use { EncryptedStore(inner, it) }
        config("key") { store.load(LONE) }
        config("key") { store.save(LONE, "{}") }
        config("record") { store.save("u1", LONE) }
        config("owner") { store.acquire("u1", LONE, 1_000) }
        config("owner") { store.release("u1", LONE) }
        config("key") { store.loadVersioned(LONE) }
        config("expected") { store.saveVersioned("u1", "{}", LONE) }
        assertEquals("nothing was written", null, inner.get("u1"))
        store.save("u1", "{}")
        assertEquals("{}", store.load("u1"))
    }

    @Test fun `a string that reaches the generated converter unchecked is a typed Config error too`() {
        // The backstop (tools/patch-generated.sh, change 6): the generated
        // API, called directly, without the layer's checks.
        TokenClient(options()).use { client ->
            val e = expectError<FreshTokenException.Config> { ffiCall { client.ffi.session("u$LONE", MemoryTokenStore()) } }
            assertEquals("argument", e.field)
            assertFalse(e.message, e.message!!.contains("s3cr3t"))
            try {
                FfiEncryptionKey(LONE, ByteArray(32))
                fail("a lone surrogate crossed the generated converter")
            } catch (e: FfiFreshTokenException.Config) {
                assertEquals("argument", e.field)
            }
            assertEquals("no session reached the core", 0L, client.sessionCount())
        }
    }

    // Their toString() printed through Rust, which lowers every field: it
    // threw the generated FfiFreshTokenException.Config (patch change 11).
    @Test fun `a record holding a lone surrogate prints its type, never throws`() {
        val records = listOf(
            SeedOptions(refreshToken = LONE),
            HttpHeader(LONE, "v"),
            TokenClientOptions(tokenEndpoint = "https://example.com/token", clientId = LONE),
        )
        for (record in records) {
            val text = record.toString()
            assertEquals("${record.javaClass.simpleName}(<unprintable: a field holds text without UTF-8>)", text)
            assertFalse(text.contains("s3cr3t"))
        }
        assertFalse(SeedOptions(refreshToken = "rt-ok").toString().contains("unprintable"))
    }
}
