package dev.freshtoken

import java.util.Collections
import java.util.WeakHashMap
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.TimeUnit

/**
 * Notices when the wall clock moved differently from the monotonic clock:
 * the device slept (on Android the monotonic clock and every
 * ScheduledExecutor delay stop in deep sleep, the wall clock does not), or
 * someone set the clock. The mirror's expiry timers count monotonic time,
 * so after such a jump they would fire late and serve a token past its
 * fresh-until; [check] says so, and the mirrors then drop everything (safe:
 * the next read asks the core, which judges freshness on the wall clock).
 */
internal class ClockJumpDetector(
    private val wallMs: () -> Long,
    private val monoMs: () -> Long,
    private val toleranceMs: Long,
) {
    private var offset = wallMs() - monoMs()

    /** True when wall − monotonic moved by more than the tolerance since the last call. */
    fun check(): Boolean {
        val now = wallMs() - monoMs()
        val jumped = kotlin.math.abs(now - offset) > toleranceMs
        offset = now
        return jumped
    }
}

/** One check per second, on the mirrors' timer thread, for every system-clock mirror. */
internal object ClockJumpGuard {
    private val mirrors: MutableSet<TokenMirror> = Collections.synchronizedSet(Collections.newSetFromMap(WeakHashMap()))
    private val detector = ClockJumpDetector(System::currentTimeMillis, { System.nanoTime() / 1_000_000 }, 500)
    @Volatile private var started = false

    /** Watches [mirror] (held weakly) and starts the check on [timer] once. */
    fun watch(mirror: TokenMirror, timer: ScheduledThreadPoolExecutor) {
        mirrors.add(mirror)
        if (started) return
        synchronized(this) {
            if (started) return
            timer.scheduleAtFixedRate({ if (detector.check()) clearAll() }, 1, 1, TimeUnit.SECONDS)
            started = true
        }
    }

    /** Stops watching [mirror] (its client closed). */
    fun unwatch(mirror: TokenMirror) {
        mirrors.remove(mirror)
    }

    /** Drops every watched mirror's tokens. */
    fun clearAll() {
        val all = synchronized(mirrors) { mirrors.toList() }
        for (mirror in all) mirror.clear()
    }
}
