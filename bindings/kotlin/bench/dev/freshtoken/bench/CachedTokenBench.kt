package dev.freshtoken.bench

import dev.freshtoken.HttpUrlConnectionClient
import dev.freshtoken.MemoryTokenStore
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import dev.freshtoken.TokenStore
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.yield

/** The anchor: a plain Kotlin function returning the same string from a HashMap. */
private val plainMap = HashMap<String, String>()
private fun plainToken(key: String): String = plainMap[key]!!

/** One round of the anchor: [calls] calls of the plain function. Its own method, so the JIT compiles it as one. */
private fun plainRound(key: String, calls: Int): Long {
    var sink = 0L
    repeat(calls) { sink += plainToken(key).length }
    return sink
}

/**
 * [plainRound] in a loop that also holds a suspension point, never taken:
 * what any suspend call puts in its caller's loop (the loop gets a second
 * entry, the resume label, and the JIT optimizes it less). The anchor of
 * the suspend read's diagnostic row.
 */
private suspend fun plainRoundSuspending(key: String, calls: Int): Long {
    var sink = 0L
    for (i in 0 until calls) {
        sink += plainToken(key).length
        if (i < 0) yield()
    }
    return sink
}

/**
 * One round of the per-request pattern: a new handle and `accessToken()` per
 * call. A `for` loop, as in [plainRoundSuspending]: in a suspend function
 * `repeat { sink += … }` compiles `sink` to a heap `Ref.LongRef` that the
 * suspension point's spill makes escape, so every call would also pay a
 * field read and write that the anchor's loop does not have.
 */
private suspend fun cachedRound(client: TokenClient, key: String, store: TokenStore, calls: Int): Long {
    var sink = 0L
    for (i in 0 until calls) sink += client.session(key, store).accessToken().length
    return sink
}

/**
 * [cachedRound] through the blocking API (`accessTokenBlocking()`, what Java
 * and thread-per-request servers call), in a plain loop. The same fresh
 * path; the suspend loop above also pays for its suspension point, which
 * gives the JIT a loop with two entries (the resume label) that it optimizes
 * less.
 */
private fun blockingRound(client: TokenClient, key: String, store: TokenStore, calls: Int): Long {
    var sink = 0L
    repeat(calls) { sink += client.session(key, store).accessTokenBlocking().length }
    return sink
}

/** [plainRound] over many users' keys (no loop-invariant lookup for the JIT to hoist). */
private fun plainRoundKeys(keys: Array<String>, calls: Int): Long {
    var sink = 0L
    val mask = keys.size - 1
    for (i in 0 until calls) sink += plainToken(keys[i and mask]).length
    return sink
}

/** [cachedRound] over many users' keys. */
private suspend fun cachedRoundKeys(client: TokenClient, keys: Array<String>, store: TokenStore, calls: Int): Long {
    var sink = 0L
    val mask = keys.size - 1
    for (i in 0 until calls) sink += client.session(keys[i and mask], store).accessToken().length
    return sink
}

/** One round of a non-cached call: `sessionCount()`, one plain FFI call. */
private fun ffiRound(client: TokenClient, calls: Int): Long {
    var sink = 0L
    repeat(calls) { sink += client.sessionCount() + 1 }
    return sink
}

/** ns per call of each round of [round], after [warmup] untimed rounds. */
private inline fun timeRounds(rounds: Int, warmup: Int, calls: Int, round: () -> Long): DoubleArray {
    var sink = 0L
    repeat(warmup) { sink += round() }
    val perCall = DoubleArray(rounds) {
        val start = System.nanoTime()
        sink += round()
        (System.nanoTime() - start).toDouble() / calls
    }
    check(sink > 0)
    return perCall
}

private fun DoubleArray.median(label: String): Double {
    sort()
    System.err.println("$label (ns/call, sorted): " + joinToString { "%.1f".format(java.util.Locale.ROOT, it) })
    return this[size / 2]
}

