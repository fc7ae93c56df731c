package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.blocking
import dev.freshtoken.support.recordFiles
import dev.freshtoken.support.same
import java.nio.file.Files
import java.security.MessageDigest
import java.util.Base64
import java.util.Locale
import kotlin.random.Random
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * FileTokenStore's file names are safe on case-insensitive file systems and
 * the same as the Python and JavaScript stores'; records written under the
 * old (base64url) names are still read, under their exact listed name only,
 * and then moved. Issue 11, item 9.
 */
class FileTokenStoreNamesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** The names as a case-insensitive file system compares them. */
        fun folded(name: String) = name.uppercase(Locale.ROOT).lowercase(Locale.ROOT)

        /**
         * Distinct keys, many of them alike: every case variant of short
         * words, keys that differ in one letter's case or in one letter,
         * random mixed-case ASCII and non-ASCII keys of every length up to
         * and past the hashing threshold.
         */
        fun generatedKeys(): Set<String> {
            val keys = LinkedHashSet<String>()
            for (word in listOf("john", "jobn", "alice", "user1", "ab", "q")) {
                for (mask in 0 until (1 shl word.length)) {
                    keys += word.mapIndexed { i, c -> if (mask and (1 shl i) != 0) c.uppercaseChar() else c }.joinToString("")
                }
            }
            keys += listOf("JoHn", "Jobn", "", "x\u00e9", "X\u00c9", "\u00df", "SS", "ss", "\u0130", "i\u0307", "k".repeat(60), "k".repeat(61))
            val random = Random(11)
            val alphabet = ('a'..'z') + ('A'..'Z') + ('0'..'9') + listOf('-', '_', '.', '/', '@', ':', 'é', 'É', 'ß', 'Σ', 'σ', 'ς', '日')
            while (keys.size < 200_000) {
                val length = 1 + random.nextInt(if (random.nextInt(10) == 0) 120 else 24)
                keys += String(CharArray(length) { alphabet[random.nextInt(alphabet.size)] })
            }
            return keys
        }
    }

    @get:Rule val tmp = TemporaryFolder()

    @Before fun setUp() { emu.reset() }

    @Test fun `no two of 200,000 generated keys get names equal under case folding`() {
        val keys = generatedKeys()
        val byFolded = HashMap<String, String>()
        val shape = Regex("(x\\.([0-9a-f]{2}){0,60}|h\\.[0-9a-f]{64})\\.json")
        for (key in keys) {
            val name = FileTokenStore.fileName(key)
            assertTrue("x. + hex or h. + SHA-256 hex, lowercase: $name", name.matches(shape))
            val clash = byFolded.put(folded(name), key)
            assertNull("two keys share the name $name under case folding", clash)
        }
        assertEquals(keys.size, byFolded.size)
    }

    @Test fun `the old names did clash under case folding (this test's keys can find it)`() {
        val old = generatedKeys().map { folded(FileTokenStore.legacyFileName(it)) }
        assertNotEquals(old.size, old.toSet().size)
        assertEquals(folded(FileTokenStore.legacyFileName("JoHn")), folded(FileTokenStore.legacyFileName("Jobn")))
    }

    @Test fun `names are x dot hex of the UTF-8, or h dot sha-256 hex past 60 bytes`() {
        assertEquals("x..json", FileTokenStore.fileName(""))
        assertEquals("x.2f2e2e.json", FileTokenStore.fileName("/.."))
        for (key in listOf("k".repeat(60), "\u00e9".repeat(30), "\u65e5".repeat(20))) {
            assertEquals("x." + hex(key.toByteArray()) + ".json", FileTokenStore.fileName(key))
        }
        for (key in listOf("k".repeat(61), "\u00e9".repeat(31), "\u65e5".repeat(21), "k".repeat(5000))) {
            val digest = MessageDigest.getInstance("SHA-256").digest(key.toByteArray())
            assertEquals("h." + hex(digest) + ".json", FileTokenStore.fileName(key))
        }
    }

    @Test fun `a key with a lone surrogate has no name`() {
        for (key in listOf("x\uD800", "x\uDBFF", "\uDC00")) {
            assertThrows(IllegalArgumentException::class.java) { FileTokenStore.fileName(key) }
        }
        assertEquals("a pair is one code point", "x.f09f9491.json", FileTokenStore.fileName("\uD83D\uDD11"))
    }

    @Test fun `names equal the Python and JavaScript file stores' names`() {
        // The same table as bindings/python/tests/test_stores.py and
        // bindings/js/test/stores.file-names.test.mjs: a directory written
        // by one of the three stores is read by the others.
        val pinned = listOf(
            "a" to "x.61.json",
            "JoHn" to "x.4a6f486e.json",
            "user@example" to "x.75736572406578616d706c65.json",
            "x\u00e9\u65e5" to "x.78c3a9e697a5.json",
            "\uD83D\uDD11" to "x.f09f9491.json",
            "k".repeat(60) to "x." + "6b".repeat(60) + ".json",
            "k".repeat(61) to "h.3828098da5bc4c86c0488c22281c78f5e6c9d9699fa18cafa31a825452859529.json",
            "\u00e9".repeat(30) to "x." + "c3a9".repeat(30) + ".json",
            "\u00e9".repeat(31) to "h.f299f682f8ab27d5a1e24784fb220657d1d4c52e07988895131dbc1eae0e2e55.json",
        )
        for ((key, name) in pinned) assertEquals(key, name, FileTokenStore.fileName(key))
    }

    private fun hex(bytes: ByteArray) = bytes.joinToString("") { "%02x".format(it) }

    /** What the previous version wrote (computed here, independently of the store). */
    private fun oldName(key: String): String {
        val b64 = Base64.getUrlEncoder().withoutPadding()
        val plain = "k-" + b64.encodeToString(key.toByteArray())
        return if (plain.length <= 120) plain
        else "h-" + b64.encodeToString(MessageDigest.getInstance("SHA-256").digest(key.toByteArray()))
    }

    @Test fun `a record under its old name is read, and moved to the new name by the next save`() = blocking {
        val dir = tmp.root.toPath().resolve("tokens")
        Files.createDirectories(dir)
        val long = "user-".repeat(30)
        for (key in listOf("JoHn", long)) {
            assertEquals(oldName(key), FileTokenStore.legacyFileName(key))
            Files.write(dir.resolve(oldName(key)), "old record of $key".toByteArray())
        }
        val store = FileTokenStore(dir)
        assertEquals("old record of JoHn", store.load("JoHn"))
        assertEquals("old record of $long", store.load(long))
        assertNull("an old file answers only for its own key", store.load("Jobn"))

        store.save("JoHn", "new record")
        assertEquals("new record", store.load("JoHn"))
        assertTrue(Files.exists(store.fileFor("JoHn")))
        assertFalse("the old file is gone once the new one is durable", Files.exists(dir.resolve(oldName("JoHn"))))
        assertTrue("other keys' old files stay", Files.exists(dir.resolve(oldName(long))))
        val names = recordFiles(dir)
        assertEquals(setOf(FileTokenStore.fileName("JoHn"), oldName(long)), names)
    }

    @Test fun `an old file is read only for the key whose old name the directory lists exactly`() = blocking {
        // JoHn's and Jobn's old names differ only in case: a case-insensitive
        // file system opens JoHn's file under Jobn's name. Only the exact
        // listed name counts, so Jobn neither reads nor (on its save) deletes it.
        assertEquals(folded(oldName("JoHn")), folded(oldName("Jobn")))
        val dir = tmp.root.toPath().resolve("tokens")
        Files.createDirectories(dir)
        val johns = dir.resolve(oldName("JoHn"))
        Files.write(johns, "old record of JoHn".toByteArray())
        val store = FileTokenStore(dir)
        for (other in listOf("Jobn", "john", "JOHN")) {
            assertNull("$other reads nothing", store.load(other))
            store.save(other, "record of $other")
            assertEquals("record of $other", store.load(other))
        }
        assertEquals("JoHn's old file is untouched", "old record of JoHn", String(Files.readAllBytes(johns)))
        assertEquals("old record of JoHn", store.load("JoHn"))
        store.save("JoHn", "new record of JoHn")
        assertEquals("new record of JoHn", FileTokenStore(dir).load("JoHn"))
        val names = recordFiles(dir)
        assertEquals(listOf("Jobn", "john", "JOHN", "JoHn").map { FileTokenStore.fileName(it) }.toSet(), names)
    }

    @Test fun `an old file that is not UTF-8 is refused, kept, and replaced by a re-link under the new name`() = blocking {
        val dir = Files.createDirectories(tmp.root.toPath().resolve("tokens"))
        val family = emu.seed()
        val token = family["refresh_token"] as String
        val raw = damagedRecord(token)
        val old = dir.resolve(oldName("JoHn"))
        Files.write(old, raw)
        val store = FileTokenStore(dir)
        val err = assertThrows(HostException.Failed::class.java) { kotlinx.coroutines.runBlocking { store.load("JoHn") } }
        assertTrue(err.detail, err.detail.contains("not UTF-8"))
        assertEquals(sha256(raw), store.loadVersioned("JoHn")!!.version)
        TokenClient(TokenClientOptions(emu.tokenEndpoint, "test-client", "test-secret")).use { client ->
            val session = client.session("JoHn", store)
            try {
                session.accessToken()
                throw AssertionError("served")
            } catch (e: FreshTokenException.Storage) {
                assertFalse(e.message.orEmpty().contains(token.substring(4)))
            }
            assertEquals(0L, emu.refreshRequests())
            assertTrue("left as it was", raw.contentEquals(Files.readAllBytes(old)))
            session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        }
        assertEquals("the re-link moved the key to its new name", setOf(FileTokenStore.fileName("JoHn")), recordFiles(dir))
        assertTrue(FileTokenStore(dir).load("JoHn")!!.contains("freshtoken.record/1"))
    }

    @Test fun `a session stored by the previous version refreshes once after the upgrade`() = blocking {
        val dir = tmp.root.toPath().resolve("sessions")
        val clock = FakeClock()
        fun client() = TokenClient.withClock(
            TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
            HttpUrlConnectionClient(),
            clock,
        )
        // The previous version's file: the record seeded through a store, renamed to the old name.
        val key = "user@example"
        val first = FileTokenStore(dir)
        client().session(key, first).seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))
        Files.move(first.fileFor(key), dir.resolve(oldName(key)))

        val upgraded = FileTokenStore(dir)
        val token = client().session(key, upgraded).accessToken()
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
        assertFalse(Files.exists(dir.resolve(oldName(key))))
        same(client().session(key, FileTokenStore(dir)).accessToken(), token, "the new file serves the next process")
        assertEquals(1L, emu.refreshRequests())
    }
}
