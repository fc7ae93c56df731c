package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.blocking
import dev.freshtoken.support.callersThatJoin
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.withContext
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Client-credentials tokens cached per scope set. Mirrors client-tokens.emulator.test.mjs. */
class ClientTokensTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    private val clock = FakeClock()
    private lateinit var client: TokenClient

    @Before fun setUp() {
        emu.reset()
        client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
    }

    private fun ccRequests() = emu.grantRequests("client_credentials")

    @Test fun `cached per sorted scope set, renewed after expiry`() = blocking {
        val a = client.clientToken(listOf("accounts", "balances"))
        same(client.clientToken(listOf("balances", "accounts", "balances")), a, "same scope set, same token")
        assertEquals(1L, ccRequests())

        val other = client.clientToken(listOf("transactions"))
        differ(other, a, "another scope set has its own token")
        assertEquals(2L, ccRequests())
        assertEquals("audience defaults to the token endpoint", emu.tokenEndpoint, emu.counters()["last_audience"])

        clock.advance(3_539_000) // 3600 s tokens, 60 s leeway
        same(client.clientTokens().token(listOf("accounts", "balances")), a, "still fresh (through clientTokens())")
        assertEquals(2L, ccRequests())
        clock.advance(1_000)
        differ(client.clientToken(listOf("accounts", "balances")), a, "stale: a new token")
        assertEquals(3L, ccRequests())
        assertEquals("renewed with client_credentials, never refresh_token", 0L, emu.refreshRequests())
    }

    @Test fun `concurrent coroutines share one request`() = blocking {
        emu.hold(grant = "client_credentials")
        val tokens = callersThatJoin(emu, 50) { i ->
            client.clientToken(if (i % 2 == 0) listOf("accounts", "balances") else listOf("balances", "accounts"))
        }
        assertEquals(1, tokens.toSet().size)
        assertEquals(1L, ccRequests())
        assertEquals(1L, emu.counter("max_concurrent_token_requests"))
    }

    @Test fun `invalidate forces a new token for that scope set only`() = blocking {
        val a = client.clientToken(listOf("accounts"))
        val b = client.clientToken(listOf("balances"))
        client.clientTokens().invalidate(listOf("accounts", "accounts"))
        differ(client.clientToken(listOf("accounts")), a, "invalidated: a new token")
        same(client.clientToken(listOf("balances")), b, "the other scope set is untouched")
        assertEquals(3L, ccRequests())
    }

    @Test fun `tokenRejected forgets a rejected token once, not the replacement another worker fetched`() = blocking {
        val tokens = client.clientTokens()
        val first = client.clientToken(listOf("accounts"))
        tokens.tokenRejected(listOf("accounts"), first)
        val second = client.clientToken(listOf("accounts"))
        differ(second, first, "a new one after the first report")
        repeat(5) {
            tokens.tokenRejected(listOf("accounts"), first)
            same(client.clientToken(listOf("accounts")), second, "later reports of the old token keep the new one")
        }
        assertEquals(2L, ccRequests())
        client.revokeClientTokens()
        assertEquals("the forgotten token, still live, is revoked too", 2L, emu.counter("tokens_revoked"))
    }

    @Test fun `an OAuth error answer and a scope with a space are typed errors, and not cached`() = blocking {
        emu.fault("kind" to "body", "status" to 400, "body" to """{"error":"invalid_scope","error_description":"no such scope"}""")
        val err = expectError<FreshTokenException.OAuth> { client.clientToken(listOf("x")) }
        assertEquals("oauth", err.code)
        assertEquals("invalid_scope", err.error)
        assertEquals("no such scope", err.description)
        assertEquals(400, err.status)
        assertEquals("config", expectError<FreshTokenException.Config> { client.clientToken(listOf("two words")) }.code)
        client.clientToken(listOf("x"))
    }

    @Test fun `a request whose coroutine was cancelled is finished and cached`() = blocking {
        // A caller that gives up never stops the shared request (DESIGN point 15).
        // Before, it paused with its coroutine: the next caller, an hour later,
        // resumed it and got Timeout with nothing sent.
        val issued = LinkedBlockingQueue<String>()
        val listener = object : EventListener {
            override fun onEvent(event: TokenEvent) {
                if (event.kind == EventKind.CLIENT_TOKEN_ISSUED) issued.add(event.scope ?: "")
            }
        }
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret", onEvent = listener),
            HttpUrlConnectionClient(),
            clock,
        )
        emu.hold(grant = "client_credentials")
        val quitter = async(Dispatchers.Default) { client.clientToken(listOf("accounts")) }
        assertEquals(1L, withContext(Dispatchers.IO) { emu.waitHeld(1) })
        quitter.cancelAndJoin()
        assertEquals(1L, emu.releaseHeld())
        val scope = withContext(Dispatchers.IO) { issued.poll(10, TimeUnit.SECONDS) }
        assertEquals("the request went on without its caller", "accounts", scope)
        val cached = client.clientToken(listOf("accounts"))
        assertEquals("its token was cached", 1L, ccRequests())

        clock.advance(3_600_000) // stale an hour later: a new token, no Timeout
        differ(client.clientToken(listOf("accounts")), cached, "a new token")
        assertEquals(2L, ccRequests())
        client.close()
    }
}
