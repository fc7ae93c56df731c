package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.approvedCode
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * The mirror against calls that replace a key's token. A read made while
 * seed() or exchangeCode() on the same key is in flight gets the core's
 * token of that moment (the core still serves it; a token given to
 * tokenRejected() it no longer serves) and used to mirror it; when the call then left no fresh token to refill (the
 * session died, a seed without an access token) or brought one later, the
 * mirror kept serving the superseded token: a rejected one, a dead
 * session's, or the previous account's after a re-link. Once such a call
 * has ended, no read returns the old token. The same holds when the caller
 * gave up (a cancelled coroutine): it drops the mirror when it leaves, but
 * its exchange or refresh runs on in the core and replaces the token later.
 *
 * Against the emulator; the calls are held in flight by its `hold` fault
 * (a seed waits for a held refresh): no sleeps.
 */
class MirrorRacesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private const val REDIRECT = "https://app.example/callback"
    }

    private val clock = FakeClock()
    private val store = TestStore()
    private lateinit var client: TokenClient

    @Before fun setUp() {
        emu.reset()
        client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
    }

    /** `u1` seeded with the access token `at` (900 s) and read until it is mirrored. */
    private suspend fun mirrored(at: String): UserSession {
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = rt, accessToken = at, expiresIn = 900))
        same(session.accessToken(), at, "seeded")
        val before = client.nativeUses.get()
        same(session.accessToken(), at, "served again")
        assertEquals("from the mirror", before, client.nativeUses.get())
        return session
    }

    /**
     * tokenRejected(), seed() and revoke() drop the mirror, then cross into
     * the core; a read in that window gets the core's token of that moment,
     * which the call is about to stop serving (the rejected token, the
     * account a seed replaces, a revoked session's), and used to mirror it.
     * The window is held open here by beginning the calls' drops without
     * making the calls.
     */
    @Test fun `a read before the core has a replacing call mirrors nothing`() = blocking {
        val session = mirrored("at-1")
        client.mirror.begin("u1")
        client.mirror.begin("u1") // a second call, on another thread
        same(session.accessToken(), "at-1", "the core still serves it")
        assertEquals("mirrored during the calls", null, client.mirror.get("u1"))
        client.mirror.end("u1")
        same(session.accessToken(), "at-1", "still the core's")
        assertEquals("mirrored while the second call runs", null, client.mirror.get("u1"))
        client.mirror.end("u1")
        same(session.accessToken(), "at-1", "the core's token")
        assertEquals("mirrored again once no call runs", "at-1", client.mirror.get("u1"))
    }

    @Test fun `a failed tokenRejected that kills the session leaves the rejected token unserved`() = blocking {
        val session = mirrored("at-rejected")
        emu.hold()
        emu.fault("kind" to "body", "status" to 400, "body" to "{\"error\":\"invalid_grant\"}")
        val rejecting = async(start = CoroutineStart.UNDISPATCHED) { runCatching { session.tokenRejected("at-rejected") } }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        // The rejected token is not served during the call: a read joins it.
        assertEquals("the core no longer serves it", null, session.cachedAccessToken())
        val reading = async(start = CoroutineStart.UNDISPATCHED) { runCatching { session.accessToken() } }
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        val failure = rejecting.await().exceptionOrNull()
        assertTrue("tokenRejected: $failure", failure is FreshTokenException.ReauthorizationRequired)
        val read = reading.await().exceptionOrNull()
        assertTrue("the read during the call: $read", read is FreshTokenException.ReauthorizationRequired)

        expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        expectError<FreshTokenException.ReauthorizationRequired> { client.session("u1", store).accessTokenBlocking() }
        assertEquals("the core agrees", null, session.cachedAccessToken())
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a seed of another refresh token while a read mirrors the old token leaves it unserved`() = blocking {
        val session = mirrored("at-account-a")
        val other = emu.seed()["refresh_token"] as String
        emu.hold()
        val refreshing = async(start = CoroutineStart.UNDISPATCHED) { session.refresh() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        // The seed waits for the refresh in flight, then installs a record
        // with no access token.
        val seeding = async(start = CoroutineStart.UNDISPATCHED) { session.seed(SeedOptions(refreshToken = other)) }
        same(session.accessToken(), "at-account-a", "during the seed the core still serves the old token")
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        refreshing.await()
        seeding.await()

        val after = session.accessToken()
        differ(after, "at-account-a", "after seed(): a token of the seeded refresh token")
        assertEquals("the seeded refresh token was spent", 2L, emu.refreshRequests())
        same(client.session("u1", store).accessToken(), after, "and that one is mirrored")
    }

    @Test fun `exchangeCode on the key while a read mirrors the old token serves only the new one`() = blocking {
        val session = mirrored("at-account-a")
        val request = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, scopes = listOf("openid")))
        val code = withContext(Dispatchers.IO) { approvedCode(request.url) }
        emu.hold(grant = "authorization_code")
        val exchanging = async(start = CoroutineStart.UNDISPATCHED) {
            client.exchangeCode(ExchangeCodeOptions(code, request.codeVerifier, REDIRECT), "u1", store)
        }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        same(session.accessToken(), "at-account-a", "during the exchange the core still serves the old token")
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        val relinked = exchanging.await()

        val fresh = store.record("u1")?.get("access_token")
        differ(fresh, "at-account-a", "the exchange brought a new token")
        repeat(3) {
            same(session.accessToken(), fresh, "the old handle, read ${it + 1}")
            same(relinked.accessToken(), fresh, "the new handle, read ${it + 1}")
        }
    }

    @Test fun `an exchangeCode whose caller was cancelled leaves the previous account's token unserved once the exchange ends`() = blocking {
        val session = mirrored("at-account-a")
        val request = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, scopes = listOf("openid")))
        val code = withContext(Dispatchers.IO) { approvedCode(request.url) }
        val options = ExchangeCodeOptions(code, request.codeVerifier, REDIRECT)
        emu.hold(grant = "authorization_code")
        val quitter = launch(Dispatchers.Default) { client.exchangeCode(options, "u1", store) }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        // The caller gives up once the code was sent, and drops the mirror
        // as it leaves; the exchange runs on in the core.
        quitter.cancelAndJoin()
        same(session.accessToken(), "at-account-a", "while the exchange runs on the core still serves the old token")
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        // Waits for the exchange's end without touching this client's mirror
        // (its own exchangeCode drops it, which would hide a stale copy): a
        // repeat of the callback from another client of the process joins
        // the exchange in the core and returns when it has ended.
        TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        ).use { other -> other.exchangeCode(options, "u1", store) }
        assertEquals("the code was sent once", 1L, emu.grantRequests("authorization_code"))

        val fresh = store.record("u1")?.get("access_token")
        differ(fresh, "at-account-a", "the exchange brought the new account's token")
        repeat(3) { same(session.accessToken(), fresh, "the old handle after the exchange, read ${it + 1}") }
        same(client.session("u1", store).accessToken(), fresh, "a new handle after the exchange")
        same(client.cachedTokenFromCore("u1", store), fresh, "the core holds the same token")
    }

    @Test fun `a refresh whose caller was cancelled leaves the old token unserved once the refresh ends`() = blocking {
        val refreshed = LinkedBlockingQueue<EventKind>()
        client = TokenClient.withClock(
            TokenClientOptions(
                tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret",
                onEvent = EventListener { if (it.kind == EventKind.REFRESHED) refreshed.add(it.kind) },
            ),
            HttpUrlConnectionClient(),
            clock,
        )
        val session = mirrored("at-before-refresh")
        emu.hold()
        val quitter = launch(Dispatchers.Default) { session.refresh() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        quitter.cancelAndJoin()
        same(session.accessToken(), "at-before-refresh", "while the refresh runs on the core still serves the old token")
        same(session.cachedAccessToken(), "at-before-refresh", "cachedAccessToken() reads it too, unmirrored")
        withContext(Dispatchers.IO) { emu.releaseHeld() }
        // The refresh has installed and saved its token when it says so
        // (any call on the session would drop the mirror, hiding a stale copy).
        assertEquals(EventKind.REFRESHED, withContext(Dispatchers.IO) { refreshed.poll(30, TimeUnit.SECONDS) })
        assertEquals(1L, emu.refreshRequests())

        val fresh = store.record("u1")?.get("access_token")
        differ(fresh, "at-before-refresh", "the refresh brought a new token")
        repeat(3) { same(session.accessToken(), fresh, "after the refresh, read ${it + 1}") }
        same(client.session("u1", store).accessToken(), fresh, "a new handle after the refresh")
    }

}
