package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.recordFiles
import dev.freshtoken.support.same
import java.io.IOException
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.attribute.PosixFilePermissions
import java.security.MessageDigest
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/** TokenStoreBase's defaults, MemoryTokenStore and FileTokenStore, alone and under a session. */
class StoresTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() { emu.reset() }

    @Test fun `TokenStoreBase gives single-process defaults`() = blocking {
        val store = MemoryTokenStore()
        assertFalse(store.supportsLease())
        assertFalse(store.supportsVersions())
        assertTrue(store.acquire("k", "owner", 1000L))
        store.release("k", "owner")
        assertNull(store.loadVersioned("k"))
        assertEquals(CasResult.Saved(""), store.saveVersioned("k", "r1", null))
        assertEquals(VersionedRecord("r1", ""), store.loadVersioned("k"))
        assertEquals("r1", store.load("k"))
    }

    @Test fun `FileTokenStore round-trips, replaces atomically and leaves no temp files`() = blocking {
        val dir = tmp.root.toPath().resolve("tokens")
        val store = FileTokenStore(dir)
        assertNull("nothing before the first save (and no directory needed)", store.load("user/1"))
        store.save("user/1", "first")
        store.save("user/1", "second ✓")
        assertEquals("second ✓", store.load("user/1"))
        assertNull(store.load("user/2"))
        val long = "k".repeat(500)
        store.save(long, "long key")
        assertEquals("long key", store.load(long))
        val names = recordFiles(dir)
        assertEquals(setOf(FileTokenStore.fileName("user/1"), FileTokenStore.fileName(long)), names)
        val locks = Files.list(dir).use { s -> s.map { it.fileName.toString() }.toList() }.toSet() - names
        assertEquals("beside the records only each key's write lock: no temporary files left",
            setOf("user/1", long).map { store.lockFileFor(it, write = true).fileName.toString() }.toSet(), locks)
        assertEquals("x.757365722f31.lock", store.lockFileFor("user/1").fileName.toString())
        assertTrue(FileTokenStore.fileName("user/1").startsWith("x."))
        assertTrue(FileTokenStore.fileName(long).startsWith("h."))
        assertTrue(names.all { it.length <= 122 && !it.contains('/') })
        if ("posix" in dir.fileSystem.supportedFileAttributeViews()) {
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(store.fileFor("user/1"))))
        }
    }

    @Test fun `FileTokenStore failures are HostException Failed without the record`() = blocking {
        val blocker = tmp.newFile("not-a-dir").toPath()
        val store = FileTokenStore(blocker.resolve("sub"))
        try {
            store.save("k", "rt-SENTINEL")
            throw AssertionError("save succeeded")
        } catch (e: HostException.Failed) {
            assertFalse(e.message.contains("SENTINEL"))
        }
    }

    @Test fun `a session persists through FileTokenStore and a new client reads it back`() = blocking {
        val dir = tmp.root.toPath().resolve("sessions")
        val clock = FakeClock()
        fun client() = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
        val session = client().session("user@example", FileTokenStore(dir))
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        val token = session.accessToken()
        assertEquals(1L, emu.refreshRequests())

        // Another process (a new client, a new store object on the same directory).
        val again = client().session("user@example", FileTokenStore(dir))
        same(again.accessToken(), token, "the stored token is served")
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a store that fails on a read-only directory reports Storage`() = blocking {
        val blocker = tmp.newFile("file").toPath()
        val clock = FakeClock()
        val client = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
        val session = client.session("u", FileTokenStore(blocker.resolve("x")))
        val err = expectError<FreshTokenException.Storage> {
            session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        }
        assertEquals("storage", err.code)
    }

    @Test fun `a record file that is not text is a Storage error and a new link replaces it`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        Files.write(store.fileFor("u"), byteArrayOf(0xff.toByte(), 0xfe.toByte(), '{'.code.toByte(), 0x80.toByte()))
        val client = TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret"))
        expectError<FreshTokenException.Storage> { client.session("u", store).accessToken() }
        // The user links again: the compare-and-swap is over what the file holds.
        val session = client.session("u", store)
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        assertTrue(session.accessToken().isNotEmpty())
        client.close()
    }

    @Test fun `a record file that is not UTF-8 is refused by load and left as it is`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        val raw = "{\"refresh_token\":\"rt-SEN".toByteArray() + 0xff.toByte() + "TINEL\"}".toByteArray()
        Files.write(store.fileFor("u"), raw)
        val err = loadFails(store, "u")
        assertFalse("nothing of the file in the message", err.detail.contains("SEN") || err.detail.contains("TINEL"))
        assertTrue("the file is unchanged", raw.contentEquals(Files.readAllBytes(store.fileFor("u"))))
        val found = assertNotNullVersioned(store.loadVersioned("u"))
        assertEquals(FileTokenStore.NOT_UTF8_RECORD, found.record)
        assertEquals("the version of the file's bytes", sha256(raw), found.version)
        // A cut sequence, an encoded surrogate, a 5-byte form: none is UTF-8.
        for (bad in listOf(byteArrayOf(0xc3.toByte()), byteArrayOf(0xed.toByte(), 0xa0.toByte(), 0x80.toByte()),
                byteArrayOf(0xf8.toByte(), 0x88.toByte(), 0x80.toByte(), 0x80.toByte(), 0x80.toByte()))) {
            Files.write(store.fileFor("u"), byteArrayOf('{'.code.toByte()) + bad + '}'.code.toByte())
            loadFails(store, "u")
        }
        // Text is read as it is, a BOM included (freshtoken refuses that one), and versioned by its UTF-8.
        store.save("bom", "\ufeff{\"a\":\"\u00e9\"}")
        assertEquals("\ufeff{\"a\":\"\u00e9\"}", store.load("bom"))
        assertEquals(sha256(Files.readAllBytes(store.fileFor("bom"))), store.loadVersioned("bom")!!.version)
    }

    @Test fun `a refresh token that is not UTF-8 is refused, nothing is sent, and the file is kept until a re-link`() = blocking {
        // Read with replacement characters, the altered token was sent once
        // (invalid_grant) and the dead marker saved over the bytes.
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        val family = emu.seed()
        val token = family["refresh_token"] as String
        val raw = damagedRecord(token)
        Files.write(store.fileFor("u"), raw)
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            val session = client.session("u", store)
            for (call in listOf<suspend () -> Any>({ session.accessToken() }, { session.refresh() }, { session.status() })) {
                val err = expectError<FreshTokenException.Storage> { call() }
                assertFalse("nothing of the token in the message", err.message.orEmpty().contains(token.substring(4)))
            }
            assertEquals("the damaged token was never sent", 0L, emu.refreshRequests())
            assertEquals("active", emu.refreshTokenState(token))
            assertTrue("the file is byte for byte as it was", raw.contentEquals(Files.readAllBytes(store.fileFor("u"))))

            // A re-link replaces it (compare-and-swap against the bytes' version).
            val relinked = emu.seed()["refresh_token"] as String
            session.seed(SeedOptions(refreshToken = relinked))
            same(Json.obj(store.load("u")!!)["refresh_token"], relinked, "the new link is saved")
        }
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            assertTrue(client.session("u", FileTokenStore(dir)).accessToken().isNotEmpty())
        }
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
    }

    @Test fun `a record file over the cap cut inside a character reads to the last whole one`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        // 2 bytes a character: the cap + 1 ends inside one, which is left out (not refused as "not UTF-8").
        Files.write(store.fileFor("u"), "\u00e9".repeat(FileTokenStore.MAX_FILE_BYTES).toByteArray())
        assertEquals("\u00e9".repeat(FileTokenStore.MAX_FILE_BYTES / 2), store.load("u"))
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            val err = expectError<FreshTokenException.Storage> { client.session("u", store).accessToken() }
            assertTrue(err.message, err.message.orEmpty().contains("larger than"))
        }
    }

    @Test fun `a record file over the cap is read only past it, and a session refuses it as Storage`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        Files.write(store.fileFor("u"), ByteArray(3 * FileTokenStore.MAX_FILE_BYTES) { 'x'.code.toByte() })
        assertEquals(FileTokenStore.MAX_FILE_BYTES + 1, store.load("u")!!.length)
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            expectError<FreshTokenException.Storage> { client.session("u", store).accessToken() }
        }
    }

    /**
     * Makes `store`'s forces of its directory fail with an IOException saying
     * `failing()` (null: the real force runs), as a failing disk would: that
     * cannot be made real in a test. Returns a counter of the real ones.
     */
    private fun failDirectoryForces(store: FileTokenStore, failing: () -> String?): () -> Int {
        var forced = 0
        store.forceTo = { channel, file: Path ->
            if (file == store.dir) {
                failing()?.let { throw IOException(it) }
                forced++
            }
            channel.force(true)
        }
        return { forced }
    }

    private suspend fun saveFails(save: suspend () -> Unit): HostException.Failed = try {
        save()
        throw AssertionError("saved")
    } catch (e: HostException.Failed) {
        e
    }

    @Test fun `a failed force of the directory fails the save, and one the file system cannot do does not`() = blocking {
        // After the rename, a force that fails (EIO, ENOSPC) means the rename may not
        // outlive a crash, and the old record, whose refresh token is spent, come back:
        // the save fails (freshtoken keeps the record and saves it again). Java reports
        // the errno as its C library's text.
        val store = FileTokenStore(tmp.root.toPath().resolve("secret-user-tokens"))
        var failing: String? = null
        val forced = failDirectoryForces(store) { failing }
        for (reason in listOf("Input/output error", "No space left on device")) {
            failing = reason
            val e = saveFails { store.save("u1", """{"v":1}""") }
            assertEquals("cannot make the record file durable (IOException)", e.detail)
            assertFalse(e.detail, e.detail.contains("secret-user"))
            saveFails { store.saveVersioned("u-$reason", """{"v":1}""", null) }
        }
        // A file system that cannot force a directory at all: nothing to wait for.
        for (reason in listOf("Invalid argument", "Operation not supported", "Bad file descriptor")) {
            failing = reason
            store.save("u1", """{"v":"$reason"}""")
            assertEquals("""{"v":"$reason"}""", store.load("u1"))
        }
        failing = null
        store.save("u1", """{"v":"forced"}""")
        assertEquals(1, forced())
    }

    /** The directories `store` forces but its own, each with the names it held then. */
    private fun watchParentForces(
        store: FileTokenStore,
        failing: (Path) -> String? = { null },
    ): MutableList<Pair<Path, List<String>>> {
        val forced = mutableListOf<Pair<Path, List<String>>>()
        store.forceTo = { channel, file: Path ->
            if (Files.isDirectory(file) && file != store.dir) {
                failing(file)?.let { throw IOException(it) }
                forced += file to Files.list(file).use { names -> names.map { it.fileName.toString() }.sorted().toList() }
            }
            channel.force(true)
        }
        return forced
    }

    @Test fun `a save that creates the directory forces the parent of each level it created, once they exist`() = blocking {
        // Forcing the directory makes its files durable, not its own entry: a power
        // loss could drop a directory just made, and the first record saved in it.
        val root = tmp.root.toPath()
        val dir = root.resolve("a").resolve("b").resolve("tokens")
        val store = FileTokenStore(dir)
        val forced = watchParentForces(store)
        store.save("u1", """{"v":1}""")
        assertEquals(
            setOf(root to listOf("a"), root.resolve("a") to listOf("b"), root.resolve("a").resolve("b") to listOf("tokens")),
            forced.toSet(),
        )
        assertEquals(3, forced.size)
        // It exists now: nothing more to force.
        forced.clear()
        store.save("u1", """{"v":2}""")
        store.saveVersioned("u2", """{"v":1}""", null)
        assertEquals(emptyList<Pair<Path, List<String>>>(), forced)
    }

    @Test fun `a save into a directory another store is still creating forces its parent too`() =
        saveDuringCreation(throughLink = false)

    @Test fun `a save into a directory another store is still creating, named through a link, forces its parent too`() =
        saveDuringCreation(throughLink = true)

    /**
     * The other store made the directory and has not forced it into its parent
     * yet: this save, finding it there, would report a record durable whose
     * directory is not.
     */
    private fun saveDuringCreation(throughLink: Boolean) = blocking {
        val root = tmp.root.toPath()
        val dir = root.resolve("new").resolve("tokens")
        val link = Files.createSymbolicLink(root.resolve("link"), root)
        val creator = FileTokenStore(dir)
        val other = FileTokenStore(if (throughLink) link.resolve("new").resolve("tokens") else dir)
        val othersForces = watchParentForces(other)
        var during: List<Pair<Path, List<String>>>? = null
        creator.forceTo = { channel, file ->
            if (file == root && during == null) {
                kotlinx.coroutines.runBlocking { other.save("u2", """{"v":2}""") }
                during = othersForces.toList()
            }
            channel.force(true)
        }
        creator.save("u1", """{"v":1}""")
        assertEquals("the parent of the level still unforced", listOf(root to listOf("link", "new")), during)
        othersForces.clear()
        other.save("u2", """{"v":3}""")
        assertEquals("forced once: no more", emptyList<Pair<Path, List<String>>>(), othersForces)
    }

    @Test fun `a parent's failed force fails the save and undoes its creation, one the platform cannot do does not`() = blocking {
        val root = tmp.root.toPath()
        val store = FileTokenStore(root.resolve("a").resolve("tokens"))
        var failing: String? = "Input/output error"
        val forced = watchParentForces(store) { if (it == root) failing else null }
        val e = saveFails { store.save("u1", """{"v":1}""") }
        assertEquals("cannot make the record directory durable (IOException)", e.detail)
        val left = Files.list(root).use { it.toList() }
        assertEquals("removed, so that the retry creates and forces it again", emptyList<Path>(), left)
        failing = null
        forced.clear()
        store.save("u1", """{"v":1}""")
        assertTrue(forced.toString(), root to listOf("a") in forced)
        assertEquals("""{"v":1}""", store.load("u1"))
        for (reason in listOf("Invalid argument", "Operation not supported")) {
            failing = reason
            val other = FileTokenStore(root.resolve(reason.replace(' ', '-')))
            watchParentForces(other) { if (it == root) failing else null }
            other.save("u1", """{"v":1}""")
            assertEquals("""{"v":1}""", other.load("u1"))
        }
    }

    @Test fun `a parent's failed force removes only the levels this store created, never another process's`() = blocking {
        // Another process that creates a level after this store found it missing,
        // before this store creates it, owns it (and may be using it).
        val root = tmp.root.toPath()
        val theirs = root.resolve("a").resolve("b")
        val store = FileTokenStore(theirs.resolve("tokens"))
        watchParentForces(store) { if (it == root) "Input/output error" else null }
        store.creating = { if (it.startsWith(theirs) && Files.notExists(theirs)) Files.createDirectories(theirs) }
        val e = saveFails { store.save("u1", """{"v":1}""") }
        assertEquals("cannot make the record directory durable (IOException)", e.detail)
        assertTrue("the other process's level is left", Files.isDirectory(theirs))
        assertFalse("this store's is removed", Files.exists(theirs.resolve("tokens")))
    }

    @Test fun `a compare-and-swap that finds its own unforced record forces the directory before answering`() = blocking {
        // A save whose directory force failed left its record renamed into place;
        // freshtoken saves it again with the version it had, finds the stored record
        // moved on to exactly the one it saves (a conflict) and takes it as saved:
        // the store makes the rename durable before that answer, or fails again.
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        var failing: String? = "Input/output error"
        val forced = failDirectoryForces(store) { failing }
        saveFails { store.saveVersioned("u1", """{"v":1}""", null) }
        assertEquals("renamed, not durable", """{"v":1}""", store.load("u1"))
        saveFails { store.saveVersioned("u1", """{"v":1}""", null) } // still failing: not a conflict
        failing = null
        assertEquals(CasResult.Conflict, store.saveVersioned("u1", """{"v":1}""", null))
        assertEquals("the rename made durable", 1, forced())
        // Another record is a conflict as before, with nothing to force.
        assertEquals(CasResult.Conflict, store.saveVersioned("u1", """{"v":2}""", null))
        assertEquals(1, forced())
    }

    private suspend fun loadFails(store: FileTokenStore, key: String): HostException.Failed = try {
        store.load(key)
        throw AssertionError("loaded")
    } catch (e: HostException.Failed) {
        assertTrue(e.detail, e.detail.contains("not UTF-8"))
        e
    }

    private fun assertNotNullVersioned(found: VersionedRecord?): VersionedRecord {
        assertNotNull("a file is there", found)
        return found!!
    }
}

/** A record file whose refresh token has one byte that is not UTF-8. */
internal fun damagedRecord(refreshToken: String): ByteArray {
    val token = refreshToken.toByteArray()
    token[3] = 0xff.toByte()
    return "{\"schema\":\"freshtoken.record/1\",\"refresh_token\":\"".toByteArray() + token +
        "\",\"updated_at\":1}".toByteArray()
}

internal fun sha256(bytes: ByteArray): String =
    MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }
