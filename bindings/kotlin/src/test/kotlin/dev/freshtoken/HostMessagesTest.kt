package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.io.IOException
import org.junit.AfterClass
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Messages from host callbacks (a store or HTTP client whose exception
 * quotes the record or the request) reach the caller scrubbed of every
 * token and secret the session knows. Issue 11, item 5.
 */
class HostMessagesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        const val SECRET = "test-secret"
    }

    @Before fun setUp() { emu.reset() }

    /** A store whose failures quote the record, as a careless database layer does. */
    private class QuotingStore : MemoryTokenStore() {
        @Volatile var seeded: String? = null
        /** Fails saves of a rotated record (another refresh token than [seeded]). */
        @Volatile var failRotatedSaves = false
        @Volatile var failLoads = false
        val quoted: MutableList<String> = java.util.Collections.synchronizedList(mutableListOf())

        override suspend fun save(key: String, record: String) {
            if (failRotatedSaves && Json.obj(record)["refresh_token"] != seeded) {
                quoted.add(record)
                throw IOException("disk full while writing $record")
            }
            super.save(key, record)
        }

        override suspend fun load(key: String): String? {
            val record = super.load(key)
            if (failLoads) {
                record?.let { quoted.add(it) }
                throw HostException.Failed("corrupt row for $key: $record")
            }
            return record
        }
    }

    /** An HttpClient whose failure quotes the request body (refresh token, client secret). */
    private class QuotingHttp : HttpClient {
        @Volatile var fail = false
        private val inner = HttpUrlConnectionClient()
        override suspend fun send(request: HttpRequest): HttpResponse {
            if (fail) throw HostException.Failed("connection reset after sending ${request.body}")
            return inner.send(request)
        }
    }

    private fun client(http: HttpClient = HttpUrlConnectionClient()) = TokenClient.withClock(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = SECRET),
        http,
        FakeClock(),
    )

    /** Every token and secret in `records` (stored-record JSON) plus `extra`. */
    private fun secretsOf(records: List<String>, vararg extra: String): List<String> =
        records.flatMap { r ->
            val fields = Json.obj(r)
            listOf("refresh_token", "access_token", "id_token").mapNotNull { fields[it] as String? }
        } + extra

    /** Neither the whole of any secret nor its last 12 characters appear in the error's texts. */
    private fun assertScrubbed(err: FreshTokenException, secrets: List<String>) {
        assertTrue("something to look for", secrets.isNotEmpty())
        for (text in listOf(err.message ?: "", err.toString())) { // message holds every field, detail too
            for (secret in secrets) {
                assertFalse("${err.code} message holds a secret (length ${secret.length})", text.contains(secret))
                if (secret.length >= 24) {
                    assertFalse("${err.code} message holds a secret's tail", text.contains(secret.takeLast(12)))
                }
            }
        }
    }

    @Test fun `a store save error that quotes the record carries no token`() = blocking {
        val store = QuotingStore()
        val rt = emu.seed()["refresh_token"] as String
        store.seeded = rt
        val session = client().session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        store.failRotatedSaves = true

        val err = expectError<FreshTokenException.Storage> { session.accessToken() }
        assertTrue("the store quoted the record", store.quoted.isNotEmpty())
        assertTrue("the host's reason is kept: ${err.detail}", err.detail.contains("disk full"))
        assertScrubbed(err, secretsOf(store.quoted, rt, SECRET))
    }

    @Test fun `a store load error that quotes the record carries no token`() = blocking {
        val store = QuotingStore()
        val rt = emu.seed()["refresh_token"] as String
        val session = client().session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        session.accessToken() // the session now knows the rotated tokens
        store.failLoads = true

        // A forced refresh re-reads the store first.
        val err = expectError<FreshTokenException.Storage> { session.refresh() }
        assertTrue("the store quoted the record", store.quoted.isNotEmpty())
        assertTrue(err.detail.contains("corrupt row"))
        assertScrubbed(err, secretsOf(store.quoted, rt, SECRET))
    }

    @Test fun `an HTTP error that quotes the request body carries neither the refresh token nor the secret`() = blocking {
        val http = QuotingHttp()
        val store = QuotingStore()
        val rt = emu.seed()["refresh_token"] as String
        val session = client(http).session("u1", store)
        session.seed(SeedOptions(refreshToken = rt))
        http.fail = true

        val err = expectError<FreshTokenException.Network> { session.accessToken() }
        assertTrue(err.detail.contains("connection reset"))
        assertScrubbed(err, listOf(rt, SECRET))
    }
}
