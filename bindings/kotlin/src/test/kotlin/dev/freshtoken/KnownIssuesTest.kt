package dev.freshtoken

import dev.freshtoken.support.blocking
import java.util.concurrent.atomic.AtomicInteger
import org.junit.Assert.assertEquals
import org.junit.Test

/**
 * Problems found in the Rust export from Kotlin, kept as reproductions.
 * A test still @Ignore'd fails today; remove the @Ignore once the export is
 * fixed. No emulator needed.
 */
class KnownIssuesTest {
    private class FlakyClock : Clock {
        val sleeps = AtomicInteger()
        override fun nowMs(): Long = System.currentTimeMillis()
        override suspend fun sleep(ms: Long) {
            if (sleeps.incrementAndGet() == 1) throw IllegalStateException("the host's sleep failed once")
        }
    }

    /** 503 first, then a good answer. */
    private class FlakyHttp : HttpClient {
        val calls = AtomicInteger()
        override suspend fun send(request: HttpRequest): HttpResponse =
            if (calls.incrementAndGet() == 1) HttpResponse(503, emptyList(), ByteArray(0))
            else HttpResponse(
                200,
                listOf(HttpHeader("Content-Type", "application/json")),
                """{"access_token":"at-ok","token_type":"Bearer","expires_in":900,"refresh_token":"rt-2"}""".toByteArray(),
            )
    }

    /**
     * A throwing host clock used to be a Rust panic inside the session's
     * shared flight, which then stayed poisoned. Clock members now return a
     * result (freshtoken falls back to the system clock) and a flight always
     * clears itself, so the session keeps working.
     */
    @Test fun `a host clock that throws once does not leave the session stuck`() = blocking {
        val clock = FlakyClock()
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = "http://127.0.0.1:9/connect/token", clientId = "c"),
            FlakyHttp(),
            clock,
        )
        val session = client.session("u", MemoryTokenStore())
        session.seed(SeedOptions(refreshToken = "rt-1"))
        runCatching { session.accessToken() } // the backoff's sleep throws
        assertEquals("the first call's backoff slept on the host's clock (and it threw)", 1, clock.sleeps.get())
        assertEquals("at-ok", session.accessToken())
    }
}
