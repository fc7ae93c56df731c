package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.childJvm
import java.util.concurrent.TimeUnit
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * The JVM's exit with a refresh in flight: the request has left, its caller
 * did not wait, and the app exits (`System.exit`, as on SIGTERM). The JVM
 * used to halt before the answer was saved, and the next start read the
 * in-doubt record as a lost session (a re-link). freshtoken's shutdown hook
 * now waits for the core's running calls, so the rotated refresh token is
 * saved.
 */
class ExitHookTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() { emu.reset() }

    @Test fun `a refresh answered while the JVM exits still saves its rotated refresh token`() {
        val seeded = emu.seed()["refresh_token"] as String
        val dir = tmp.newFolder("tokens").toPath()
        emu.hold()
        val child = childJvm("dev.freshtoken.support.ExitingProcessKt", emu.tokenEndpoint, dir.toString(), seeded)
        try {
            val lines = child.inputStream.bufferedReader()
            assertEquals("started", lines.readLine())
            assertEquals(1L, emu.waitHeld(1))
            child.outputStream.write("\n".toByteArray())
            child.outputStream.flush()
            assertEquals("exiting", lines.readLine())
            // The JVM is exiting (or about to): only now does the answer come.
            emu.releaseHeld()
            assertTrue("the child JVM exited", child.waitFor(60, TimeUnit.SECONDS))
            assertEquals(0, child.exitValue())
        } finally {
            child.destroyForcibly()
        }
        val record = Json.obj(FileTokenStore(dir).fileFor("u1").toFile().readText())
        assertEquals("the rotated record was saved, not the write-ahead marker", false, record["in_doubt"] ?: false)
        val stored = record["refresh_token"] as String
        assertTrue("the stored refresh token is the rotated one", stored != seeded)
        assertEquals("active", emu.refreshTokenState(stored))
        assertEquals(1L, emu.refreshRequests())
    }
}
