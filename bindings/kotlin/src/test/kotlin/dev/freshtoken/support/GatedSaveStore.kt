package dev.freshtoken.support

import dev.freshtoken.MemoryTokenStore
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeoutOrNull

/**
 * A store whose save of a rotated record (a refresh token other than
 * [seeded]) waits at a gate until [release]; with blocking waits, for Java
 * tests (which cannot write a suspending store).
 */
class GatedSaveStore(private val seeded: String) : MemoryTokenStore() {
    /** Completed when a rotated record reaches save() (Kotlin tests await it). */
    val held = CompletableDeferred<Unit>()
    private val released = CompletableDeferred<Unit>()
    /** Completed when a rotated record has been saved. */
    val saved = CompletableDeferred<Unit>()

    /** How many rotated records were saved. */
    val rotatedSaves = AtomicInteger()

    override suspend fun save(key: String, record: String) {
        val rotated = Json.obj(record)["refresh_token"] != seeded
        if (rotated) {
            held.complete(Unit)
            released.await()
        }
        super.save(key, record)
        if (rotated) {
            rotatedSaves.incrementAndGet()
            saved.complete(Unit)
        }
    }

    /** True once a rotated record waits at the gate (false after [timeoutMs]). */
    fun awaitHeld(timeoutMs: Long): Boolean = runBlocking { withTimeoutOrNull(timeoutMs) { held.await() } != null }

    /** Opens the gate for the held save and every later one. */
    fun release() {
        released.complete(Unit)
    }

    /** True once a rotated record has been saved (false after [timeoutMs]). */
    fun awaitSaved(timeoutMs: Long): Boolean = runBlocking { withTimeoutOrNull(timeoutMs) { saved.await() } != null }

    /** A field of the record stored under [key] (null when none). */
    fun field(key: String, name: String): Any? = get(key)?.let { Json.obj(it)[name] }
}
