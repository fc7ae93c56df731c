package dev.freshtoken

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicLongArray

/**
 * The client's copy of each session's fresh access token: key -> (token,
 * fresh-until in ms on the client's clock), so that a cached read is a map
 * lookup and a comparison, with no FFI call. Bounded: past [capacity] keys
 * an arbitrary entry is dropped (dropping is always safe: the next read
 * crosses into the core and refills it).
 *
 * A call that may replace a token ([drop]) bumps the key's epoch; a refill
 * taken under an older epoch is discarded, so a slow reader never puts back
 * a token that a concurrent refresh or tokenRejected has replaced.
 */
internal class TokenMirror(private val capacity: Int) {
    private class Entry(val token: String, val freshUntilMs: Long)

    private val entries = ConcurrentHashMap<String, Entry>()
    private val epochs = AtomicLongArray(STRIPES)

    /** The mirrored token if it is fresh at [nowMs] (strictly before its fresh-until). */
    fun get(key: String, nowMs: Long): String? {
        val entry = entries[key] ?: return null
        return if (nowMs < entry.freshUntilMs) entry.token else null
    }

    /** The key's epoch, read before a call whose result may be mirrored. */
    fun epoch(key: String): Long = epochs.get(stripe(key))

    /** Forgets the key's token, and any refill started before now. */
    fun drop(key: String) {
        epochs.incrementAndGet(stripe(key))
        entries.remove(key)
    }

    /** Mirrors [token] until [freshUntilMs], unless a [drop] happened since [epoch] was read. */
    fun fill(key: String, epoch: Long, token: String, freshUntilMs: Long) {
        val stripe = stripe(key)
        if (epochs.get(stripe) != epoch) return
        if (entries.size >= capacity && !entries.containsKey(key)) {
            entries.keys.firstOrNull()?.let { entries.remove(it) }
        }
        val entry = Entry(token, freshUntilMs)
        entries[key] = entry
        // A drop between the check and the put: take the refill back.
        if (epochs.get(stripe) != epoch) entries.remove(key, entry)
    }

    fun clear() = entries.clear()

    val size: Int get() = entries.size

    private fun stripe(key: String) = key.hashCode() and (STRIPES - 1)

    private companion object {
        const val STRIPES = 64
    }
}
