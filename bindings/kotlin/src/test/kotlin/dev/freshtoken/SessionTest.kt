package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.callersThatJoin
import dev.freshtoken.support.differ
import dev.freshtoken.support.same
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
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
 * UserSession through the Kotlin API against the token emulator: the rotated
 * record is saved before the token is handed out, single flight across
 * coroutines, the cached path, tokens()/status(), seed(). Mirrors
 * bindings/js/test/session.emulator.test.mjs. Time is a fake Clock.
 */
class SessionTest {
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

    private fun newClient(leewaySeconds: Long? = null) = TokenClient.withClock(
        TokenClientOptions(
            tokenEndpoint = emu.tokenEndpoint,
            clientId = "test-client",
            clientSecret = "test-secret",
            leewaySeconds = leewaySeconds,
        ),
        HttpUrlConnectionClient(),
        clock,
    )

    /** A session seeded with a new emulator family and no access token: its first use refreshes. */
    private suspend fun seeded(key: String = "u1"): Pair<UserSession, String> {
        val family = emu.seed()
        val rt = family["refresh_token"] as String
        val session = client.session(key, store)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    @Test fun `the rotated record is saved before the token is returned`() = blocking {
        val (session, oldRt) = seeded()
        val gate = store.gateSaves()

        val pending = async(Dispatchers.Default) { session.accessToken() }
        val saving = dev.freshtoken.support.Json.obj(gate.entered.await())

        // The server has rotated while the save still holds every caller.
        assertEquals(1L, emu.counter("rotations"))
        assertEquals("consumed", emu.refreshTokenState(oldRt))
        assertFalse("token() must not return while save() is pending", pending.isCompleted)
        assertNull("the cached path serves nothing while the save is pending", session.cachedAccessToken())
        same(store.record("u1")!!["refresh_token"], oldRt, "nothing written yet")
        assertFalse("still pending after the checks", pending.isCompleted)

        gate.release.complete(Unit)
        val token = pending.await()
        val stored = store.record("u1")!!
        differ(stored["refresh_token"], oldRt, "the stored refresh token is the rotated one")
        same(stored["refresh_token"], saving["refresh_token"], "the record saved is the record stored")
        same(stored["access_token"], token, "the stored access token is the one handed out")
        assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
    }

    @Test fun `200 concurrent coroutines at expiry cause exactly one refresh and get the same token`() = blocking {
        val (session, _) = seeded()
        // The refresh is held at the emulator until all 200 have joined it.
        emu.hold()
        val tokens = callersThatJoin(emu, 200) { session.accessToken() }

        assertEquals(1L, emu.refreshRequests())
        assertEquals(1L, emu.counter("max_concurrent_token_requests"))
        assertEquals(0L, emu.counter("reuse_detected"))
        assertEquals(200, tokens.size)
        assertEquals("every caller got the same token", 1, tokens.toSet().size)
        same(store.record("u1")!!["access_token"], tokens[0], "the stored token is the one handed out")
    }

    @Test fun `200 concurrent handles (client session per call) share one refresh`() = blocking {
        seeded()
        emu.hold()
        val tokens = callersThatJoin(emu, 200) { client.session("u1", store).use { it.accessToken() } }
        assertEquals(1L, emu.refreshRequests())
        assertEquals(1, tokens.toSet().size)
        assertEquals(1L, client.sessionCount())
    }

    @Test fun `the cached path needs no store call, no request and no coroutine until the leeway`() = blocking {
        val (session, _) = seeded()
        val first = session.accessToken()
        assertEquals(1L, emu.refreshRequests())
        val loads = store.loads.get()
        val saves = store.saves.get()

        clock.advance(839_000) // 900 s token, 60 s leeway
        repeat(1000) { same(session.cachedAccessToken(), first, "the cached token") }
        same(session.accessToken(), first, "token() takes the cached path")
        assertEquals(loads, store.loads.get())
        assertEquals(saves, store.saves.get())
        assertEquals(1L, emu.refreshRequests())

        clock.advance(1_000)
        assertNull("stale at the leeway", session.cachedAccessToken())
        val second = session.accessToken()
        differ(second, first, "a new token at the leeway")
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `tokens() and status() report expiry from the send time`() = blocking {
        val session = client.session("u1", store)
        val empty = session.status()
        assertFalse(empty.hasRecord)
        val (_, _) = seeded()
        val sentAt = clock.now()
        val info = session.tokens()
        assertEquals(sentAt + 900_000, info.expiresAtMs)
        assertEquals(sentAt + 365L * 24 * 3600 * 1000, info.refreshExpiresAtMs)
        assertEquals("openid offline_access accounts", info.scope)
        assertEquals(3, info.idToken!!.split('.').size)
        val status = session.status()
        assertTrue(status.hasRecord)
        assertEquals(info.expiresAtMs, status.accessExpiresAtMs)
        assertFalse(status.unpersisted)
        assertFalse(status.inDoubt)
        assertNull(status.reauthorizationReason)
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a seeded access token is used without a request, and a bad seed is a Config error`() = blocking {
        val family = emu.seed()
        val session = client.session("u1", store)
        session.seed(SeedOptions(
            refreshToken = family["refresh_token"] as String,
            accessToken = family["access_token"] as String,
            expiresIn = 900,
        ))
        same(session.accessToken(), family["access_token"], "the seeded access token is used")
        assertEquals(0L, emu.refreshRequests())
        val err = dev.freshtoken.support.expectError<FreshTokenException.Config> {
            session.seed(SeedOptions(refreshToken = ""))
        }
        assertEquals("config", err.code)
        assertEquals("refresh_token", err.field)
        val negative = dev.freshtoken.support.expectError<FreshTokenException.Config> {
            session.seed(SeedOptions(refreshToken = "x", expiresIn = -1))
        }
        assertEquals("expires_in", negative.field)
        same(session.accessToken(), family["access_token"], "a rejected seed changed nothing")
    }

    @Test fun `another process's rotation is picked up from the store without a request`() = blocking {
        val (a, _) = seeded()
        val other = newClient()
        val b = other.session("u1", store)
        assertTrue(b.status().hasRecord)
        val token = a.accessToken()
        same(b.accessToken(), token, "B re-read the store before refreshing")
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `ten concurrent forced refresh() calls share one request`() = blocking {
        val (session, _) = seeded()
        val first = session.accessToken()
        emu.hold()
        val infos = callersThatJoin(emu, 10) { session.refresh() }
        assertEquals(2L, emu.refreshRequests())
        assertEquals(1, infos.map { it.accessToken }.toSet().size)
        differ(infos[0].accessToken, first, "the forced refresh brought a new token")
    }

    @Test fun `tokenRejected() refreshes once, and a stale rejection gets the new token without a request`() = blocking {
        val (session, _) = seeded()
        val first = session.accessToken()
        val renewed = session.tokenRejected(first)
        differ(renewed.accessToken, first, "a new token after the rejection")
        assertEquals(2L, emu.refreshRequests())
        val again = session.tokenRejected(first)
        same(again.accessToken, renewed.accessToken, "another caller's late rejection of the old token")
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `a cancelled caller does not cancel the shared refresh for the others`() = blocking {
        val (session, oldRt) = seeded()
        val gate = store.gateSaves()
        val leader = async(Dispatchers.Default) { session.accessToken() }
        gate.entered.await()
        val follower = async(Dispatchers.Default) { session.accessToken() }
        leader.cancel()
        gate.release.complete(Unit)
        val token = follower.await()
        assertNotNull(token)
        assertEquals(1L, emu.refreshRequests())
        same(store.record("u1")!!["access_token"], token, "the stored token is the one handed out")
        assertEquals("consumed", emu.refreshTokenState(oldRt))
        assertEquals(0L, emu.counter("reuse_detected"))
    }
}
