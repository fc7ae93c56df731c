package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.blocking
import dev.freshtoken.support.same
import java.util.concurrent.Semaphore
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.withContext
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Two clients of one process and one refresh token: the core sends it once
 * (one refresh per refresh token per process, whatever client holds it).
 * Without that, a client made per request sent the token a second time and
 * the server revoked the grant: the user had to re-link.
 */
class ProcessClaimsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    /** A MemoryTokenStore that says when a load has answered. */
    private class LoadSeen : MemoryTokenStore() {
        val loaded = Semaphore(0)

        override suspend fun load(key: String): String? =
            try { super.load(key) } finally { loaded.release() }
    }

    private fun client() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
    )

    @Before fun setUp() { emu.reset() }

    @Test fun `two clients on one store send the refresh token once`() = blocking {
        val store = LoadSeen()
        val first = client()
        val second = client()
        val rt = emu.seed()["refresh_token"] as String
        first.session("u1", store).seed(SeedOptions(refreshToken = rt))
        emu.hold()
        val a = async(Dispatchers.IO) { first.session("u1", store).accessToken() }
        assertEquals(1L, withContext(Dispatchers.IO) { emu.waitHeld(1) })
        // The second client reads the store while the first one's request is out.
        store.loaded.drainPermits()
        val b = async(Dispatchers.IO) { second.session("u1", store).accessToken() }
        assertTrue(withContext(Dispatchers.IO) { store.loaded.tryAcquire(30, TimeUnit.SECONDS) })
        assertEquals(1L, emu.releaseHeld())
        same(a.await(), b.await(), "both clients got the one new token")
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
        assertEquals("consumed", emu.refreshTokenState(rt))
        first.close()
        second.close()
    }
}
