package dev.freshtoken.support

import dev.freshtoken.Clock
import dev.freshtoken.FreshTokenException
import dev.freshtoken.HostException
import dev.freshtoken.MemoryTokenStore
import java.util.Collections
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import org.junit.Assert.assertTrue
import org.junit.Assert.fail

/** Fake time: `now` moves only when the test, or a recorded sleep, moves it. */
class FakeClock(start: Long = System.currentTimeMillis() / 1000 * 1000) : Clock {
    private val now = AtomicLong(start)
    val sleeps: MutableList<Long> = Collections.synchronizedList(mutableListOf())

    fun now(): Long = now.get()
    fun advance(ms: Long) { now.addAndGet(ms) }
    fun set(ms: Long) { now.set(ms) }

    override fun nowMs(): Long = now.get()

    override suspend fun sleep(ms: Long) {
        sleeps.add(ms.toLong())
        now.addAndGet(ms.toLong())
    }
}

/** A MemoryTokenStore that counts calls, fails on command, and can hold saves at a gate. */
class TestStore : MemoryTokenStore() {
    val loads = AtomicInteger()
    val saves = AtomicInteger()
    /** How many of the next saves fail (Int.MAX_VALUE: all of them). */
    @Volatile var failSaves = 0
    /**
     * With it set, only saves of records it matches (JSON fields) fail and
     * count against `failSaves`; null: any save.
     */
    @Volatile var failOnly: ((Map<String, Any?>) -> Boolean)? = null
    @Volatile var failLoads = 0
    /** Every record saved (in order), the core's in-doubt markers included. */
    val saved: MutableList<String> = Collections.synchronizedList(mutableListOf())
    @Volatile private var gate: Gate? = null

    class Gate {
        /** Completed with the record when a save reaches the gate. */
        val entered = CompletableDeferred<String>()
        /** Complete it to let the held save (and any later one) through. */
        val release = CompletableDeferred<Unit>()
    }

    /**
     * From now on each save of a record that is not in doubt (not the
     * marker the core writes ahead of a refresh request) reports its record
     * through `entered` and waits for `release`.
     */
    fun gateSaves(): Gate = Gate().also { gate = it }

    override suspend fun load(key: String): String? {
        loads.incrementAndGet()
        if (failLoads > 0) {
            failLoads--
            throw HostException.Failed("database unavailable")
        }
        return super.load(key)
    }

    override suspend fun save(key: String, record: String) {
        saves.incrementAndGet()
        if (failSaves > 0 && failOnly?.invoke(Json.obj(record)) != false) {
            if (failSaves != Int.MAX_VALUE) failSaves--
            throw java.io.IOException("disk full")
        }
        gate?.takeUnless { record.contains("\"in_doubt\":true") }?.let {
            it.entered.complete(record)
            it.release.await()
        }
        super.save(key, record)
        saved.add(record)
    }

    /** The stored record as JSON fields (null when none). */
    fun record(key: String): Map<String, Any?>? = get(key)?.let { Json.obj(it) }
}

/** Token comparisons that never print a token when they fail. */
fun same(a: Any?, b: Any?, message: String) = assertTrue(message, a is String && a == b)
fun differ(a: Any?, b: Any?, message: String) = assertTrue(message, a is String && b is String && a != b)

/** Runs `block`, expects a FreshTokenException of type T, and returns it. */
inline fun <reified T : FreshTokenException> expectError(block: () -> Any?): T {
    try {
        block()
    } catch (e: FreshTokenException) {
        if (e is T) return e
        fail("expected ${T::class.simpleName}, got ${e.javaClass.simpleName}: ${e.message}")
    }
    fail("expected ${T::class.simpleName}, but the call succeeded")
    throw AssertionError()
}

/** `runBlocking` for JUnit 4 test methods (which must return void, whatever the block's last expression). */
fun blocking(block: suspend kotlinx.coroutines.CoroutineScope.() -> Unit) {
    kotlinx.coroutines.runBlocking(block = block)
}

/**
 * Runs `n` concurrent calls of `call` so that every one has joined the
 * shared request before its answer, with no timing: queue a `hold` fault
 * first ([Emulator.hold], then the fault the held request should meet, if
 * any). Call 0 starts the request and this waits until the emulator holds
 * it; each further call runs (undispatched) up to its first suspension,
 * i.e. until the core has taken it; `beforeRelease` runs; then the held
 * request is released. Returns the results in call order.
 */
suspend fun <T> kotlinx.coroutines.CoroutineScope.callersThatJoin(
    emu: Emulator,
    n: Int,
    beforeRelease: suspend () -> Unit = {},
    call: suspend (Int) -> T,
): List<T> {
    val undispatched = kotlinx.coroutines.CoroutineStart.UNDISPATCHED
    val first = async(start = undispatched) { call(0) }
    kotlinx.coroutines.withContext(kotlinx.coroutines.Dispatchers.IO) { emu.waitHeld(1) }
    val rest = (1 until n).map { i -> async(start = undispatched) { call(i) } }
    beforeRelease()
    kotlinx.coroutines.withContext(kotlinx.coroutines.Dispatchers.IO) { emu.releaseHeld() }
    return (listOf(first) + rest).awaitAll()
}

/** The record files in a [dev.freshtoken.FileTokenStore] directory: its names but the lock files (`.lock`). */
fun recordFiles(dir: java.nio.file.Path): Set<String> =
    java.nio.file.Files.list(dir).use { s -> s.map { it.fileName.toString() }.toList() }
        .filterNot { it.endsWith(".lock") }.toSet()
