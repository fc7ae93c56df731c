package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.childJvm
import dev.freshtoken.support.same
import java.io.File
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.CountDownLatch
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * [FileTokenStore] shared by several processes (an app's `:sync` process,
 * several JVMs on a host): its lease makes one process refresh while the
 * others wait and use its saved record, and its versions keep a re-link
 * made by one process from being overwritten by another's refresh. The
 * other process is a real child JVM (support/OtherProcess.kt); the emulator
 * holds the first refresh until it has been refused the lease (no timing).
 * Mirrors the Python test_file_store_processes.py.
 */
class FileTokenStoreProcessesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() { emu.reset() }

    /** The store as it was: no lease, no versions. */
    private class OneProcessStore(dir: Path) : FileTokenStore(dir) {
        override fun supportsLease() = false
        override fun supportsVersions() = false
    }

    private fun client() = TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret"))

    /** The other process: a child JVM on this test's classpath and native library. */
    private fun otherProcess(dir: Path, mode: String): Process =
        childJvm("dev.freshtoken.support.OtherProcessKt", emu.tokenEndpoint, dir.toString(), mode)

    /** What `call` failed with, or null when it gave a token. */
    private fun failureOf(call: java.util.concurrent.CompletableFuture<String>): Throwable? = try {
        call.get(60, TimeUnit.SECONDS)
        null
    } catch (e: ExecutionException) {
        e.cause
    }

    private fun storedRefreshToken(dir: Path): String =
        Json.obj(String(Files.readAllBytes(FileTokenStore(dir).fileFor("u1")), Charsets.UTF_8))["refresh_token"] as String

    /** This process's refresh held at the emulator, then the other process calls: its output and this call. */
    private fun twoProcessesAtExpiry(store: FileTokenStore, dir: Path, mode: String, check: (Process, java.util.concurrent.CompletableFuture<String>, Long) -> Unit) {
        client().use { client ->
            client.session("u1", store).seedBlocking(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
            val before = emu.refreshRequests()
            emu.hold()
            val mine = client.session("u1", store).accessTokenAsync()
            assertEquals(1L, emu.waitHeld(1))
            val child = otherProcess(dir, mode)
            try {
                check(child, mine, before)
            } finally {
                child.destroyForcibly()
            }
        }
    }

    @Test fun `two processes at expiry send one refresh, and the other waits on the lease and uses the saved record`() {
        val dir = tmp.root.toPath().resolve("tokens")
        twoProcessesAtExpiry(FileTokenStore(dir), dir, "lease") { child, mine, before ->
            val out = child.inputStream.bufferedReader()
            val waited = out.readLine() == "refused"
            assertTrue("the other process waits for this one's lease", waited)
            assertEquals(1L, emu.releaseHeld())
            val token = mine.get(60, TimeUnit.SECONDS)
            val theirs = out.readLines().last()
            assertEquals(0, child.waitFor())
            same(theirs.removePrefix("token "), token, "the other process used the record this one saved")
            assertEquals("one refresh for both processes", 1L, emu.refreshRequests() - before)
            assertEquals("active", emu.refreshTokenState(storedRefreshToken(dir)))
        }
    }

    /**
     * Without the lease both processes send the same refresh token. The one
     * refused with `invalid_grant` reads the store again and adopts the
     * other's rotated record (the core's rule since "a refusal after another
     * process rotated adopts its record"), serving its fresh access token
     * instead of marking the session dead over it. The emulator's reuse
     * detection revoked that record's refresh token meanwhile, so the next
     * refresh ends the session: the user re-links once.
     */
    @Test fun `without the lease both processes spend the refresh token, and the refused one adopts the other's record`() {
        val dir = tmp.root.toPath().resolve("tokens")
        twoProcessesAtExpiry(OneProcessStore(dir), dir, "one-process") { child, mine, before ->
            val theirs = child.inputStream.bufferedReader().readLines().last() // not held: the emulator rotates for it
            assertEquals(0, child.waitFor())
            assertEquals(1L, emu.releaseHeld())
            val token = mine.get(60, TimeUnit.SECONDS)
            assertTrue("the other process got a token", theirs.startsWith("token "))
            same(theirs.removePrefix("token "), token, "this process serves the record the other one saved")
            assertEquals("each process sent the same refresh token", 2L, emu.refreshRequests() - before)
            assertEquals("reuse detection revoked the adopted refresh token", "revoked", emu.refreshTokenState(storedRefreshToken(dir)))
            client().use { later ->
                val failure = failureOf(later.session("u1", OneProcessStore(dir)).refreshAsync().thenApply { "" })
                assertTrue("its next refresh ends the session: $failure", failure is FreshTokenException.ReauthorizationRequired)
            }
        }
    }

    /** The user re-links through another client while this one's refresh is held; returns the outcome and both links. */
    private fun relinkDuringRefresh(newStore: (Path) -> FileTokenStore): Triple<Throwable?, String, String> {
        val dir = tmp.root.toPath().resolve("tokens")
        val old = emu.seed()["refresh_token"] as String
        val relinked = emu.seed()["refresh_token"] as String
        client().use { refreshing ->
            client().use { other ->
                refreshing.session("u1", newStore(dir)).seedBlocking(SeedOptions(refreshToken = old))
                emu.hold()
                val mine = refreshing.session("u1", newStore(dir)).accessTokenAsync()
                assertEquals(1L, emu.waitHeld(1))
                other.session("u1", newStore(dir)).seedBlocking(SeedOptions(refreshToken = relinked))
                assertEquals(1L, emu.releaseHeld())
                val failure = failureOf(mine)
                return Triple(failure, relinked, storedRefreshToken(dir))
            }
        }
    }

    @Test fun `a re-link during another client's refresh stays, and that refresh's save is a conflict`() {
        val (failure, relinked, stored) = relinkDuringRefresh { FileTokenStore(it) }
        same(stored, relinked, "the new link stays")
        assertTrue("the refreshing client learns the record moved on: $failure", failure is FreshTokenException.Conflict)
    }

    @Test fun `without versions the same refresh overwrites the re-link`() {
        val (failure, relinked, stored) = relinkDuringRefresh { OneProcessStore(it) }
        assertEquals(null, failure)
        assertTrue("the new link was overwritten", stored != relinked)
    }

    @Test fun `one lease per file however the directory is spelt`() = blocking {
        // Stores through a symlink share this JVM's lease table: a second
        // channel on the file would drop the holder's lock when closed.
        val real = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val alias = Files.createSymbolicLink(tmp.root.toPath().resolve("alias"), real)
        val plain = FileTokenStore(real)
        val aliased = FileTokenStore(alias)
        assertTrue(plain.acquire("u1", "a", 60_000))
        assertFalse(aliased.acquire("u1", "b", 60_000))
        assertTrue("the holder renews through either name", aliased.acquire("u1", "a", 60_000))
        aliased.release("u1", "a")
        assertTrue(plain.acquire("u1", "b", 60_000))
        plain.release("u1", "b")
    }

    /**
     * `ScheduledFuture.cancel` cannot stop a task that has started: the lease's
     * TTL timer fires and waits for the lease table's lock while its owner
     * renews the lease (true). Given back then, the lease would go to another
     * process while this one, told it holds it for the new TTL, refreshes: two
     * processes sending one single-use refresh token. The fired timer is held
     * (FileLeases.onExpiry) until the renewal is done (no timing).
     */
    @Test fun `a TTL timer that fired as its owner renewed the lease leaves it held`() = blocking {
        val store = FileTokenStore(tmp.newFolder("tokens").toPath())
        val fired = CountDownLatch(1)
        val gate = CountDownLatch(1)
        val ended = CountDownLatch(1)
        FileLeases.onExpiry = { end ->
            fired.countDown()
            gate.await()
            end()
            ended.countDown()
        }
        try {
            assertTrue(store.acquire("u1", "me", 0))
            assertTrue("its TTL timer fired at once", fired.await(30, TimeUnit.SECONDS))
            assertTrue("the owner renews the lease meanwhile", store.acquire("u1", "me", 60_000))
        } finally {
            gate.countDown()
        }
        try {
            assertTrue("the fired timer's call ended", ended.await(30, TimeUnit.SECONDS))
        } finally {
            FileLeases.onExpiry = null
        }
        try {
            assertFalse("refused to another owner: held for the new TTL", store.acquire("u1", "another", 60_000))
            if (File("/proc/locks").exists()) {
                assertTrue("this process's lock on the lease file stands", lockedByThisProcess(store.lockFileFor("u1")))
            }
        } finally {
            store.release("u1", "me")
        }
        assertTrue("given back by its release", store.acquire("u1", "another", 60_000))
        store.release("u1", "another")
    }

    /** Whether Linux's lock table shows a lock this process holds on `file`. */
    private fun lockedByThisProcess(file: Path): Boolean {
        val inode = Files.getAttribute(file, "unix:ino").toString()
        val pid = ProcessHandle.current().pid().toString()
        // "<n>: POSIX ADVISORY WRITE <pid> <major:minor:inode> <start> <end>"; a waiter has "->" after "<n>:".
        return File("/proc/locks").readLines().map { it.trim().split(Regex("\\s+")) }
            .any { it.getOrNull(1) != "->" && it.getOrNull(4) == pid && it.getOrNull(5)?.substringAfterLast(':') == inode }
    }

    /**
     * The JVM's exit with a refresh in flight: the request has left, its
     * caller did not wait, and the app exits (`System.exit`, as on SIGTERM).
     * The JVM used to halt before the answer was saved, and the next start
     * read the in-doubt record as a lost session (a re-link). freshtoken's
     * shutdown hook (ExitHook) now waits for the core's running calls, so the
     * rotated refresh token is saved.
     */
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
