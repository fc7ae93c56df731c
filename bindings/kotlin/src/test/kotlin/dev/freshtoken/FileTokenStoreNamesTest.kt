package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.blocking
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
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test
import org.junit.rules.TemporaryFolder

/**
 * FileTokenStore's file names are safe on case-insensitive file systems, and
 * records written under the old (base64url) names are still read and then
 * moved. Issue 11, item 9.
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
            keys += listOf("JoHn", "Jobn", "", "x\u00e9", "X\u00c9", "\u00df", "SS", "ss", "\u0130", "i\u0307", "k".repeat(75), "k".repeat(76))
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
        for (key in keys) {
            val name = FileTokenStore.fileName(key)
            assertTrue("only a-z, 0-9 and dots: $name", name.matches(Regex("[a-z0-9.]+")))
            assertTrue("at most 129 characters: ${name.length}", name.length <= 129)
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

    @Test fun `names are b32 dot base32 dot json, or h dot sha-256 hex for long keys`() {
        // RFC 4648 section 10 test vectors, lowercase, no padding.
        val vectors = mapOf("" to "", "f" to "my", "fo" to "mzxq", "foo" to "mzxw6", "foob" to "mzxw6yq",
            "fooba" to "mzxw6ytb", "foobar" to "mzxw6ytboi")
        for ((key, encoded) in vectors) assertEquals("b32.$encoded.json", FileTokenStore.fileName(key))
        val long = "k".repeat(76)
        val digest = MessageDigest.getInstance("SHA-256").digest(long.toByteArray())
        assertEquals("h." + digest.joinToString("") { "%02x".format(it) } + ".json", FileTokenStore.fileName(long))
        assertTrue(FileTokenStore.fileName("k".repeat(75)).startsWith("b32."))
    }

    @Test fun `names equal the Python binding's FileTokenStore names`() {
        // Computed with bindings/python's file_name(); a Kotlin and a Python
        // process can share one directory.
        val python = mapOf(
            "user@example" to "b32.ovzwk4samv4gc3lqnrsq.json",
            "JoHn" to "b32.jjxuq3q.json",
            "x\u00e9\u65e5" to "b32.pdb2tzuxuu.json",
            "k".repeat(76) to "h.5a0b0eb761d19976c26270a5f59c77cc36dc4b3dad134239e433a5918ec6f883.json",
        )
        for ((key, name) in python) assertEquals(name, FileTokenStore.fileName(key))
    }

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
        val names = Files.list(dir).use { s -> s.map { it.fileName.toString() }.toList() }.toSet()
        assertEquals(setOf(FileTokenStore.fileName("JoHn"), oldName(long)), names)
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
        val token = client().session(key, upgraded).token()
        assertEquals(1L, emu.refreshRequests())
        assertEquals(0L, emu.counter("reuse_detected"))
        assertFalse(Files.exists(dir.resolve(oldName(key))))
        same(client().session(key, FileTokenStore(dir)).token(), token, "the new file serves the next process")
        assertEquals(1L, emu.refreshRequests())
    }
}
