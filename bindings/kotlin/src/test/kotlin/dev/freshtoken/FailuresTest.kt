package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.callersThatJoin
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * UserSession when things go wrong, against the emulator, through the
 * default HttpUrlConnectionClient: failing stores, refresh tokens the server
 * will not take, lost answers, retries. Mirrors
 * bindings/js/test/failures.emulator.test.mjs.
 */
class FailuresTest {
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

    private fun newClient(secret: String = "test-secret") = TokenClient.withClock(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = secret),
        HttpUrlConnectionClient(),
        clock,
    )

    private suspend fun seeded(key: String = "u1"): Pair<UserSession, String> {
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session(key, store)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    @Test fun `saveUnsaved saves a rotation the store refused before close, with no handle left`() = blocking {
        val (session, oldRt) = seeded()
        val (_, otherRt) = seeded("u2")
        store.failSaves = 2 // the rotated record's save, and saveUnsaved()'s first try
        store.failOnly = { it["refresh_token"] != oldRt && it["refresh_token"] != otherRt }
        expectError<FreshTokenException.Storage> { session.accessToken() }

        val err = expectError<FreshTokenException.Storage> { client.saveUnsaved() }
        assertTrue(err.detail, err.detail.contains("1 session record(s) held only in this process could not be saved; the last: host callback failed"))
        assertFalse("no token in the message", err.detail.contains(oldRt))
        same(store.record("u1")!!["refresh_token"], oldRt, "still refused: the record is kept in memory")

        client.saveUnsavedBlocking()
        val saved = store.record("u1")!!["refresh_token"] as String
        differ(saved, oldRt, "the rotated refresh token is stored")
        assertEquals("active", emu.refreshTokenState(saved))
        same(store.record("u2")!!["refresh_token"], otherRt, "the other session is untouched")
        client.close()

        // A new client (a restart) serves the saved rotation without a refresh.
        newClient().use { it.session("u1", store).accessToken() }
        assertEquals("no refresh token was sent twice", 1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `a failed save is Storage, loses nothing, and is retried before anything else`() = blocking {
        val (session, oldRt) = seeded()
        store.failSaves = 2 // the rotated record's save, and status()'s retry of it
        store.failOnly = { it["refresh_token"] != oldRt } // the rotated record, not the in-doubt marker

        val err = expectError<FreshTokenException.Storage> { session.accessToken() }
        assertEquals("storage", err.code)
        assertTrue("the host's reason is kept: ${err.detail}", err.detail.contains("disk full"))
        assertEquals(1L, emu.refreshRequests())
        assertEquals(1L, emu.counter("rotations"))
        same(store.record("u1")!!["refresh_token"], oldRt, "the store still holds the old record")
        assertTrue(session.status().unpersisted)
        assertNull("nothing is served from an unsaved record", session.cachedAccessToken())

        val token = session.accessToken()
        assertEquals("the consumed refresh token is not sent again", 1L, emu.refreshRequests())
        val stored = store.record("u1")!!
        same(stored["access_token"], token, "the kept record was saved")
        differ(stored["refresh_token"], oldRt, "the kept record holds the rotated refresh token")
        assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
        assertEquals("consumed", emu.refreshTokenState(oldRt))
        assertEquals(0L, emu.counter("reuse_detected"))
        assertFalse(session.status().unpersisted)
    }

    @Test fun `a store that keeps failing keeps failing with Storage and never resends`() = blocking {
        val (session, rt) = seeded()
        // The rotated record's saves fail (the in-doubt marker written before sending works).
        store.failSaves = Int.MAX_VALUE
        store.failOnly = { it["refresh_token"] != rt }
        repeat(3) { expectError<FreshTokenException.Storage> { session.accessToken() } }
        expectError<FreshTokenException.Storage> { session.refresh() }
        expectError<FreshTokenException.Storage> { session.tokens() }
        assertEquals(1L, emu.refreshRequests())
        store.failSaves = 0
        val token = session.accessToken()
        same(store.record("u1")!!["access_token"], token, "saved once the store heals")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a store that cannot write the in-doubt marker sends nothing and the refresh token stays unused`() = blocking {
        val (session, rt) = seeded()
        val savesBefore = store.saves.get()
        store.failSaves = Int.MAX_VALUE
        expectError<FreshTokenException.Storage> { session.accessToken() }
        expectError<FreshTokenException.Storage> { session.refresh() }
        expectError<FreshTokenException.Storage> { session.tokens() }
        assertEquals("nothing sent", 0L, emu.refreshRequests())
        assertEquals("active", emu.refreshTokenState(rt))
        assertEquals("one attempted marker save per call", 3, store.saves.get() - savesBefore)

        store.failSaves = 0
        val token = session.accessToken()
        assertEquals(1L, emu.refreshRequests())
        val stored = store.record("u1")!!
        same(stored["access_token"], token, "the rotated record was saved")
        assertNull("not in doubt once the answer is saved", stored["in_doubt"])
        assertEquals("consumed", emu.refreshTokenState(rt))
        assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
    }

    @Test fun `a failed load is Storage and sends nothing`() = blocking {
        seeded()
        val session = newClient().session("u1", store) // another process: never read the store
        store.failLoads = 1
        val err = expectError<FreshTokenException.Storage> { session.accessToken() }
        assertTrue(err.detail.contains("database unavailable"))
        assertEquals(0L, emu.refreshRequests())
        session.accessToken()
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `invalid_grant is ReauthorizationRequired(INVALID_GRANT) and is remembered`() = blocking {
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = "rt-that-the-server-never-issued"))

        val err = expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        assertEquals("reauthorization_required", err.code)
        assertEquals(ReauthorizationReason.INVALID_GRANT, err.reason)
        assertEquals("invalid_grant", err.reason.code)
        assertEquals(1L, emu.refreshRequests())

        assertEquals(ReauthorizationReason.INVALID_GRANT,
            expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }.reason)
        assertEquals(ReauthorizationReason.INVALID_GRANT,
            expectError<FreshTokenException.ReauthorizationRequired> { session.refresh() }.reason)
        assertEquals("invalid_grant", store.record("u1")!!["reauth"])
        val elsewhere = newClient().session("u1", store)
        assertEquals(ReauthorizationReason.INVALID_GRANT,
            expectError<FreshTokenException.ReauthorizationRequired> { elsewhere.accessToken() }.reason)
        assertEquals(ReauthorizationReason.INVALID_GRANT, elsewhere.status().reauthorizationReason)
        assertEquals("a dead refresh token is never sent again", 1L, emu.refreshRequests())

        // Only a new seed revives the session.
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        session.accessToken()
        assertEquals(2L, emu.refreshRequests())
        assertNull(session.status().reauthorizationReason)
    }

    @Test fun `callers that joined a refresh that fails all get its failure, and the next call starts a new one`() = blocking {
        // Issue 11, item 10: once a late joiner got a token from a second
        // refresh that started after the first had failed. The request is
        // held until all 20 have joined, then answered with an error.
        val (session, rt) = seeded()
        emu.hold()
        emu.fault(
            "kind" to "body", "status" to 400, "grant" to "refresh_token",
            "body" to """{"error":"invalid_request","error_description":"refused once"}""",
        )
        val codes = callersThatJoin(emu, 20) {
            runCatching { session.accessToken() }.exceptionOrNull()?.let { (it as? FreshTokenException)?.code ?: it.javaClass.name }
        }
        assertEquals("every caller got the one failure", List(20) { "oauth" }, codes)
        assertEquals(1L, emu.refreshRequests())
        assertEquals("active", emu.refreshTokenState(rt))

        val token = session.accessToken()
        same(store.record("u1")!!["access_token"], token, "the next call refreshed and saved")
        assertEquals(2L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `no record is NO_REFRESH_TOKEN with no request`() = blocking {
        val err = expectError<FreshTokenException.ReauthorizationRequired> { client.session("nobody", store).accessToken() }
        assertEquals(ReauthorizationReason.NO_REFRESH_TOKEN, err.reason)
        assertEquals(0L, emu.counter("token_requests"))
    }

    @Test fun `a connection dropped after the server rotated is Network(maybeSent), then LOST_ROTATION`() = blocking {
        val (session, rt) = seeded()
        emu.fault("kind" to "drop_after_commit")
        val err = expectError<FreshTokenException.Network> { session.accessToken() }
        assertEquals("network", err.code)
        assertTrue("the request may have been sent", err.maybeSent)
        assertEquals("consumed", emu.refreshTokenState(rt))
        assertEquals("a possibly-sent request is not retried", 1L, emu.refreshRequests())
        assertTrue(session.status().inDoubt)

        val lost = expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        assertEquals(ReauthorizationReason.LOST_ROTATION, lost.reason)
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `a wrong client secret is InvalidClient(401) and does not kill the session`() = blocking {
        client = newClient(secret = "wrong-secret")
        val (session, rt) = seeded()
        val err = expectError<FreshTokenException.InvalidClient> { session.accessToken() }
        assertEquals("invalid_client", err.code)
        assertEquals(401, err.status)
        assertNull(store.record("u1")!!["reauth"])
        assertEquals("active", emu.refreshTokenState(rt))
    }

    @Test fun `a 503 is retried after a recorded backoff, then succeeds`() = blocking {
        val (session, _) = seeded()
        emu.fault("kind" to "status", "status" to 503)
        session.accessToken()
        assertEquals(2L, emu.refreshRequests())
        assertEquals("one backoff, on the fake clock", 1, clock.sleeps.size)
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `429 with Retry-After is honoured`() = blocking {
        val (session, _) = seeded()
        emu.fault("kind" to "rate_limit", "retry_after" to "3")
        session.accessToken()
        assertEquals(2L, emu.refreshRequests())
        assertTrue("slept at least Retry-After: ${clock.sleeps}", clock.sleeps.single() >= 3000)
    }

    @Test fun `5xx on every attempt is Transient with the status`() = blocking {
        val (session, rt) = seeded()
        emu.fault("kind" to "status", "status" to 503, "count" to 10)
        val err = expectError<FreshTokenException.Transient> { session.accessToken() }
        assertEquals("transient", err.code)
        assertEquals(503, err.status)
        assertEquals(4L, emu.refreshRequests())
        assertEquals(3, clock.sleeps.size)
        emu.clearFaults()
        assertEquals("active", emu.refreshTokenState(rt))
        session.accessToken()
    }

    @Test fun `a malformed answer is InvalidResponse`() = blocking {
        val (session, _) = seeded()
        emu.fault("kind" to "malformed_json")
        val err = expectError<FreshTokenException.InvalidResponse> { session.accessToken() }
        assertEquals("invalid_response", err.code)
    }

    @Test fun `an over-size answer is InvalidResponse (the body is read only past the cap)`() = blocking {
        val (session, _) = seeded()
        emu.fault("kind" to "oversize", "bytes" to 3_000_000)
        val err = expectError<FreshTokenException.InvalidResponse> { session.accessToken() }
        assertEquals("invalid_response", err.code)
    }
}
