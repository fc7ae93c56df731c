package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.same
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
 * [FileTokenStore] and the `freshtoken` command on one directory (a cron
 * job beside a service): the command waits for this store's lease (a
 * `FileLock`, which the command takes as a POSIX record lock beside its
 * `flock`) and serves the record the store saved, and a re-link the store
 * saves during the command's refresh is kept. The real command binary
 * (<repo>/target/debug/freshtoken, or $FRESHTOKEN_COMMAND_BIN); waits are
 * on Linux's lock table and the emulator's held requests, never on time.
 * Mirrors the Python test_file_store_and_command.py.
 */
class FileTokenStoreAndCommandTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() {
        assumeTrue("reads Linux's lock table", File("/proc/locks").exists())
        emu.reset()
    }

    private val command: File = System.getenv("FRESHTOKEN_COMMAND_BIN")?.let(::File)
        ?: File(System.getProperty("freshtoken.repo") ?: ".", "target/debug/freshtoken")

    /** `freshtoken --json token` for key u1 on [dir]. */
    private fun startCommand(dir: Path): Process {
        assertTrue("$command missing: run `cargo build -p freshtoken-cli` first", command.exists())
        val creds = tmp.newFile("creds.json")
        creds.writeText(
            """{"clientId":"test-client","clientSecret":"test-secret","tokenEndpoint":"${emu.tokenEndpoint}","slidingRefreshTokenLifetime":31536000}""",
        )
        creds.setReadable(false, false)
        creds.setReadable(true, true)
        val builder = ProcessBuilder(
            command.path, "--json", "token", "--credentials", creds.path, "--store", dir.toString(), "--key", "u1",
        )
        builder.environment().keys.removeIf { it.startsWith("FRESHTOKEN_") }
        return builder.start()
    }

    /** Until Linux's lock table shows [process] waiting for a lock; fails at once if it ends first. */
    private fun waitBlockedOnALock(process: Process) {
        val pid = process.pid().toString()
        val limit = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
        while (true) {
            val waiting = File("/proc/locks").readLines().any { line ->
                val words = line.trim().split(Regex("\\s+"))
                words.getOrNull(1) == "->" && words.getOrNull(5) == pid
            }
            if (waiting) return
            assertTrue("the command ended instead of waiting for the lock", process.isAlive)
            assertTrue("the command never waited for the lock", System.nanoTime() < limit)
            Thread.sleep(5)
        }
    }

    @Test fun `the command waits for this store's lease and serves the record it saved`() {
        val dir = tmp.root.toPath().resolve("tokens")
        val store = FileTokenStore(dir)
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            client.session("u1", store).seedBlocking(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
            val before = emu.refreshRequests()
            emu.hold()
            val mine = client.session("u1", store).accessTokenAsync()
            assertEquals(1L, emu.waitHeld(1)) // this store holds the lease now

            val process = startCommand(dir)
            try {
                waitBlockedOnALock(process)
                assertEquals("the command sends nothing while the store holds the lease", 1L, emu.refreshRequests() - before)
                assertEquals(1L, emu.releaseHeld())
                val token = mine.get(60, TimeUnit.SECONDS)
                val out = String(process.inputStream.readBytes(), Charsets.UTF_8)
                assertEquals(String(process.errorStream.readBytes(), Charsets.UTF_8).takeLast(400), 0, process.waitFor())
                same(Json.obj(out)["access_token"] as String, token, "the command served the record this store saved")
                assertEquals("one refresh for both", 1L, emu.refreshRequests() - before)
                val stored = Json.obj(String(Files.readAllBytes(store.fileFor("u1")), Charsets.UTF_8))
                assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
            } finally {
                process.destroyForcibly()
            }
        }
    }

    @Test fun `a re-link this store saves during the command's refresh is kept`() {
        val dir = tmp.root.toPath().resolve("tokens")
        val old = emu.seed()["refresh_token"] as String
        val relinked = emu.seed()["refresh_token"] as String
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            client.session("u1", FileTokenStore(dir)).seedBlocking(SeedOptions(refreshToken = old))
            emu.hold()
            val process = startCommand(dir)
            try {
                assertEquals(1L, emu.waitHeld(1)) // the command's refresh of the old link
                client.session("u1", FileTokenStore(dir)).seedBlocking(SeedOptions(refreshToken = relinked))
                assertEquals(1L, emu.releaseHeld())
                val out = String(process.inputStream.readBytes(), Charsets.UTF_8)
                assertEquals(String(process.errorStream.readBytes(), Charsets.UTF_8).takeLast(400), 0, process.waitFor())

                val stored = Json.obj(String(Files.readAllBytes(FileTokenStore(dir).fileFor("u1")), Charsets.UTF_8))
                assertEquals("consumed", emu.refreshTokenState(old))
                assertEquals(
                    "the command's save met the re-link and went on from it, instead of overwriting it",
                    "consumed", emu.refreshTokenState(relinked),
                )
                assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
                same(Json.obj(out)["access_token"] as String, stored["access_token"] as String, "the command served the re-linked session")
            } finally {
                process.destroyForcibly()
            }
        }
    }
}
