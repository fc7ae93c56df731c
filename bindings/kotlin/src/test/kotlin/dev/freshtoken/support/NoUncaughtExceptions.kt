package dev.freshtoken.support

import java.util.Collections
import org.junit.Assert.assertEquals
import org.junit.rules.ExternalResource

/**
 * Fails the test if anything reached the default uncaught-exception handler
 * while it ran (a callback's exception that escaped the binding instead of
 * becoming the caller's error). The previous handler is restored afterwards.
 */
class NoUncaughtExceptions : ExternalResource() {
    private val uncaught: MutableList<Throwable> = Collections.synchronizedList(mutableListOf())
    private var previous: Thread.UncaughtExceptionHandler? = null

    override fun before() {
        previous = Thread.getDefaultUncaughtExceptionHandler()
        Thread.setDefaultUncaughtExceptionHandler { _, e -> uncaught.add(e) }
    }

    override fun after() {
        Thread.setDefaultUncaughtExceptionHandler(previous)
        assertEquals("nothing reached the uncaught-exception handler",
            emptyList<String>(), uncaught.map { it.javaClass.name })
    }
}
