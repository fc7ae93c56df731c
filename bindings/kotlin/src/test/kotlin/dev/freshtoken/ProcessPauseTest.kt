package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.childJvm
import java.io.File
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.TimeUnit
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * A process paused while its refresh is answered: Android's freezer of
 * cached apps, `docker pause`, a long VM pause. A real child JVM
 * (support/PausedProcess.kt) refreshes through [HttpUrlConnectionClient]
 * against the emulator, which holds the request; the test stops the child
 * (SIGSTOP), lets the emulator answer (rotating the refresh token), waits
 * longer than the child's timeout, and resumes it (SIGCONT). On resume
 * every deadline of the child is past, but the answer is in its socket: it
 * must be read and saved, not reported as a timeout (the rotated refresh
 * token lost, the one sent in doubt, the next call `lost_rotation`).
 * Linux only (`kill`, /proc).
 */
class ProcessPauseTest {
    companion object {
        private lateinit var emu: Emulator

        /** The child's timeoutMs: long enough for the test to stop it before its deadline on a busy machine. */
        private const val TIMEOUT_MS = 4_000L

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() {
        assumeTrue("needs /proc and kill", File("/proc/self/stat").exists() && (File("/usr/bin/kill").canExecute() || File("/bin/kill").canExecute()))
        emu.reset()
    }

    private fun signal(pid: Long, name: String) {
        val kill = ProcessBuilder("kill", "-$name", pid.toString()).redirectErrorStream(true).start()
        assertTrue("kill -$name", kill.waitFor(30, TimeUnit.SECONDS) && kill.exitValue() == 0)
    }

    /** The process state letter in /proc/<pid>/stat (`T`: stopped). */
    private fun state(pid: Long): Char {
        val stat = String(Files.readAllBytes(Path.of("/proc/$pid/stat")))
        return stat.substring(stat.lastIndexOf(')') + 2)[0]
    }

    private fun <T> until(what: String, timeoutMs: Long = 30_000, probe: () -> T?): T {
        val end = System.nanoTime() + timeoutMs * 1_000_000
        while (true) {
            probe()?.let { return it }
            check(System.nanoTime() < end) { "timed out waiting for $what" }
            Thread.sleep(10)
        }
    }

    /**
     * Runs the child in `mode` with the emulator holding its refresh, pauses
     * it across the answer as above, and returns its output lines after the
     * `sending` one, with the seeded refresh token and the store directory.
     */
    private fun pausedAcrossTheAnswer(mode: String): Triple<List<String>, String, Path> {
        val dir = tmp.root.toPath().resolve("tokens")
        val seeded = emu.seed()["refresh_token"] as String
        emu.hold()
        val child = childJvm("dev.freshtoken.support.PausedProcessKt", mode, emu.tokenEndpoint, dir.toString(), seeded, TIMEOUT_MS.toString())
        val pid = child.pid()
        try {
            val out = child.inputStream.bufferedReader()
            assertEquals("sending", out.readLine())
            // A child JVM may be slow to load: wait for its request longer than waitHeld does.
            assertEquals(1L, emu.admin("POST", "held/wait", mapOf("count" to 1, "timeout_ms" to 60_000))["held"])
            signal(pid, "STOP")
            until("the child to stop") { state(pid).takeIf { it == 'T' } }
            assertEquals(1L, emu.releaseHeld())
            until("the emulator to answer") { emu.admin("GET", "connections").takeIf { it["token_requests_in_flight"] == 0L } }
            assertEquals("the server rotated: the seeded refresh token is spent", "consumed", emu.refreshTokenState(seeded))
            // The fault: the process stays stopped past its deadline (not a synchronisation).
            Thread.sleep(TIMEOUT_MS + 1_500)
            assertEquals("still stopped", 'T', state(pid))
            signal(pid, "CONT")
            val lines = out.readLines()
            assertTrue("the child ended", child.waitFor(60, TimeUnit.SECONDS))
            assertEquals("the child's exit status (output: $lines)", 0, child.exitValue())
            return Triple(lines, seeded, dir)
        } finally {
            if (child.isAlive) {
                runCatching { signal(pid, "CONT") }
                child.destroyForcibly()
            }
        }
    }

    @Test fun `a refresh answered while the process was paused is saved, not lost`() {
        val (lines, seeded, dir) = pausedAcrossTheAnswer("session")
        assertEquals(listOf("refreshed", "inDoubt false"), lines)
        val record = Json.obj(String(Files.readAllBytes(FileTokenStore(dir).fileFor("u1")), Charsets.UTF_8))
        val stored = record["refresh_token"] as String
        assertTrue("the stored refresh token is the rotated one", stored != seeded)
        assertEquals("the stored refresh token is live", "active", emu.refreshTokenState(stored))
        assertEquals("not in doubt", false, record["in_doubt"] ?: false)
        assertEquals("one refresh sent", 1L, emu.refreshRequests())
    }

    @Test fun `HttpUrlConnectionClient delivers an answer that arrived while the process was paused`() {
        val (lines, _, _) = pausedAcrossTheAnswer("http")
        assertEquals(listOf("status 200 rotated true"), lines)
    }
}
