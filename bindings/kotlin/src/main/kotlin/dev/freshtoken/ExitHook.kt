package dev.freshtoken

import java.util.concurrent.atomic.AtomicBoolean

/**
 * The JVM's exit (`System.exit`, SIGTERM): a shutdown hook waits, up to
 * [EXIT_WAIT_MS], for the refreshes, revocations and code exchanges the core
 * still runs (a refresh whose answer has come back still saves its rotated
 * refresh token; without the wait the JVM halted first, and the next start
 * read the session as lost), then stops the core from calling into the JVM,
 * which halts once its hooks end (`shutdownHostCalls`). Registered once,
 * with the first [TokenClient]. Android kills its processes without running
 * hooks; there it does nothing.
 */
internal object ExitHook {
    /** How long the JVM's exit waits, at most, for the core's running calls. */
    const val EXIT_WAIT_MS = 10_000L

    private val registered = AtomicBoolean()

    /** Adds the hook, the first time only. */
    fun register() {
        if (!registered.compareAndSet(false, true)) return
        try {
            Runtime.getRuntime().addShutdownHook(Thread({ shutdownHostCalls(EXIT_WAIT_MS) }, "freshtoken-exit"))
        } catch (_: IllegalStateException) {
            // The JVM is already exiting: no hook can be added any more.
        } catch (_: SecurityException) {
            // A security manager forbids hooks: exit as before.
        }
    }
}
