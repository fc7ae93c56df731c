package dev.freshtoken

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLongArray

/**
 * The client's copy of each session's fresh access token: key -> (token,
 * fresh-until in ms on the client's clock), so that a cached read is a map
 * lookup, with no FFI call. Bounded: past [capacity] keys an arbitrary entry
 * is dropped (dropping is always safe: the next read crosses into the core
 * and refills it).
 *
 * Freshness, on the client's clock:
 * - with a host clock ([hostNowMs], e.g. a fake clock in tests) every read
 *   compares it with fresh-until and with when the entry was filled: stale
 *   exactly at fresh-until, and when the clock was set back;
 * - on the system clock a read compares nothing: the entry is removed at
 *   fresh-until by a timer on one shared daemon thread (it sleeps until the
 *   next expiry; no polling). Reading the system clock costs 70-100 ns here,
 *   eight times the map lookup itself. A late timer (a long GC pause) serves
 *   the token past fresh-until by that delay, inside the core's leeway
 *   (default 60 s before the token's real expiry). Timers count monotonic
 *   time, which stops while an Android device sleeps: [ClockJumpGuard]
 *   compares the wall and monotonic clocks once a second and drops every
 *   entry when they disagree (a sleep or a clock change).
 *
 * A call that may replace a token ([begin] .. [end]) bumps the key's epoch
 * at both ends, and no refill of the key is mirrored while it runs; a
 * refill taken under an older epoch is discarded, so a slow reader never
 * puts back a token that a concurrent refresh or tokenRejected has
 * replaced, and a read before the core has the call (which then still
 * serves the token the call rejects, or the account a seed replaces)
 * mirrors nothing. [close]
 * (the client's) bumps every epoch and refuses every later refill: a call
 * still in flight then never mirrors its token. A fill already past its
 * check of `closed` when close begins holds its key's stripe lock until its
 * token and timer are stored, so close waits for every stripe lock before
 * it sweeps: once it returns nothing is mirrored, and a closed mirror
 * serves nothing even before then ([get] and the client's read check it).
 *
 * A key's entry, its expiry timer and their removal change together, under
 * the key's stripe lock (never on the read path). Without it a timer that
 * fired before its fill had stored the token (a filler thread descheduled
 * between the two, with fresh-until a few ms away), or a second fill of
 * the key that replaced the first one's timer but not its token, left a
 * token mirrored with no timer: served, with no FFI call and no refresh,
 * long past its expiry.
 */
