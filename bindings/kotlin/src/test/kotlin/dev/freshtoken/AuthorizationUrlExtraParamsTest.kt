package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.authorizeRedirect
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import java.net.URI
import java.net.URLDecoder
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * `AuthorizationUrlOptions.extraParams`: further query parameters (Stitch's
 * `provider`, `login_hint`, ...), sent after the URL's own in name order and
 * approved by the emulator's authorize endpoint (which refuses a parameter
 * given twice). A name the URL sets itself, a lone surrogate, or (from Java)
 * a null or non-String key or value is Config naming `extra_params`.
 */
class AuthorizationUrlExtraParamsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private const val REDIRECT = "https://app.example/cb"
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun client() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
    )

    private fun query(url: String) = URI(url).rawQuery

    private fun pairs(query: String): List<Pair<String, String>> = query.split('&').map {
        val (name, value) = it.split('=', limit = 2)
        URLDecoder.decode(name, Charsets.UTF_8) to URLDecoder.decode(value, Charsets.UTF_8)
    }

    @Test fun `extra params are sent encoded, in name order, after the URL's own, and the emulator approves them`() = blocking {
        client().use { client ->
            val hint = "a b&c=d+\u00e9"
            val extra = linkedMapOf("provider" to "fnb", "login_hint" to hint, "acr_values" to "2fa")
            val request = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, scopes = listOf("openid"), extraParams = extra))
            val query = query(request.url)
            assertTrue(query, query.endsWith("&acr_values=2fa&login_hint=a+b%26c%3Dd%2B%C3%A9&provider=fnb"))
            assertEquals(hint, pairs(query).toMap()["login_hint"])

            val back = pairs(query(authorizeRedirect(request.url))).toMap()
            assertEquals(request.state, back["state"])
            val session = client.exchangeCode(ExchangeCodeOptions(back.getValue("code"), request.codeVerifier, REDIRECT), "u1", MemoryTokenStore())
            assertTrue("a token", session.accessToken().isNotEmpty())
        }
    }

    @Test fun `a parameter the URL sets itself is Config naming extra_params and the parameter, never the value`() = blocking {
        client().use { client ->
            for (name in listOf("state", "scope", "prompt", "client_id", "code_challenge", "")) {
                val e = expectError<FreshTokenException.Config> {
                    client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, extraParams = mapOf("provider" to "fnb", name to "secret-value")))
                }
                assertEquals("extra_params", e.field)
                assertTrue(e.message!!, e.message!!.contains("`$name`"))
                assertFalse(e.message!!, e.message!!.contains("secret-value"))
            }
        }
    }

    @Suppress("UNCHECKED_CAST")
    private fun javaMap(vararg entries: Pair<Any?, Any?>): Map<String, String> =
        java.util.HashMap<Any?, Any?>().apply { entries.forEach { (k, v) -> put(k, v) } } as Map<String, String>

    @Test fun `a lone surrogate, a null or a non-String key or value is Config naming extra_params, and nothing is sent`() = blocking {
        client().use { client ->
            val cases = listOf(
                mapOf("provider" to "fnb\uD800"),
                mapOf("provider\uD800" to "fnb"),
                javaMap("provider" to null),
                javaMap("provider" to 42),
                javaMap(null to "fnb"),
                javaMap(7 to "fnb"),
            )
            for (extra in cases) {
                val e = expectError<FreshTokenException.Config> {
                    client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, extraParams = extra))
                }
                assertEquals("extra_params", e.field)
                assertFalse(e.message!!, e.message!!.contains("fnb"))
            }
            assertEquals(0L, emu.counter("token_requests"))
            // The client works on.
            val url = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, extraParams = mapOf("provider" to "fnb"))).url
            assertTrue(url, url.endsWith("&provider=fnb"))
        }
    }
}
