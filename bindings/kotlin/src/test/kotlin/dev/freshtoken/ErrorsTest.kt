package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.io.File
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/** Error codes match Rust's, and no token or secret appears in any exception. */
class ErrorsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        const val SENTINEL = "SENTINEL7f3a"
        const val SECRET = "secret-$SENTINEL"
    }

    @Before fun setUp() { emu.reset() }

    /** `ErrorCode::Variant => "code"` pairs of `ErrorCode::as_str` in src/error.rs. */
    private fun rustCodes(): Map<String, String> {
        val repo = System.getProperty("freshtoken.repo") ?: "."
        val source = File(repo, "src/error.rs").readText()
        val body = source.substringAfter("impl ErrorCode").substringAfter("fn as_str").substringBefore("\n    }\n")
        return Regex("""ErrorCode::(\w+)\s*=>\s*"([a-z_]+)"""").findAll(body)
            .associate { it.groupValues[1] to it.groupValues[2] }
    }

    /** Variant name → code of `ReauthReason::as_str`. */
    private fun rustReasons(): Map<String, String> {
        val repo = System.getProperty("freshtoken.repo") ?: "."
        val source = File(repo, "src/error.rs").readText()
        return Regex("""ReauthReason::(\w+)\s*=>\s*"([a-z_]+)"""").findAll(source)
            .associate { it.groupValues[1] to it.groupValues[2] }
    }

    private val oneOfEach: List<FreshTokenException> = listOf(
        FreshTokenException.ReauthorizationRequired(ReauthorizationReason.INVALID_GRANT, null, "d"),
        FreshTokenException.InvalidClient(401, null, "d"),
        FreshTokenException.OAuth(400, "invalid_scope", null, "d"),
        FreshTokenException.Transient(503, null, "d"),
        FreshTokenException.Network(false, "d"),
        FreshTokenException.Timeout("d"),
        FreshTokenException.InvalidResponse(null, "d"),
        FreshTokenException.Storage("d"),
        FreshTokenException.Conflict("d"),
        FreshTokenException.Config("f", "d"),
    )

    @Test fun `code gives the same strings as Rust's ErrorCode as_str`() {
        val rust = rustCodes()
        assertEquals("ten codes in src/error.rs: $rust", 10, rust.size)
        // Every exported variant is covered here (a new one fails this test).
        val subclasses = FreshTokenException::class.java.declaredClasses
            .filter { FreshTokenException::class.java.isAssignableFrom(it) }
            .map { it.simpleName }.toSet()
        assertEquals(subclasses, oneOfEach.map { it.javaClass.simpleName }.toSet())
        for (e in oneOfEach) {
            assertEquals("code of ${e.javaClass.simpleName}", rust[e.javaClass.simpleName], e.code)
        }
        assertEquals(rust.values.toSet(), oneOfEach.map { it.code }.toSet())
    }

    @Test fun `reason codes are Rust's ReauthReason as_str`() {
        val rust = rustReasons()
        val variant = { reason: ReauthorizationReason ->
            reason.name.lowercase().split('_').joinToString("") { it.replaceFirstChar(Char::uppercase) }
        }
        // The same reasons on both sides (a new one on either fails this test).
        assertEquals(rust.keys, ReauthorizationReason.values().map(variant).toSet())
        assertTrue("revoked is one of them", "Revoked" in rust)
        for (reason in ReauthorizationReason.values()) {
            assertEquals(rust[variant(reason)], reason.code)
        }
    }

    private fun assertNoSecret(e: Throwable) {
        for (text in listOf(e.message ?: "", e.toString(), e.stackTraceToString(), e.localizedMessage ?: "")) {
            assertFalse("${e.javaClass.simpleName} shows a token or secret", text.contains(SENTINEL))
        }
    }

    /**
     * uniffi's records are data classes; the ones that carry tokens or
     * secrets print through the core's redacting Display. Checked on what
     * really crosses the FFI during a refresh (requests with a Basic header
     * and a form body, responses, token info) and on hand-made records.
     */
    @Test fun `records print no token or secret`() = blocking {
        val printed = mutableListOf<String>()
        val recording = object : HttpClient {
            val inner = HttpUrlConnectionClient()
            override suspend fun send(request: HttpRequest): HttpResponse {
                printed += request.toString()
                printed += request.headers.map { it.toString() }
                return inner.send(request).also { printed += it.toString() }
            }
        }
        val client = TokenClient.withClock(
            TokenClientOptions(
                tokenEndpoint = emu.tokenEndpoint, clientId = "test-client",
                clientSecret = "test-secret", clientAuth = "client_secret_basic",
            ),
            recording,
            FakeClock(),
        )
        val family = emu.seed()
        val refreshToken = family["refresh_token"] as String
        val session = client.session("user", TestStore())
        val seed = SeedOptions(refreshToken = refreshToken)
        session.seed(seed)
        val info = session.refresh()
        printed += listOf(info.toString(), seed.toString())
        val secrets = listOf(refreshToken, info.accessToken, info.idToken!!, "test-secret", "dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=")
        assertTrue("the recording client saw the refresh", printed.size >= 4)
        for (text in printed) for (secret in secrets) {
            assertFalse("a record printed a token or secret: ${text.take(20)}…", text.contains(secret))
        }

        val made = listOf(
            FfiTokenInfo("at-$SENTINEL", 0L, "accounts", "idt-$SENTINEL", null).toString(),
            TokenClientOptions(tokenEndpoint = "https://x/token", clientId = "c", clientSecret = SECRET, privateKeyPem = SECRET).toString(),
            VersionedRecord(record = "{\"refresh_token\":\"rt-$SENTINEL\"}", version = "1").toString(),
            ExchangeCodeOptions(code = "code-$SENTINEL", codeVerifier = "v-$SENTINEL", redirectUri = "app://cb").toString(),
        )
        for (text in made) assertFalse(text, text.contains(SENTINEL))
        assertTrue("non-secret fields still show", made[0].contains("accounts"))
    }

    @Test fun `no token or secret appears in any exception`() = blocking {
        val clock = FakeClock()
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
        val store = TestStore()
        val seen = mutableListOf<FreshTokenException>()

        // A refresh token the server rejects.
        val dead = client.session("dead", store)
        dead.seed(SeedOptions(refreshToken = "rt-$SENTINEL", accessToken = "at-$SENTINEL", expiresIn = 0))
        seen += expectError<FreshTokenException.ReauthorizationRequired> { dead.accessToken() }
        seen += expectError<FreshTokenException.ReauthorizationRequired> { dead.tokenRejected("at-$SENTINEL") }

        // Answers that carry tokens but cannot be used.
        suspend fun live(key: String): UserSession = client.session(key, store).also {
            it.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        }
        emu.fault("kind" to "body", "status" to 200,
            "body" to """{"access_token":"at-$SENTINEL","token_type":"mac","expires_in":900,"refresh_token":"rt2-$SENTINEL"}""")
        seen += expectError<FreshTokenException.InvalidResponse> { live("a").accessToken() }
        emu.fault("kind" to "body", "status" to 200, "body" to """{"access_token":"at-$SENTINEL","token_type":"Bearer","exp""")
        seen += expectError<FreshTokenException.InvalidResponse> { live("b").accessToken() }
        emu.fault("kind" to "body", "status" to 200, "body" to """{"access_token":"at-$SENTINEL","token_type":"Bearer","expires_in":"soon"}""")
        seen += expectError<FreshTokenException.InvalidResponse> { live("c").accessToken() }
        emu.fault("kind" to "body", "status" to 503, "content_type" to "text/plain", "body" to "down, token at-$SENTINEL", "count" to 4)
        seen += expectError<FreshTokenException.Transient> { live("d").accessToken() }

        // Unreadable stored records that hold a refresh token.
        store.save("garbled", "not json rt-$SENTINEL")
        seen += expectError<FreshTokenException.Storage> { client.session("garbled", store).accessToken() }
        store.save("future", """{"schema":"freshtoken.record/99","refresh_token":"rt-$SENTINEL"}""")
        seen += expectError<FreshTokenException.Storage> { client.session("future", store).status() }

        // A store that fails while saving a record full of tokens.
        val failing = live("e")
        store.failSaves = 1
        seen += expectError<FreshTokenException.Storage> { failing.accessToken() }

        // A wrong client secret.
        val wrong = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = SECRET),
            HttpUrlConnectionClient(), clock,
        )
        val ws = wrong.session("w", store)
        ws.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        seen += expectError<FreshTokenException.InvalidClient> { ws.accessToken() }
        seen += expectError<FreshTokenException.InvalidClient> { wrong.clientToken(listOf("accounts")) }

        // Configuration errors about secret-bearing options.
        seen += expectError<FreshTokenException.Config> {
            TokenClient(TokenClientOptions(tokenEndpoint = "http://example.com/connect/token", clientId = "c", clientSecret = SECRET), HttpUrlConnectionClient())
        }
        seen += expectError<FreshTokenException.Config> {
            TokenClient(TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "c", clientSecret = SECRET, clientAuth = "bogus"), HttpUrlConnectionClient())
        }

        assertTrue(seen.size >= 12)
        assertEquals(
            setOf("reauthorization_required", "invalid_response", "transient", "storage", "invalid_client", "config"),
            seen.map { it.code }.toSet(),
        )
        seen.forEach(::assertNoSecret)
    }
}
