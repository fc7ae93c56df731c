package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.TrickleServer
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.net.ServerSocket
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/** The default HttpClient on its own, and how the core treats its failures. */
class HttpUrlConnectionClientTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    private val http = HttpUrlConnectionClient()

    @Before fun setUp() { emu.reset() }

    private fun request(
        url: String,
        body: String = "grant_type=bogus&client_id=test-client&client_secret=test-secret",
        timeoutMs: Long = 5_000,
        max: Long = 1_048_576,
    ) = HttpRequest(
        method = "POST",
        url = url,
        headers = listOf(
            HttpHeader("Content-Type", "application/x-www-form-urlencoded"),
            HttpHeader("Accept", "application/json"),
        ),
        body = body,
        timeoutMs = timeoutMs.toLong(),
        maxResponseBytes = max.toLong(),
    )

    private suspend inline fun <reified T : HostException> hostError(crossinline call: suspend () -> Any?): T {
        try {
            call()
        } catch (e: HostException) {
            if (e is T) return e
            fail("expected ${T::class.simpleName}, got ${e.javaClass.simpleName}: ${e.message}")
        }
        fail("expected ${T::class.simpleName}, but it succeeded")
        throw AssertionError()
    }

    /** Counts the requests that reach the real client. */
    private class Counting(val inner: HttpClient) : HttpClient {
        val calls = AtomicInteger()
        override suspend fun send(request: HttpRequest): HttpResponse {
            calls.incrementAndGet()
            return inner.send(request)
        }
    }

    @Test fun `connection refused is NotSent`() = blocking {
        val port = Emulator.closedPort()
        hostError<HostException.NotSent> { http.send(request("http://127.0.0.1:$port/connect/token")) }
    }

    @Test fun `a URL that is not http(s) is NotSent`() = blocking {
        hostError<HostException.NotSent> { http.send(request("ftp://127.0.0.1/x")) }
    }

    @Test fun `no answer within timeoutMs is Timeout`() = blocking {
        // The kernel accepts the connection into the backlog; nobody ever answers.
        ServerSocket(0).use { silent ->
            hostError<HostException.Timeout> {
                http.send(request("http://127.0.0.1:${silent.localPort}/connect/token", timeoutMs = 300))
            }
        }
    }

    @Test fun `error answers are returned with their body and headers`() = blocking {
        val response = http.send(request(emu.tokenEndpoint))
        assertEquals(400, response.status)
        assertTrue(String(response.body).contains("unsupported_grant_type"))
        assertTrue(response.headers.any { it.name.equals("cache-control", true) && it.value.contains("no-store") })
    }

    @Test fun `a 503 is an answer, not an exception, and the next request succeeds`() = blocking {
        emu.fault("kind" to "status", "status" to 503)
        val body = "grant_type=client_credentials&client_id=test-client&client_secret=test-secret&scope=accounts"
        assertEquals(503, http.send(request(emu.tokenEndpoint, body = body)).status)
        val ok = http.send(request(emu.tokenEndpoint, body = body))
        assertEquals(200, ok.status)
        assertTrue(String(ok.body).contains("\"token_type\""))
    }

    @Test fun `redirects are not followed`() = blocking {
        val response = http.send(request(
            emu.authorizationEndpoint,
            body = "response_type=code&client_id=test-client&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb" +
                "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        ))
        assertEquals(302, response.status)
        assertTrue(response.headers.any { it.name.equals("location", true) && it.value.startsWith("http://127.0.0.1/cb?") })
    }

    @Test fun `a body is read only one byte past maxResponseBytes`() = blocking {
        emu.fault("kind" to "oversize", "bytes" to 200_000)
        val response = http.send(request(emu.tokenEndpoint, max = 1_000))
        assertEquals(200, response.status)
        assertEquals(1_001, response.body.size)
    }

    /** The emulator's record of the one endless answer, once it has ended. */
    private fun endedStream(): Map<String, Any?> = emu.waitStreamsEnded(1).single()

    @Test fun `an endless answer is cut one byte past maxResponseBytes and the connection is dropped`() = blocking {
        for (framing in listOf("chunked", "length", "close")) {
            emu.reset()
            emu.endless(framing)
            val response = http.send(request(emu.tokenEndpoint, max = 65_536))
            assertEquals(200, response.status)
            assertEquals("$framing: read up to the cap + 1", 65_537, response.body.size)
            val stream = endedStream()
            assertEquals("$framing: the client hung up", "client_closed", stream["end"])
            val written = stream["bytes_written"] as Long
            assertTrue("$framing: the emulator wrote $written bytes", written < 1024 * 1024)
        }
    }

    @Test fun `a body that trickles forever is Timeout once timeoutMs has passed`() = trickled(inHeaders = false)

    // The read timeout bounds each read only: a status line or headers that
    // trickle in held the thread for as long as the JDK's header cap lasts
    // (about a day at a byte every 200 ms). The exchange's deadline ends it.
    @Test fun `headers that trickle forever are Timeout once timeoutMs has passed`() = trickled(inHeaders = true)

    private fun trickled(inHeaders: Boolean) = blocking {
        TrickleServer(inHeaders = inHeaders).use { server ->
            // On its own thread: a client that keeps reading must fail this test, not hang it.
            val outcome = java.util.concurrent.CompletableFuture.supplyAsync {
                runCatching { kotlinx.coroutines.runBlocking { http.send(request(server.url, timeoutMs = 500)) } }
            }
            val result = try {
                outcome.get(10, TimeUnit.SECONDS)
            } catch (e: java.util.concurrent.TimeoutException) {
                fail("still reading 10 s into a 500 ms exchange")
                throw e
            }
            val err = result.exceptionOrNull()
            assertTrue("expected Timeout, got $err", err is HostException.Timeout)
            server.closed.get(30, TimeUnit.SECONDS)
        }
    }

    @Test fun `an endless answer through a session is InvalidResponse and sends nothing more`() = blocking {
        val counting = Counting(http)
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            counting,
            FakeClock(),
        )
        val session = client.session("u1", TestStore())
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        emu.endless()
        val err = expectError<FreshTokenException.InvalidResponse> { session.accessToken() }
        assertEquals("invalid_response", err.code)
        assertEquals(1, counting.calls.get())
        val stream = endedStream()
        assertEquals("client_closed", stream["end"])
        assertTrue((stream["bytes_written"] as Long) < 1024 * 1024)
    }

    @Test fun `refused connections are retried, then Network with maybeSent false`() = blocking {
        val clock = FakeClock()
        val counting = Counting(http)
        val port = Emulator.closedPort()
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = "http://127.0.0.1:$port/connect/token", clientId = "test-client", clientSecret = "test-secret"),
            counting,
            clock,
        )
        val session = client.session("u1", TestStore())
        session.seed(SeedOptions(refreshToken = "rt-never-sent"))
        val err = expectError<FreshTokenException.Network> { session.accessToken() }
        assertEquals("network", err.code)
        assertFalse("the request surely never left", err.maybeSent)
        assertEquals("retried up to maxAttempts (4)", 4, counting.calls.get())
        assertEquals("a backoff before each retry", 3, clock.sleeps.size)
        assertFalse("nothing in doubt", session.status().inDoubt)
    }

    @Test fun `a read timeout through the library is Timeout and is not retried`() = blocking {
        ServerSocket(0).use { silent ->
            val counting = Counting(http)
            val client = TokenClient.withClock(
                TokenClientOptions(
                    tokenEndpoint = "http://127.0.0.1:${silent.localPort}/connect/token",
                    clientId = "test-client",
                    clientSecret = "test-secret",
                    timeoutMs = 300,
                ),
                counting,
                FakeClock(),
            )
            val session = client.session("u1", TestStore())
            session.seed(SeedOptions(refreshToken = "rt-maybe-sent"))
            val err = expectError<FreshTokenException.Timeout> { session.accessToken() }
            assertEquals("timeout", err.code)
            assertEquals("a request that may have been processed is not resent", 1, counting.calls.get())
            assertTrue("the refresh token is in doubt", session.status().inDoubt)
        }
    }

    @Test fun `client_secret_basic sends the Authorization header`() = blocking {
        val client = TokenClient.withClock(
            TokenClientOptions(
                tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
                clientAuth = "client_secret_basic",
            ),
            http,
            FakeClock(),
        )
        client.clientToken(listOf("accounts"))
        assertEquals(1L, emu.counter("client_credentials_issued"))
    }
}
