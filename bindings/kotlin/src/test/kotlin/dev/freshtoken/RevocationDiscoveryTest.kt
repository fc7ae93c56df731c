package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.withContext
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Revocation (RFC 7009: `session.revoke()`, `client.revokeClientTokens()`)
 * and discovery (`TokenClient.discover`) through the Kotlin API against the
 * emulator's revocation endpoint and its breakable discovery document.
 * Mirrors tests/revocation.rs and tests/discovery.rs. Time is a fake Clock.
 */
class RevocationDiscoveryTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    private val clock = FakeClock()
    private val store = TestStore()
    private lateinit var client: TokenClient

    @Before fun setUp() {
        emu.reset()
        client = newClient()
    }

    private fun options(retry: RetryOptions? = null, revocationEndpoint: String? = null) = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint,
        clientId = "test-client",
        clientSecret = "test-secret",
        retry = retry,
        revocationEndpoint = revocationEndpoint,
    )

    private fun newClient(retry: RetryOptions? = null, revocationEndpoint: String? = null) =
        TokenClient.withClock(options(retry, revocationEndpoint), HttpUrlConnectionClient(), clock)

    /** A session seeded with a new emulator family and no access token. */
    private suspend fun seeded(key: String = "u1", c: TokenClient = client): Pair<UserSession, String> {
        val rt = emu.seed()["refresh_token"] as String
        val session = c.session(key, store)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    /** Asserts that [session] fails with reason `revoked` and sends no token request doing so. */
    private suspend fun assertRevoked(session: UserSession) {
        val before = emu.counter("token_requests")
        val err = expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        assertEquals(ReauthorizationReason.REVOKED, err.reason)
        assertEquals("revoked", err.reasonCode)
        assertEquals("reauthorization_required", err.code)
        assertEquals(ReauthorizationReason.REVOKED, session.status().reauthorizationReason)
        assertEquals("nothing sent", before, emu.counter("token_requests"))
    }

    private fun discoveryOptions() = TokenClientOptions(clientId = "test-client", clientSecret = "test-secret")

    // ---- session.revoke() ------------------------------------------------

    @Test fun `revoke revokes the refresh and access tokens, kills the session and empties the mirror`() = blocking {
        val (session, _) = seeded()
        val token = session.accessToken()
        val liveRt = store.record("u1")!!["refresh_token"] as String
        val uses = client.nativeUses.get()
        same(session.accessToken(), token, "mirrored before the revocation")
        assertEquals("served by the mirror", uses, client.nativeUses.get())

        session.revoke()

        assertEquals("refresh token, then access token", 2L, emu.counter("revocation_requests"))
        assertEquals(1L, emu.revocationsByHint("refresh_token"))
        assertEquals(1L, emu.revocationsByHint("access_token"))
        assertEquals("revoked", emu.refreshTokenState(liveRt))
        val stored = store.record("u1")!!
        assertEquals("revoked", stored["reauth"])
        assertNull("no refresh token kept", stored["refresh_token"])
        assertNull("no access token kept", stored["access_token"])

        assertRevoked(session)
        assertRevoked(client.session("u1", store))
        assertNull("nothing cached", session.cachedAccessToken())
        assertEquals(1L, emu.refreshRequests())
        // Nothing is left to send the second time.
        session.revoke()
        assertEquals(2L, emu.counter("revocation_requests"))
    }

    @Test fun `another client on the same store sees the revocation`() = blocking {
        val (session, _) = seeded()
        session.revoke()
        val other = newClient()
        assertRevoked(other.session("u1", store))
        other.close()
    }

    @Test fun `revoke waits for a refresh held in flight and revokes the rotated token`() = blocking {
        val (session, seededRt) = seeded()
        store.saved.clear()
        emu.hold()
        val refreshing = async(start = CoroutineStart.UNDISPATCHED) { session.accessToken() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        val revoking = async(start = CoroutineStart.UNDISPATCHED) { session.revoke() }
        assertEquals("held back behind the refresh", 0L, emu.counter("revocation_requests"))
        assertFalse(revoking.isCompleted)

        withContext(Dispatchers.IO) { emu.releaseHeld() }
        val token = refreshing.await()
        revoking.await()

        assertNotNull("the refresh completed", token)
        // Saved in order: the rotation, the dead record, the record emptied.
        val records = store.saved.map { Json.obj(it) }.filter { it["in_doubt"] != true }
        assertEquals(3, records.size)
        val rotated = records[0]["refresh_token"] as String
        differ(rotated, seededRt, "the refresh rotated the seeded token")
        same(records[0]["access_token"], token, "the refresh's token was saved")
        assertEquals("revoked", records[1]["reauth"])
        assertNull(records[2]["refresh_token"])
        assertEquals("revoked", emu.refreshTokenState(rotated))
        assertEquals("consumed", emu.refreshTokenState(seededRt))
        assertEquals(1L, emu.revocationsByHint("refresh_token"))
        assertEquals("the rotated access token too", 1L, emu.revocationsByHint("access_token"))
        assertRevoked(session)
    }

    @Test fun `the mirror serves nothing while revoke runs, and a token read meanwhile is not mirrored`() = blocking {
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = rt, accessToken = "at-seeded", expiresIn = 900))
        same(client.mirror.get("u1"), "at-seeded", "mirrored")
        emu.hold(grant = "revocation")
        val revoking = async(start = CoroutineStart.UNDISPATCHED) { session.revoke() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        assertNull("dropped before the core call", client.mirror.get("u1"))
        // A reader now waits for the revocation (the session's one flight)
        // instead of getting the mirrored token, and then learns it is dead.
        val during = async(start = CoroutineStart.UNDISPATCHED) { runCatching { session.accessToken() } }
        assertFalse("not served from the mirror", during.isCompleted)
        // A reader that got the token after revoke's first drop, before the
        // core marked the record dead (the race, played directly): it is
        // not mirrored while revoke runs.
        client.mirror.fill("u1", client.mirror.epoch("u1"), "at-raced", clock.now() + 600_000)
        assertNull("the raced token is not mirrored", client.mirror.get("u1"))
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        revoking.await()
        val dead = during.await().exceptionOrNull() as FreshTokenException.ReauthorizationRequired
        assertEquals(ReauthorizationReason.REVOKED, dead.reason)
        assertNull("dropped again after revoke", client.mirror.get("u1"))
        assertRevoked(session)
    }

    @Test fun `a 503 from the revocation endpoint is retried`() = blocking {
        val (session, rt) = seeded()
        emu.fault("kind" to "status", "status" to 503, "grant" to "revocation")
        session.revoke()
        assertEquals(2L, emu.counter("revocation_requests"))
        assertEquals("one backoff", 1, clock.sleeps.size)
        assertEquals("revoked", emu.refreshTokenState(rt))
        assertRevoked(session)
    }

    @Test fun `a revocation that fails for good leaves the session dead and says the server may still hold the token`() = blocking {
        val c = newClient(retry = RetryOptions(maxAttempts = 2))
        val (session, rt) = seeded(c = c)
        emu.fault("kind" to "status", "status" to 503, "count" to 2, "grant" to "revocation")

        val err = expectError<FreshTokenException.Transient> { session.revoke() }
        assertEquals("transient", err.code)
        assertEquals(503, err.status)
        assertTrue(err.message, err.message!!.contains("may still hold"))
        assertTrue("typed, as JavaScript's serverMayHoldToken", err.serverMayHoldToken)
        assertFalse("no token in the message", err.message!!.contains(rt))
        assertEquals(2L, emu.counter("revocation_requests"))
        assertEquals("active", emu.refreshTokenState(rt))
        // Dead locally, the token kept so that revoke() can be retried.
        val stored = store.record("u1")!!
        assertEquals("revoked", stored["reauth"])
        same(stored["refresh_token"], rt, "kept for the retry")
        assertRevoked(session)
        assertTrue("the server may hold the token", session.status().revocationPending)

        session.revoke()
        assertEquals("revoked", emu.refreshTokenState(rt))
        assertNull(store.record("u1")!!["refresh_token"])
        assertRevoked(session)
        assertFalse(session.status().revocationPending)
        c.close()
    }

    @Test fun `the revocationEndpoint option is where revocation goes`() = blocking {
        val closed = "http://127.0.0.1:${Emulator.closedPort()}/connect/revocation"
        val c = newClient(retry = RetryOptions(maxAttempts = 1), revocationEndpoint = closed)
        val (session, rt) = seeded(c = c)
        val err = expectError<FreshTokenException.Network> { session.revoke() }
        assertTrue(err.message, err.message!!.contains("may still hold"))
        assertTrue(err.serverMayHoldToken)
        // Any other failure does not say so: a later call's fast revoked verdict.
        assertFalse(expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }.serverMayHoldToken)
        assertEquals("nothing reached the emulator", 0L, emu.counter("revocation_requests"))
        assertEquals("active", emu.refreshTokenState(rt))
        assertRevoked(session)
        c.close()
    }

    @Test fun `revokeClientTokens revokes each cached client token and forgets it`() = blocking {
        val a = client.clientToken(listOf("accounts"))
        client.clientToken(listOf("balances"))
        client.revokeClientTokens()
        assertEquals(2L, emu.counter("revocation_requests"))
        assertEquals(2L, emu.revocationsByHint("access_token"))
        val b = client.clientToken(listOf("accounts"))
        differ(a, b, "a new token after the revocation")
        assertEquals(3L, emu.grantRequests("client_credentials"))
        client.revokeClientTokensBlocking()
        client.revokeClientTokensAsync().get()
        assertEquals("the new token, revoked once", 3L, emu.counter("revocation_requests"))
    }

    @Test fun `revokeBlocking and revokeAsync revoke too`() = blocking {
        val (first, rt1) = seeded("u1")
        first.revokeBlocking()
        assertEquals("revoked", emu.refreshTokenState(rt1))
        val (second, rt2) = seeded("u2")
        second.revokeAsync().get()
        assertEquals("revoked", emu.refreshTokenState(rt2))
        assertRevoked(first)
        assertRevoked(second)
    }

    @Test fun `seed brings a revoked session back`() = blocking {
        val (session, _) = seeded()
        session.revoke()
        val rt = emu.seed()["refresh_token"] as String
        session.seed(SeedOptions(refreshToken = rt))
        assertNotNull(session.accessToken())
        assertNull(session.status().reauthorizationReason)
    }

    // ---- discovery ------------------------------------------------------

    @Test fun `a discovered client uses the published endpoints`() = blocking {
        val discovered = TokenClient.discover(emu.issuer, discoveryOptions(), HttpUrlConnectionClient(), clock)
        assertEquals(1L, emu.counter("discovery_requests"))
        val metadata = discovered.providerMetadata!!
        assertEquals(emu.issuer, metadata.issuer)
        assertEquals(emu.tokenEndpoint, metadata.tokenEndpoint)
        assertEquals(emu.authorizationEndpoint, metadata.authorizationEndpoint)
        assertEquals(emu.revocationEndpoint, metadata.revocationEndpoint)
        assertTrue(metadata.tokenEndpointAuthMethods.toString(), "client_secret_post" in metadata.tokenEndpointAuthMethods)
        assertTrue("client_secret_post" in metadata.revocationEndpointAuthMethods)
        assertTrue("RFC 9207, as published", metadata.authorizationResponseIssParameterSupported)
        assertNull("a client from options has none", client.providerMetadata)
        val url = discovered.authorizationUrl(AuthorizationUrlOptions(redirectUri = "https://app.example/cb")).url
        assertTrue("the published authorize endpoint", url.startsWith(emu.authorizationEndpoint + "?"))

        // End to end: a refresh and a revocation at the published endpoints.
        val (session, seededRt) = seeded(c = discovered)
        assertNotNull(session.accessToken())
        assertEquals(1L, emu.refreshRequests())
        val rt = store.record("u1")!!["refresh_token"] as String
        differ(rt, seededRt, "rotated at the published token endpoint")
        session.revoke()
        assertEquals(2L, emu.counter("revocation_requests"))
        assertEquals("revoked", emu.refreshTokenState(rt))
        assertEquals("read once", 1L, emu.counter("discovery_requests"))
        discovered.close()
    }

    @Test fun `discoverBlocking and discoverAsync on the system clock`() {
        TokenClient.discoverBlocking(emu.issuer, discoveryOptions()).use {
            assertEquals(emu.tokenEndpoint, it.providerMetadata!!.tokenEndpoint)
        }
        TokenClient.discoverAsync(emu.issuer, discoveryOptions()).get().use {
            assertEquals(emu.revocationEndpoint, it.providerMetadata!!.revocationEndpoint)
        }
        assertEquals(2L, emu.counter("discovery_requests"))
    }

    @Test fun `missing or bad discovery documents are InvalidResponse errors`() = blocking {
        for ((mode, says) in listOf(
            "not_found" to "404",
            "wrong_issuer" to "issuer",
            "insecure_token_endpoint" to "https",
            "invalid_json" to "JSON",
        )) {
            emu.discovery(mode)
            val err = expectError<FreshTokenException.InvalidResponse> {
                TokenClient.discover(emu.issuer, discoveryOptions(), HttpUrlConnectionClient(), clock)
            }
            assertEquals("invalid_response", err.code)
            assertTrue("$mode: ${err.message}", err.message!!.contains("discovery: "))
            assertTrue("$mode: ${err.message}", err.message!!.contains(says))
        }
        assertEquals(4L, emu.counter("discovery_requests"))
        emu.discovery("normal")
        assertNotNull(TokenClient.discover(emu.issuer, discoveryOptions(), HttpUrlConnectionClient(), clock).providerMetadata)
    }

    @Test fun `an unreachable issuer is a Network error and a plain-http remote issuer a Config error`() = blocking {
        val closed = "http://127.0.0.1:${Emulator.closedPort()}"
        expectError<FreshTokenException.Network> {
            TokenClient.discover(closed, discoveryOptions(), HttpUrlConnectionClient(), clock)
        }
        val err = expectError<FreshTokenException.Config> {
            TokenClient.discover("http://issuer.example", discoveryOptions(), HttpUrlConnectionClient(), clock)
        }
        assertEquals("config", err.code)
        assertEquals(0L, emu.counter("discovery_requests"))
    }
}