internal class TokenMirror(
    private val capacity: Int,
    private val hostNowMs: (() -> Long)?,
    /** Where the system clock's expiry timers run (tests pass their own). */
    private val timer: ScheduledExecutorService = expiryTimer,
) {
    /**
     * A mirrored token on a host clock: fresh from when it was filled (a
     * clock set back asks the core, whose freshness has a lower bound too)
     * until its fresh-until.
     */
    private class Timed(val token: String, val sinceMs: Long, val freshUntilMs: Long)

    /** One expiry timer; the holder lets the timer remove exactly its own bookkeeping. */
    private class Expiry {
        @Volatile var future: ScheduledFuture<*>? = null
    }

    /**
     * key -> the token itself (system clock: present means fresh) or a [Timed]
     * (host clock). The client reads it directly on the per-request path (see
     * [TokenClient.mirrorEntries]), once it has checked that it is open.
     */
    val entries = ConcurrentHashMap<String, Any>()

    /** key -> its entry's expiry timer (system clock only). */
    private val expiries = ConcurrentHashMap<String, Expiry>()
    private val epochs = AtomicLongArray(STRIPES)

    /** key -> how many calls that may replace its token run ([begin]). */
    private val busy = ConcurrentHashMap<String, Int>()

    /** One lock per stripe: a key's entry and expiry timer change together under it. */
    private val locks = Array(STRIPES) { Any() }

    /** Set by [close]: nothing is mirrored any more. */
    @Volatile private var closed = false

    init {
        if (hostNowMs == null) ClockJumpGuard.watch(this, expiryTimer)
    }

    /**
     * Test hook: runs in [fill] under the key's stripe lock, after the
     * re-check of `closed` and before the token is stored (a filler thread
     * descheduled there).
     */
    internal var beforeStore: (() -> Unit)? = null

    /** The mirrored token if it is fresh now (and the mirror not closed), else null. */
    fun get(key: String): String? = if (closed) null else entries[key]?.let(::fresh)

    /** The token of an entry's [value] if it is fresh now, else null. */
    fun fresh(value: Any): String? {
        if (value is String) return value // removed by its timer at fresh-until
        val timed = value as Timed
        val now = hostNowMs!!()
        return if (now < timed.freshUntilMs && now >= timed.sinceMs) timed.token else null
    }

    /** The key's epoch, read before a call whose result may be mirrored. */
    fun epoch(key: String): Long = epochs.get(stripe(key))

    /** Forgets the key's token, and any refill started before now. */
    fun drop(key: String) {
        epochs.incrementAndGet(stripe(key))
        remove(key)
    }

    /**
     * Before a call that may replace the key's token: forgets it, and
     * mirrors nothing for the key until the matching [end].
     */
    fun begin(key: String) {
        busy.merge(key, 1, Int::plus)
        drop(key)
    }

    /** After such a call, whatever its outcome: forgets the token a read during it got. */
    fun end(key: String) {
        busy.computeIfPresent(key) { _, running -> if (running <= 1) null else running - 1 }
        drop(key)
    }

    /**
     * Mirrors [token] until [freshUntilMs], unless a [drop] happened since
     * [epoch] was read or a call that may replace it runs.
     */
    fun fill(key: String, epoch: Long, token: String, freshUntilMs: Long) {
        val stripe = stripe(key)
        if (closed || epochs.get(stripe) != epoch || busy.containsKey(key)) return
        // Make room first, outside this key's lock (remove takes the other key's).
        if (entries.size >= capacity && !entries.containsKey(key)) {
            entries.keys.firstOrNull()?.let { remove(it) }
        }
        // Read before the lock: a host clock may call into this client.
        val sinceMs = hostNowMs?.invoke()
        synchronized(locks[stripe]) {
            // A drop or close since the first check: nothing to mirror (a drop
            // or close after this one waits for the lock, and then removes
            // what we put).
            if (closed || epochs.get(stripe) != epoch || busy.containsKey(key)) return
            beforeStore?.invoke()
            if (sinceMs != null) {
                entries[key] = Timed(token, sinceMs, freshUntilMs)
                return
            }
            val delay = freshUntilMs - System.currentTimeMillis()
            if (delay <= 0) return
            // The token first, then its timer: the timer (which takes this
            // lock) can only ever remove a token that is already there.
            entries[key] = token
            val expiry = Expiry()
            expiries.put(key, expiry)?.future?.cancel(false)
            expiry.future = timer.schedule({ expire(key, expiry) }, delay, TimeUnit.MILLISECONDS)
        }
    }

    /**
     * The timer [expiry] is due: removes the key's token if that timer is
     * still the key's own, or if the key has no timer at all. A later fill's
     * token has its own timer (left alone); a token with none would be served
     * forever, so it goes (every system-clock token is stored with its timer
     * under this lock, so none should exist; dropping is always safe).
     */
    private fun expire(key: String, expiry: Expiry) {
        synchronized(locks[stripe(key)]) {
            val current = expiries[key]
            if (current === expiry || current == null) {
                expiries.remove(key)
                entries.remove(key)
            }
        }
    }

    private fun remove(key: String) {
        synchronized(locks[stripe(key)]) {
            entries.remove(key)
            expiries.remove(key)?.future?.cancel(false)
        }
    }

    /** Forgets every token (a clock jump); refills go on as before. */
    fun clear() {
        for (key in entries.keys) remove(key)
    }

    /**
     * Forgets every token and cancels every expiry timer, for good: a refill
     * started before (a call in flight when its client closed) is discarded,
     * and so is every later one.
     */
    fun close() {
        closed = true
        for (stripe in 0 until STRIPES) epochs.incrementAndGet(stripe)
        ClockJumpGuard.unwatch(this)
        // A fill that re-checked `closed` before it was set still holds its
        // key's stripe lock until its token and timer are stored: wait for
        // every lock, so the sweep below finds (and cancels) them. A fill
        // that takes a lock after this sees `closed` and stores nothing.
        for (lock in locks) synchronized(lock) {}
        clear()
        // (Every timer went with its token; a safeguard.)
        for (key in expiries.keys) remove(key)
    }

    val size: Int get() = entries.size

    /** How many expiry timers are pending (tests). */
    val timerCount: Int get() = expiries.size

    private fun stripe(key: String) = key.hashCode() and (STRIPES - 1)

    private companion object {
        const val STRIPES = 64

        /** One daemon thread for every client's expiry timers; cancelled timers leave its queue at once. */
        val expiryTimer: ScheduledThreadPoolExecutor by lazy {
            ScheduledThreadPoolExecutor(1) { r -> Thread(r, "freshtoken-mirror-expiry").apply { isDaemon = true } }
                .apply { removeOnCancelPolicy = true }
        }
    }
}