/**
 * The per-request cached read `client.session(key, store).accessToken()`
 * (a fresh token served from the client's mirror, no FFI call) against a
 * plain function returning the same string from a HashMap, in one run; and
 * what a non-cached call costs: `sessionCount()`, one plain FFI call
 * (clone the handle, call, through JNA).
 * Prints one JSON line (bench/run.mjs reads `ns_per_call`):
 * {"name":"kotlin cached accessToken()","ns_per_call":N,"hashmap_ns_per_call":N,
 *  "ratio_vs_hashmap":R,"ratio_vs_hashmap_1024_keys":R,"blocking_ns_per_call":N,
 *  "blocking_ratio_vs_hashmap":R,"suspending_hashmap_ns_per_call":N,
 *  "ratio_vs_suspending_hashmap":R,"ffi_call_ns":N}
 * (one key: the strict figure; 1024 keys: a server's many users, where the
 * anchor's lookup can no longer be hoisted out of the loop by the JIT)
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

        // The two interleaved, round by round, so that both see the same machine state.
        val plainRounds = DoubleArray(rounds)
        val cachedRounds = DoubleArray(rounds)
        val blockingRounds = DoubleArray(rounds)
        val suspendingRounds = DoubleArray(rounds)
        repeat(5) { // JIT warm-up
            plainRound(key, calls)
            plainRoundSuspending(key, calls)
            cachedRound(client, key, store, calls)
            blockingRound(client, key, store, calls)
        }
        for (i in 0 until rounds) {
            plainRounds[i] = timeRounds(1, 0, calls) { plainRound(key, calls) }[0]
            cachedRounds[i] = timeRounds(1, 0, calls) { cachedRound(client, key, store, calls) }[0]
            blockingRounds[i] = timeRounds(1, 0, calls) { blockingRound(client, key, store, calls) }[0]
            suspendingRounds[i] = timeRounds(1, 0, calls) { plainRoundSuspending(key, calls) }[0]
        }
        val plain = plainRounds.median("plain HashMap function")
        val cached = cachedRounds.median("client.session(key, store).accessToken()")
        val blocking = blockingRounds.median("client.session(key, store).accessTokenBlocking()")
        val suspending = suspendingRounds.median("plain HashMap function, loop with a suspension point")
        // The same over 1024 users, one seeded session each.
        val keys = Array(1024) { "user-$it" }
        for (k in keys) {
            client.session(k, store).seed(SeedOptions(refreshToken = "rt-$k", accessToken = "$token-$k", expiresIn = 900))
            plainMap[k] = "$token-$k"
        }
        val plainKeysRounds = DoubleArray(rounds)
        val cachedKeysRounds = DoubleArray(rounds)
        repeat(5) { plainRoundKeys(keys, calls); cachedRoundKeys(client, keys, store, calls) }
        for (i in 0 until rounds) {
            plainKeysRounds[i] = timeRounds(1, 0, calls) { plainRoundKeys(keys, calls) }[0]
            cachedKeysRounds[i] = timeRounds(1, 0, calls) { cachedRoundKeys(client, keys, store, calls) }[0]
        }
        val plainKeys = plainKeysRounds.median("plain HashMap function, 1024 keys")
        val cachedKeys = cachedKeysRounds.median("client.session(key, store).accessToken(), 1024 keys")

        val ffiCalls = (calls / 100).coerceAtLeast(10_000)
        val ffi = timeRounds(rounds, 3, ffiCalls) { ffiRound(client, ffiCalls) }.median("sessionCount() (one FFI call)")
        val ratio = cached / plain
        val ratioKeys = cachedKeys / plainKeys
        System.err.println("cached read / HashMap function: %.2fx (one key), %.2fx (1024 keys)".format(java.util.Locale.ROOT, ratio, ratioKeys))
        println(
            """{"name":"kotlin cached accessToken()","ns_per_call":${"%.1f".format(java.util.Locale.ROOT, cached)},""" +
                """"hashmap_ns_per_call":${"%.1f".format(java.util.Locale.ROOT, plain)},""" +
                """"ratio_vs_hashmap":${"%.2f".format(java.util.Locale.ROOT, ratio)},""" +
                """"ratio_vs_hashmap_1024_keys":${"%.2f".format(java.util.Locale.ROOT, ratioKeys)},""" +
                """"blocking_ns_per_call":${"%.1f".format(java.util.Locale.ROOT, blocking)},""" +
                """"blocking_ratio_vs_hashmap":${"%.2f".format(java.util.Locale.ROOT, blocking / plain)},""" +
                """"suspending_hashmap_ns_per_call":${"%.1f".format(java.util.Locale.ROOT, suspending)},""" +
                """"ratio_vs_suspending_hashmap":${"%.2f".format(java.util.Locale.ROOT, cached / suspending)},""" +
                """"ffi_call_ns":${"%.0f".format(java.util.Locale.ROOT, ffi)}}""",
        )
    }
}
