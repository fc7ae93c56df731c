package dev.freshtoken.bench

import dev.freshtoken.HttpUrlConnectionClient
import dev.freshtoken.MemoryTokenStore
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import dev.freshtoken.token
import kotlinx.coroutines.runBlocking

/**
 * The cost of `session.token()` when the access token is fresh in memory
 * (the path every API call takes): one JNA call to `cachedAccessToken()`,
 * which locks, reads the clock, compares and copies the token out.
 * Warms up, then times ROUNDS rounds of CALLS calls and prints the median as
 * one JSON line. Nothing is sent: the session is seeded with a fresh token.
 *   java … dev.freshtoken.bench.CachedTokenBenchKt [calls-per-round] [rounds]
 */
fun main(args: Array<String>) = runBlocking {
    val calls = args.getOrNull(0)?.toInt() ?: 200_000
    val rounds = args.getOrNull(1)?.toInt() ?: 9
    require(calls >= 100_000 && rounds >= 3) { "at least 100000 calls and 3 rounds" }

    TokenClient(
        TokenClientOptions(tokenEndpoint = "http://127.0.0.1:9/connect/token", clientId = "bench"),
        HttpUrlConnectionClient(),
    ).use { client ->
        client.session("bench-user", MemoryTokenStore()).use { session ->
            val token = "at-" + "x".repeat(40)
            session.seed(SeedOptions(refreshToken = "rt-bench", accessToken = token, expiresIn = 900))
            check(session.token() == token) { "the seeded token is not served" }

            var sink = 0L
            repeat(3) { repeat(calls) { sink += session.token().length } } // JIT warm-up
            val perCall = DoubleArray(rounds) {
                val start = System.nanoTime()
                repeat(calls) { sink += session.token().length }
                (System.nanoTime() - start).toDouble() / calls
            }
            perCall.sort()
            val median = perCall[rounds / 2]
            check(sink > 0)
            System.err.println("rounds (ns/call, sorted): " + perCall.joinToString { "%.1f".format(it) })
            println("""{"name":"kotlin cached token()","ns_per_call":${"%.1f".format(java.util.Locale.ROOT, median)}}""")
        }
    }
}
