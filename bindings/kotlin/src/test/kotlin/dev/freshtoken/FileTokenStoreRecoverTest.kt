package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.childJvm
import dev.freshtoken.support.killedSave
import dev.freshtoken.support.legacyKilledSave
import dev.freshtoken.support.same
import dev.freshtoken.support.tempFile
import dev.freshtoken.support.writeForced
import java.io.File
import java.io.IOException
import java.nio.file.Files
import java.nio.file.LinkOption
import java.nio.file.Path
import java.nio.file.StandardCopyOption
import java.nio.file.StandardWatchEventKinds
import java.nio.file.attribute.FileTime
import java.nio.file.attribute.PosixFilePermissions
import java.util.UUID
import java.util.concurrent.Future
import java.util.concurrent.TimeUnit
import org.junit.AfterClass
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * [FileTokenStore.recover]: a save killed between forcing its temporary
 * file and renaming it left the rotated record only in that file; recover()
 * finishes it (or removes what is stale or cut off), holding the key's write
 * lock. The killed saves are made as [FileTokenStore]'s own save leaves
 * them (support/KilledSave.kt): `.<name>.json.tmp`, written and forced,
 * never renamed (earlier versions': `.<name>.json.<uuid>.tmp`); the
 * end-to-end test kills a child JVM there. Modification times are set
 * explicitly; the waits (for the write lock, for a save's file events) are
 * on Linux's lock table and on inotify, never on time. A process already
 * running (which never runs recover() again) finishes a killed save of a
 * key when it loads that key, under the key's write lock: a live writer's
 * temporary file is waited for, never taken.
 */
class FileTokenStoreRecoverTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** The names of the temporary files in `dir` (any writer's). */
        fun temps(dir: Path): Set<String> = Files.list(dir).use { s ->
            s.map { it.fileName.toString() }.filter { it.endsWith(".tmp") || it.startsWith(".tmp-") }.toList()
        }.toSet()
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() { emu.reset() }

    private val base = System.currentTimeMillis() / 1000 * 1000 - 3_600_000

    /** The text of `key`'s record file, read directly (a load would first finish a killed save of it). */
    private fun onDisk(store: FileTokenStore, key: String = "u1"): String =
        Files.readAllBytes(store.fileFor(key)).toString(Charsets.UTF_8)

    /** The detail of the [HostException.Failed] that `store.load(key)` throws (it must throw). */
    private suspend fun loadFailure(store: FileTokenStore, key: String = "u1"): String? = try {
        store.load(key)
        null
    } catch (e: HostException.Failed) {
        e.detail
    }

    /** `key`'s record file holds `record`, modified at [base]. */
    private suspend fun saved(store: FileTokenStore, key: String, record: String) {
        store.save(key, record)
        Files.setLastModifiedTime(store.fileFor(key), FileTime.fromMillis(base))
    }

    @Test fun `a save killed before its rename is finished, and load returns the new record`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        val long = "k".repeat(500) // an h.<sha256> name
        for (key in listOf("u1", long)) {
            saved(store, key, """{"refresh_token":"rt-old","in_doubt":true}""")
            killedSave(store.dir, key, """{"refresh_token":"rt-rotated"}""", base + 1000)
        }
        assertEquals(RecoverResult(completed = 2, removed = 0), store.recover())
        for (key in listOf("u1", long)) {
            assertEquals("""{"refresh_token":"rt-rotated"}""", store.load(key))
        }
        assertEquals("no temporary file left", emptySet<String>(), temps(store.dir))
        assertEquals("nothing left to do", RecoverResult(0, 0), store.recoverBlocking())
    }

    @Test fun `recover forces a killed save's temporary file to disk before renaming it`() = blocking {
        // A save killed between its write and its force leaves a whole record in the page
        // cache only: renamed as it is, a power loss could leave the record file empty.
        // (The forces are watched, not faked: what reached the disk cannot be seen from here.)
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        val temp = killedSave(store.dir, "u1", """{"v":2}""", base + 1000)
        val forces = mutableListOf<String>()
        store.forceTo = { channel, file ->
            val record = String(Files.readAllBytes(store.fileFor("u1")))
            forces += "${file.fileName}: the record file holds $record"
            channel.force(true)
        }
        assertEquals(RecoverResult(completed = 1, removed = 0), store.recover())
        assertEquals(
            listOf("${temp.fileName}: the record file holds {\"v\":1}", "tokens: the record file holds {\"v\":2}"),
            forces,
        )
        assertEquals("""{"v":2}""", store.load("u1"))
    }

    @Test fun `a killed save's temporary file that cannot be forced is left for a later recover`() = blocking {
        // Its force failing (injected: a failing disk cannot be made real), the
        // temporary file is neither renamed nor removed, and the failure is thrown.
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        val temp = killedSave(store.dir, "u1", """{"v":2}""", base + 1000)
        store.forceTo = { channel, file ->
            if (file == temp) throw IOException("Input/output error")
            channel.force(true)
        }
        val failure = try {
            store.recover()
            null
        } catch (e: HostException.Failed) {
            e
        }
        assertEquals("cannot finish an interrupted save (IOException)", failure?.detail)
        assertEquals("a load fails too: the marker is never read", "cannot finish an interrupted save (IOException)", loadFailure(store))
        assertEquals("""{"v":1}""", onDisk(store))
        assertTrue("left for a later recover()", Files.exists(temp))
        store.forceTo = { channel, _ -> channel.force(true) }
        assertEquals(RecoverResult(completed = 1, removed = 0), store.recover())
        assertEquals("""{"v":2}""", store.load("u1"))
    }

    @Test fun `a save after a killed one replaces its temporary file, so recover never brings the spent refresh token back`() = blocking {
        val dir = tmp.root.toPath().resolve("tokens")
        val store = FileTokenStore(dir)
        val spent = """{"refresh_token":"rt-1","in_doubt":true}"""
        val rotated = """{"refresh_token":"rt-2"}"""
        for ((key, legacy) in listOf("u1" to false, "u2" to true)) {
            store.save(key, """{"refresh_token":"rt-1"}""")
            // A: killed in its save of the write-ahead marker, which holds the spent refresh token.
            val a = if (legacy) legacyKilledSave(dir, key, spent, base) else killedSave(dir, key, spent, base)
            // B: a later save by another process (a new store: it reads the directory first) succeeds.
            FileTokenStore(dir).save(key, rotated)
            assertFalse("B removed A's temporary file (legacy: $legacy)", Files.exists(a, LinkOption.NOFOLLOW_LINKS))
            assertEquals(emptySet<String>(), temps(dir))
            // A coarse or stepped-back clock: B's record file as new as A's file, or older.
            for (modified in listOf(base, base - 60_000)) {
                Files.setLastModifiedTime(store.fileFor(key), FileTime.fromMillis(modified))
                assertEquals(RecoverResult(0, 0), store.recover())
                assertEquals("B's record, with the rotated refresh token", rotated, store.load(key))
            }
        }
    }

    @Test fun `a killed save's temporary file is finished whatever the times - older than the record file, as new, or with no record file`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        saved(store, "u2", """{"v":1}""")
        killedSave(store.dir, "u1", """{"v":2}""", base - 60_000) // older: a clock stepped back
        killedSave(store.dir, "u2", """{"v":2}""", base) // the same time: a coarse clock
        killedSave(store.dir, "u3", """{"v":2}""") // killed during the first save of u3
        assertEquals(RecoverResult(completed = 3, removed = 0), store.recover())
        for (key in listOf("u1", "u2", "u3")) assertEquals(key, """{"v":2}""", store.load(key))
        assertEquals(emptySet<String>(), temps(store.dir))
    }

    @Test fun `a cut-off, zeroed or empty temporary file is removed and the record file kept`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        val record = """{"refresh_token":"rt-old","access_token":"at","expires_at_ms":1}"""
        val rotated = """{"refresh_token":"rt-rotated","access_token":"at2","scope":["a",{"b":[1.5e3,-0,true,null]}]}"""
        for (key in listOf("u1", "u2", "u3")) saved(store, key, record)
        killedSave(store.dir, "u1", rotated.dropLast(1), base + 1000) // the last byte never written
        writeForced(tempFile(store.dir, "u2"), ByteArray(rotated.length), base + 1000) // never forced: zeroes
        writeForced(tempFile(store.dir, "u3"), ByteArray(0), base + 1000)
        assertEquals(RecoverResult(completed = 0, removed = 3), store.recover())
        for (key in listOf("u1", "u2", "u3")) assertEquals(key, record, store.load(key))
        assertEquals(emptySet<String>(), temps(store.dir))

        // A write cut off anywhere is not a whole record; the whole one is.
        val bytes = rotated.toByteArray()
        for (n in 0 until bytes.size) assertFalse("cut after $n bytes", isWholeRecordFile(bytes.copyOf(n)))
        assertTrue(isWholeRecordFile(bytes))
        assertTrue(isWholeRecordFile(" {\"a\":\"\\u00e9\\n\"}\n".toByteArray()))
        for (bad in listOf("[]", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":\"\u0000\"}", "{} {}", "{\"a\":tru}")) {
            assertFalse(bad, isWholeRecordFile(bad.toByteArray()))
        }
        assertFalse("no stack overflow", isWholeRecordFile(("{\"a\":" + "[".repeat(1_000_000)).toByteArray()))
    }

    @Test fun `a save writes its record to the fixed temporary file, 0600, and renames it`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        val created = mutableListOf<String>()
        dir.fileSystem.newWatchService().use { watcher ->
            dir.register(watcher, StandardWatchEventKinds.ENTRY_CREATE)
            store.save("u1", """{"v":1}""")
            // Until the rename shows (inotify keeps the events in order; waits on them, not on time).
            val record = FileTokenStore.fileName("u1")
            while (record !in created) {
                val key = watcher.poll(30, TimeUnit.SECONDS)
                assertTrue("the save's file events", key != null)
                key!!.pollEvents().mapNotNullTo(created) { (it.context() as? Path)?.toString() }
                key.reset()
            }
        }
        assertEquals("the one temporary file the save wrote", listOf(".x.7531.json.tmp"), created.filter { it.endsWith(".tmp") })
        assertTrue("written before the rename", created.indexOf(".x.7531.json.tmp") < created.indexOf("x.7531.json"))
        assertEquals(emptySet<String>(), temps(dir))
        assertEquals("""{"v":1}""", store.load("u1"))
        if ("posix" in dir.fileSystem.supportedFileAttributeViews()) {
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(store.fileFor("u1"))))
        }
    }

    @Test fun `a link planted at the temporary file's name is removed, never written through`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val store = FileTokenStore(dir)
        val outside = tmp.newFile("outside.json").toPath()
        Files.write(outside, """{"refresh_token":"not yours"}""".toByteArray())
        val missing = tmp.root.toPath().resolve("never-made.json")
        val links = listOf(
            Files.createSymbolicLink(tempFile(dir, "u1"), outside),
            Files.createSymbolicLink(tempFile(dir, "u2"), missing), // dangling
        )
        assertEquals("recover() reads no link either", RecoverResult(0, 0), store.recover())
        for (key in listOf("u1", "u2")) store.save(key, """{"v":1}""")
        for (link in links) assertFalse("the link itself removed", Files.exists(link, LinkOption.NOFOLLOW_LINKS))
        assertArrayEquals("its target unchanged", """{"refresh_token":"not yours"}""".toByteArray(), Files.readAllBytes(outside))
        assertFalse("nothing created through the dangling one", Files.exists(missing, LinkOption.NOFOLLOW_LINKS))
        for (key in listOf("u1", "u2")) {
            assertTrue(Files.isRegularFile(store.fileFor(key), LinkOption.NOFOLLOW_LINKS))
            assertEquals("""{"v":1}""", store.load(key))
        }
        assertEquals(emptySet<String>(), temps(dir))
    }

    @Test fun `an earlier version's temporary file as new as the record file, or with no record file, is finished`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        legacyKilledSave(store.dir, "u1", """{"v":2}""", base) // the same time
        legacyKilledSave(store.dir, "u2", """{"v":2}""") // killed during the first save of u2
        assertEquals(RecoverResult(2, 0), store.recover())
        assertEquals("""{"v":2}""", store.load("u1"))
        assertEquals("""{"v":2}""", store.load("u2"))
        assertEquals(emptySet<String>(), temps(store.dir))
    }

    @Test fun `an earlier version's temporary file older than the record file is removed, not renamed`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"refresh_token":"rt-newer"}""")
        legacyKilledSave(store.dir, "u1", """{"refresh_token":"rt-stale"}""", base - 1000)
        assertEquals(RecoverResult(completed = 0, removed = 1), store.recover())
        assertEquals("a later save finished after it: kept", """{"refresh_token":"rt-newer"}""", store.load("u1"))
        assertEquals(emptySet<String>(), temps(store.dir))
    }

    @Test fun `of several earlier version's temporary files the newest whole one at least as new as the record file is finished`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        legacyKilledSave(store.dir, "u1", """{"v":0}""", base - 1000) // older than the record file
        legacyKilledSave(store.dir, "u1", """{"v":2}""", base + 1000)
        legacyKilledSave(store.dir, "u1", """{"v":3}""", base + 2000) // the one to finish
        legacyKilledSave(store.dir, "u1", """{"v":4""", base + 3000) // cut off
        writeForced(store.dir.resolve(".${FileTokenStore.fileName("u1")}.${UUID.randomUUID()}.tmp"), ByteArray(7), base + 4000)
        writeForced(store.dir.resolve(".${FileTokenStore.fileName("u1")}.${UUID.randomUUID()}.tmp"), ByteArray(0), base + 5000)
        assertEquals(RecoverResult(completed = 1, removed = 5), store.recover())
        assertEquals("""{"v":3}""", store.load("u1"))
        assertEquals(emptySet<String>(), temps(store.dir))
    }

    @Test fun `earlier version's temporary files beside a fixed one are removed, whatever the times`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        saved(store, "u2", """{"v":1}""")
        killedSave(store.dir, "u1", """{"v":3}""", base - 5000) // written after every save of u1
        legacyKilledSave(store.dir, "u1", """{"v":2}""", base + 5000) // before the upgrade, however its time reads
        killedSave(store.dir, "u2", """{"v":3""", base - 5000) // cut off: the record file stays
        legacyKilledSave(store.dir, "u2", """{"v":2}""", base + 5000)
        assertEquals(RecoverResult(completed = 1, removed = 3), store.recover())
        assertEquals("""{"v":3}""", store.load("u1"))
        assertEquals("""{"v":1}""", store.load("u2"))
        assertEquals(emptySet<String>(), temps(store.dir))
    }

    @Test fun `other writers' temporary files are left alone`() = blocking {
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        val name = FileTokenStore.fileName("u1")
        val others = listOf(
            "$name.4242.0123456789ab.tmp", // the JavaScript FileStore's and the command's
            ".tmp-k3j4h5g6.json", // the Python store's
            ".lock-probe.4242.0123456789ab.tmp", // the command's lock probe
            ".k-dTE.${UUID.randomUUID()}.tmp", // not one of today's record names
            ".$name.not-a-uuid.tmp",
            ".k-dTE.tmp", // nor is this
            "$name.tmp", // no leading dot
        )
        for (other in others) writeForced(store.dir.resolve(other), """{"v":9}""".toByteArray(), base + 1000)
        killedSave(store.dir, "u2", """{"v":2}""") // this store's own: finished
        assertEquals(RecoverResult(completed = 1, removed = 0), store.recover())
        assertEquals(others.toSet(), temps(store.dir))
        for (other in others) assertArrayEquals(other, """{"v":9}""".toByteArray(), Files.readAllBytes(store.dir.resolve(other)))
        assertEquals("""{"v":1}""", store.load("u1"))
        assertEquals("""{"v":2}""", store.load("u2"))
    }

    @Test fun `a missing directory recovers nothing, and one that cannot be listed is a Failed naming no file`() = blocking {
        val missing = tmp.root.toPath().resolve("never-made")
        assertEquals(RecoverResult(0, 0), FileTokenStore(missing).recover())
        assertFalse("not created", Files.exists(missing))

        val notADirectory = tmp.newFile("x.7531.json").toPath()
        val failure = try {
            FileTokenStore(notADirectory).recover()
            null
        } catch (e: HostException.Failed) {
            e
        }
        assertTrue("a HostException.Failed", failure != null)
        val detail = failure!!.detail
        assertTrue(detail, detail.startsWith("cannot list the record directory"))
        assertFalse(detail, detail.contains(tmp.root.path) || detail.contains("x.7531"))
    }

    /**
     * Until Linux's lock table shows this JVM waiting for the lock that
     * `holder` holds (polled: the wait ends when it shows, never after a
     * set time); fails at once if `pending` ends first.
     */
    private fun waitUntilWaitingFor(holder: Process, pending: Future<*>) {
        val mine = ProcessHandle.current().pid().toString()
        val theirs = holder.pid().toString()
        val limit = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
        while (true) {
            val table = File("/proc/locks").readLines().map { it.trim().split(Regex("\\s+")) }
            // "<n>: POSIX ADVISORY WRITE <pid> <dev:inode> …", a waiter "<n>: -> POSIX … <pid> <dev:inode> …"
            val held = table.filter { it.getOrNull(1) != "->" && it.getOrNull(4) == theirs }.mapNotNull { it.getOrNull(5) }
            if (table.any { it.getOrNull(1) == "->" && it.getOrNull(5) == mine && it.getOrNull(6) in held }) return
            assertFalse("ended instead of waiting for the write lock", pending.isDone)
            assertTrue("never waited for the write lock", System.nanoTime() < limit)
            Thread.onSpinWait()
        }
    }

    @Test fun `recover waits for a save in progress, holding the key's write lock`() = blocking {
        assumeTrue("reads Linux's lock table", File("/proc/locks").exists())
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", """{"v":1}""")
        killedSave(store.dir, "u1", """{"v":2}""", base + 1000)
        // Another process's save of u1 holds its write lock.
        val holder = childJvm("dev.freshtoken.support.LockHolderKt", store.lockFileFor("u1", write = true).toString())
        try {
            val lines = holder.inputStream.bufferedReader()
            assertEquals("locked", lines.readLine())
            val pending = store.recoverAsync()
            waitUntilWaitingFor(holder, pending)
            assertFalse(pending.isDone)
            assertEquals("nothing renamed while the lock is held", """{"v":1}""", onDisk(store))
            assertEquals(1, temps(store.dir).size)

            holder.outputStream.write("\n".toByteArray())
            holder.outputStream.flush()
            assertEquals(RecoverResult(completed = 1, removed = 0), pending.get(30, TimeUnit.SECONDS))
            assertEquals("""{"v":2}""", store.load("u1"))
            assertTrue(holder.waitFor(30, TimeUnit.SECONDS))
        } finally {
            holder.destroyForcibly()
        }
    }

    // ---- A load finishes a dead writer's save of its key ----
    //
    // A process already running (one of several JVMs on a directory, started
    // before another was killed at its rename) never runs recover() again.
    // Its loads of a key look for that key's temporary file and, under the
    // key's write lock, do what recover() does for it: the marker (the spent
    // refresh token) in the record file is never read while the rotated
    // record waits in the temporary file.

    private val marker = """{"refresh_token":"rt-old","in_doubt":true}"""
    private val rotated = """{"refresh_token":"rt-rotated"}"""

    /**
     * What a save killed between its force and its rename leaves, written with
     * plain file writes (no lock): the record file holds `record` (the
     * write-ahead marker), `.<name>.json.tmp` holds `temp`. Returns a new
     * store on the directory (one that never ran recover()).
     */
    private fun killedSaveOnDisk(record: String = marker, temp: String = rotated): FileTokenStore {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        Files.write(dir.resolve(FileTokenStore.fileName("u1")), record.toByteArray())
        Files.write(tempFile(dir, "u1"), temp.toByteArray())
        return FileTokenStore(dir)
    }

    private fun sha256(text: String): String =
        java.security.MessageDigest.getInstance("SHA-256").digest(text.toByteArray()).joinToString("") { "%02x".format(it) }

    @Test fun `a load finishes a killed save of its key without recover`() = blocking {
        val forced = mutableListOf<String>()
        for (versioned in listOf(false, true)) {
            tmp.root.toPath().resolve("tokens").toFile().deleteRecursively()
            val store = killedSaveOnDisk()
            store.forceTo = { channel, file -> forced += file.fileName.toString(); channel.force(true) }
            if (versioned) {
                val found = store.loadVersioned("u1")
                assertEquals(rotated, found?.record)
                assertEquals(sha256(rotated), found?.version)
            } else {
                assertEquals("the rotated record, not the marker", rotated, store.load("u1"))
            }
            assertFalse(Files.exists(tempFile(store.dir, "u1"), LinkOption.NOFOLLOW_LINKS))
            assertEquals(rotated, onDisk(store))
            assertEquals("the temporary file forced, renamed, then the directory forced",
                listOf(tempFile(store.dir, "u1").fileName.toString(), "tokens"), forced)
            forced.clear()
            assertEquals("nothing left for recover()", RecoverResult(0, 0), store.recover())
        }
    }

    @Test fun `a load removes a cut-off temporary file and reads the record file`() = blocking {
        val store = killedSaveOnDisk(temp = rotated.dropLast(1))
        assertEquals(marker, store.load("u1"))
        assertEquals(emptySet<String>(), temps(store.dir))
        assertEquals(marker, onDisk(store))
    }

    @Test fun `a compare-and-swap finishes a killed save first and conflicts`() = blocking {
        // saveVersioned reads holding the write lock (and does not take it again): a dead
        // writer's newer record is finished, so a write based on the marker is a
        // conflict, never an overwrite that removes the temporary file as superseded.
        val store = killedSaveOnDisk()
        val other = """{"refresh_token":"rt-other"}"""
        assertEquals(CasResult.Conflict, store.saveVersioned("u1", other, sha256(marker)))
        assertEquals(rotated, onDisk(store))
        assertEquals(emptySet<String>(), temps(store.dir))
        assertEquals(CasResult.Saved(sha256(other)), store.saveVersioned("u1", other, sha256(rotated)))
    }

    @Test fun `a load waits for a live writer holding the key's write lock, and reads its save`() = blocking {
        assumeTrue("reads Linux's lock table", File("/proc/locks").exists())
        val store = FileTokenStore(tmp.root.toPath().resolve("tokens"))
        saved(store, "u1", marker)
        // Another process's save of u1: it holds the write lock, its temporary file half written.
        val holder = childJvm("dev.freshtoken.support.LockHolderKt", store.lockFileFor("u1", write = true).toString())
        try {
            assertEquals("locked", holder.inputStream.bufferedReader().readLine())
            val temp = killedSave(store.dir, "u1", rotated.dropLast(1))
            val pending = future { store.load("u1") }
            waitUntilWaitingFor(holder, pending)
            assertTrue("its temporary file neither removed nor renamed", Files.exists(temp))
            assertEquals(marker, onDisk(store))

            // The writer finishes: the rest of its record, its rename, then the lock given back.
            Files.write(temp, rotated.toByteArray())
            Files.move(temp, store.fileFor("u1"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
            holder.outputStream.write("\n".toByteArray())
            holder.outputStream.flush()
            assertEquals(rotated, pending.get(30, TimeUnit.SECONDS))
            assertTrue(holder.waitFor(30, TimeUnit.SECONDS))
        } finally {
            holder.destroyForcibly()
        }
    }

    private fun client() = TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret"))

    @Test fun `after a killed save the next start refreshes with the rotated refresh token`() =
        afterAKilledSave(recoverFirst = true)

    /** A process already running never runs recover() again: its load finishes the killed save. */
    @Test fun `after a killed save a process that never runs recover uses the rotated refresh token`() =
        afterAKilledSave(recoverFirst = false)

    private fun afterAKilledSave(recoverFirst: Boolean) {
        val dir = tmp.root.toPath().resolve("tokens")
        val seeded = emu.seed()["refresh_token"] as String
        // The first run links u1, refreshes, and is killed in its save of the rotated record.
        val first = childJvm("dev.freshtoken.support.KilledSaveKt", emu.tokenEndpoint, dir.toString(), seeded)
        try {
            assertEquals("killed", first.inputStream.bufferedReader().readLine())
        } finally {
            first.destroyForcibly()
        }
        assertTrue(first.waitFor(30, TimeUnit.SECONDS))
        val store = FileTokenStore(dir)
        val marker = Json.obj(Files.readAllBytes(store.fileFor("u1")).toString(Charsets.UTF_8))
        assertEquals("the record file holds the write-ahead marker", true, marker["in_doubt"])
        same(marker["refresh_token"], seeded, "and the spent refresh token")
        val temp = temps(dir).single()
        assertEquals("the fixed name", tempFile(dir, "u1").fileName.toString(), temp)
        val rotated = Json.obj(Files.readAllBytes(dir.resolve(temp)).toString(Charsets.UTF_8))
        assertEquals("consumed", emu.refreshTokenState(seeded))
        assertEquals("active", emu.refreshTokenState(rotated["refresh_token"] as String))

        // The next start: recover() first, then sessions (or sessions alone: a process started before the kill).
        if (recoverFirst) assertEquals(RecoverResult(completed = 1, removed = 0), store.recoverBlocking())
        val before = emu.refreshRequests()
        client().use { next ->
            same(next.session("u1", store).accessTokenBlocking(), rotated["access_token"], "the rotated access token, from the file")
            assertEquals("nothing sent for it", before, emu.refreshRequests())
            next.session("u1", store).refreshBlocking()
        }
        assertEquals("one refresh", before + 1, emu.refreshRequests())
        assertEquals("it sent the rotated refresh token", "consumed", emu.refreshTokenState(rotated["refresh_token"] as String))
        val stored = Json.obj(Files.readAllBytes(store.fileFor("u1")).toString(Charsets.UTF_8))
        assertEquals("the grant lives on (a reused token would have revoked it)", "active", emu.refreshTokenState(stored["refresh_token"] as String))
        assertEquals(emptySet<String>(), temps(dir))
    }
}
