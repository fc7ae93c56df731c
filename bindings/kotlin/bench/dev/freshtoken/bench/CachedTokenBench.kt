package dev.freshtoken.bench

import dev.freshtoken.HttpUrlConnectionClient
import dev.freshtoken.MemoryTokenStore
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import kotlinx.coroutines.runBlocking

/** The anchor: a plain Kotlin function returning the same string from a HashMap. */
private val plainMap = HashMap<String, String>()
private fun plainToken(key: String): String = plainMap[key]!!

/** Median ns per call of [body] over [rounds] rounds of [calls] calls, after warm-up; [body] returns a length to sink. */
private inline fun median(calls: Int, rounds: Int, label: String, body: () -> Int): Double {
    var sink = 0L
    repeat(3) { repeat(calls) { sink += body() } } // JIT warm-up
    val perCall = DoubleArray(rounds) {
        val start = System.nanoTime()
        repeat(calls) { sink += body() }
        (System.nanoTime() - start).toDouble() / calls
    }
    check(sink > 0)
    perCall.sort()
    System.err.println("$label (ns/call, sorted): " + perCall.joinToString { "%.1f".format(it) })
    return perCall[rounds / 2]
}

/**
 * The per-request cached read `client.session(key, store).accessToken()`
 * (a fresh token served from the client's mirror, no FFI call) against a
 * plain function returning the same string from a HashMap, in one run; and
 * what a non-cached call costs: `sessionCount()`, one plain FFI call
 * (clone the handle, call, through JNA).
 * Prints one JSON line (bench/run.mjs reads `ns_per_call`):
 * {"name":"kotlin cached accessToken()","ns_per_call":N,"hashmap_ns_per_call":N,
 *  "ratio_vs_hashmap":R,"ffi_call_ns":N}
 *   java … dev.freshtoken.bench.CachedTokenBenchKt [calls-per-round] [rounds]
 */
fun main(args: Array<String>) = runBlocking {
    val calls = args.getOrNull(0)?.toInt() ?: 2_000_000
    val rounds = args.getOrNull(1)?.toInt() ?: 9
    require(calls >= 100_000 && rounds >= 3) { "at least 100000 calls and 3 rounds" }

    TokenClient(
        TokenClientOptions(tokenEndpoint = "http://127.0.0.1:9/connect/token", clientId = "bench"),
        HttpUrlConnectionClient(),
    ).use { client ->
        val key = "bench-user"
        val store = MemoryTokenStore()
        val token = "at-" + "x".repeat(40)
        client.session(key, store).seed(SeedOptions(refreshToken = "rt-bench", accessToken = token, expiresIn = 900))
        check(client.session(key, store).accessToken() == token) { "the seeded token is not served" }
        plainMap[key] = token

        // Alternate the two so that both see the same machine state.
        val plain = median(calls, rounds, "plain HashMap function") { plainToken(key).length }
        val cached = median(calls, rounds, "client.session(key, store).accessToken()") {
            client.session(key, store).accessToken().length
        }
        val ffiCalls = (calls / 100).coerceAtLeast(10_000)
        val ffi = median(ffiCalls, rounds, "sessionCount() (one FFI call)") { client.sessionCount().toInt() + 1 }
        val ratio = cached / plain
        System.err.println("cached read / HashMap function: %.2fx".format(java.util.Locale.ROOT, ratio))
        println(
            """{"name":"kotlin cached accessToken()","ns_per_call":${"%.1f".format(java.util.Locale.ROOT, cached)},""" +
                """"hashmap_ns_per_call":${"%.1f".format(java.util.Locale.ROOT, plain)},""" +
                """"ratio_vs_hashmap":${"%.2f".format(java.util.Locale.ROOT, ratio)},""" +
                """"ffi_call_ns":${"%.0f".format(java.util.Locale.ROOT, ffi)}}""",
        )
    }
}
