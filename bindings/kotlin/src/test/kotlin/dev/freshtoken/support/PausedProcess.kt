package dev.freshtoken.support

import dev.freshtoken.FileTokenStore
import dev.freshtoken.FreshTokenException
import dev.freshtoken.HostException
import dev.freshtoken.HttpHeader
import dev.freshtoken.HttpRequest
import dev.freshtoken.HttpUrlConnectionClient
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import java.nio.file.Paths
import kotlinx.coroutines.runBlocking

/**
 * The process ProcessPauseTest stops (SIGSTOP) while its refresh is
 * answered, run in a child JVM. Prints `sending`, then one line of outcome,
 * never a token:
 * - mode `session`: links `u1` in a FileTokenStore directory with the given
 *   refresh token, refreshes it through [HttpUrlConnectionClient], and
 *   prints `refreshed` or `error <code> <reason>`, then `inDoubt <bool>`;
 * - mode `http`: sends the refresh grant through [HttpUrlConnectionClient]
 *   alone (no core deadline) and prints `status <N> rotated <bool>` or
 *   `host-error <class>`.
 * Arguments: mode, token endpoint, directory, refresh token, timeoutMs.
 */
fun main(args: Array<String>) {
    val (mode, endpoint, directory, refreshToken, timeout) = args
    val timeoutMs = timeout.toLong()
    val http = HttpUrlConnectionClient()
    when (mode) {
        "session" -> {
            val store = FileTokenStore(Paths.get(directory))
            val options = TokenClientOptions(
                tokenEndpoint = endpoint, clientId = "test-client", clientSecret = "test-secret", timeoutMs = timeoutMs,
            )
            TokenClient(options, http).use { client ->
                val session = client.session("u1", store)
                session.seedBlocking(SeedOptions(refreshToken = refreshToken))
                say("sending")
                try {
                    session.refreshBlocking()
                    say("refreshed")
                } catch (e: FreshTokenException) {
                    val reason = (e as? FreshTokenException.ReauthorizationRequired)?.reasonCode ?: "-"
                    say("error ${e.code} $reason")
                }
                say("inDoubt ${session.statusBlocking().inDoubt}")
            }
        }
        "http" -> {
            val request = HttpRequest(
                method = "POST",
                url = endpoint,
                headers = listOf(HttpHeader("Content-Type", "application/x-www-form-urlencoded")),
                body = "grant_type=refresh_token&client_id=test-client&client_secret=test-secret&refresh_token=$refreshToken",
                timeoutMs = timeoutMs,
                maxResponseBytes = 1_048_576,
            )
            say("sending")
            try {
                val response = runBlocking { http.send(request) }
                val rotated = Json.obj(String(response.body, Charsets.UTF_8))["refresh_token"] is String
                say("status ${response.status} rotated $rotated")
            } catch (e: HostException) {
                say("host-error ${e.javaClass.simpleName}")
            }
        }
        else -> error("unknown mode $mode")
    }
}

private fun say(line: String) {
    println(line)
    System.out.flush()
}
