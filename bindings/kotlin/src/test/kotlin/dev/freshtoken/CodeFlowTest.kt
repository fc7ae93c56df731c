package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.authorizeRedirect
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.net.URLEncoder
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * The code flow through the Kotlin API on a discovered client: the
 * authorize URL, the redirect back read by `codeFromRedirect` (its state and,
 * since the emulator announces it, its RFC 9207 `iss` checked before the code
 * is redeemed), then `exchangeCode`. Mirrors
 * bindings/python/tests/test_code_from_redirect.py and tests/discovery.rs.
 */
class CodeFlowTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private const val REDIRECT = "https://app.example/cb"
    }

    @Before fun setUp() {
        emu.reset()
    }

    private suspend fun discovered(): TokenClient =
        TokenClient.discover(emu.issuer, TokenClientOptions(clientId = "test-client", clientSecret = "test-secret"))

    private fun encoded(value: String) = URLEncoder.encode(value, Charsets.UTF_8)

    @Test fun `the provider's redirect gives its code, a forged one throws InvalidResponse and sends nothing`() = blocking {
        discovered().use { client ->
            val request = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, scopes = listOf("openid", "accounts")))
            val redirect = authorizeRedirect(request.url)
            val iss = "iss=" + encoded(emu.issuer)
            assertTrue("the emulator's redirect carries iss (RFC 9207)", redirect.contains(iss))
            assertTrue("the emulator's redirect carries the state", redirect.contains("state=" + encoded(request.state)))

            val forged = listOf(
                redirect.replace("state=" + encoded(request.state), "state=another-state") to "state",
                redirect.replace(iss, "iss=" + encoded("https://evil.example")) to "RFC 9207",
            )
            for ((url, says) in forged) {
                val err = expectError<FreshTokenException.InvalidResponse> { client.codeFromRedirect(url, request.state) }
                assertEquals("invalid_response", err.code)
                assertTrue("names $says: ${err.message}", err.message!!.contains(says))
                assertFalse("no value shown", err.message!!.contains("another-state") || err.message!!.contains("evil.example"))
            }
            assertEquals("nothing sent", 0L, emu.grantRequests("authorization_code"))

            val code = client.codeFromRedirect(redirect, request.state)
            val store = TestStore()
            val session = client.exchangeCode(ExchangeCodeOptions(code, request.codeVerifier, REDIRECT), "u1", store)
            assertNotNull(store.get("u1"))
            assertTrue("a token", session.accessToken().isNotEmpty())
            assertEquals(1L, emu.grantRequests("authorization_code"))
        }
    }

    @Test fun `an error redirect with the right state is its OAuth error, and arguments are checked`() = blocking {
        discovered().use { client ->
            val denied = "$REDIRECT?error=access_denied&error_description=No+thanks&state=s-1&iss=${encoded(emu.issuer)}"
            val err = expectError<FreshTokenException.OAuth> { client.codeFromRedirect(denied, "s-1") }
            assertEquals("access_denied", err.error)
            assertEquals("oauth", err.code)

            val wrongState = expectError<FreshTokenException.InvalidResponse> { client.codeFromRedirect(denied, "s-2") }
            assertTrue(wrongState.message!!, wrongState.message!!.contains("state"))

            val empty = expectError<FreshTokenException.Config> { client.codeFromRedirect(denied, "") }
            assertEquals("expected_state", empty.field)
            val lone = expectError<FreshTokenException.Config> { client.codeFromRedirect(denied + "\uD800", "s-1") }
            assertEquals("redirect", lone.field)
            assertEquals("nothing sent", 0L, emu.counter("token_requests"))
        }
    }
}
