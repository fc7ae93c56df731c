package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.Base64
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/** EncryptedStore over a MemoryTokenStore: under a session on the emulator, tampering, rotation, key errors. */
class EncryptedStoreTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        private val KEY_A = ByteArray(32) { 0xA1.toByte() }
        private val KEY_B = ByteArray(32) { 0xB2.toByte() }
    }

    @Before fun setUp() { emu.reset() }

    private fun client(clock: FakeClock) = TokenClient.withClock(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
        HttpUrlConnectionClient(),
        clock,
    )

    private fun envelope(raw: String?): Map<String, Any?> = Json.obj(raw ?: throw AssertionError("no record"))

    @Test fun `a session refreshes through the encrypted store and its raw contents hold no token`() = blocking {
        val inner = MemoryTokenStore()
        val store = EncryptedStore(inner, EncryptionKey("2026-11", KEY_A))
        assertTrue(store.inner === inner)
        val clock = FakeClock()
        val family = emu.seed()
        val seeded = family["refresh_token"] as String
        val session = client(clock).session("user-42", store)
        session.seed(SeedOptions(refreshToken = seeded))
        val first = session.accessToken()
        clock.advance(901_000)
        val second = session.accessToken()
        assertEquals(2L, emu.refreshRequests())

        val raw = inner.get("user-42")!!
        val env = envelope(raw)
        assertEquals("freshtoken.encrypted/1", env["schema"])
        assertEquals("2026-11", env["kid"])
        val record = Json.obj(store.load("user-42")!!)
        same(record["access_token"], second, "the decrypted record holds the token served")
        val tokens = listOf(seeded, first, second, record["refresh_token"] as String)
        assertTrue("no token in the raw record", tokens.all { it.length > 8 && !raw.contains(it) })
        assertFalse(raw.contains("refresh_token"))

        // A new client (a restart) reads the encrypted record without a refresh.
        same(client(clock).session("user-42", store).accessToken(), second, "read back")
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `a tampered record is a Storage error naming the key id and nothing is sent`() = blocking {
        val inner = MemoryTokenStore()
        val store = EncryptedStore(inner, EncryptionKey("2026-11", KEY_A))
        val clock = FakeClock()
        val seeded = emu.seed()["refresh_token"] as String
        client(clock).session("alice", store).seed(SeedOptions(refreshToken = seeded))
        val raw = inner.get("alice")!!
        val ciphertext = envelope(raw)["ciphertext"] as String
        val flipped = (if (ciphertext[0] == 'A') "B" else "A") + ciphertext.substring(1)
        inner.save("alice", raw.replace(ciphertext, flipped))
        val err = expectError<FreshTokenException.Storage> { client(clock).session("alice", store).accessToken() }
        assertEquals("storage", err.code)
        assertTrue(err.message, err.message!!.contains("key id \"2026-11\""))
        assertFalse(err.message!!.contains(seeded))
        // The intact record copied under another user's key fails too.
        inner.save("alice", raw)
        inner.save("mallory", raw)
        expectError<FreshTokenException.Storage> { client(clock).session("mallory", store).accessToken() }
        assertEquals(0L, emu.refreshRequests())
    }

    @Test fun `rotation reads under the old key and the next save uses the current one`() = blocking {
        val inner = MemoryTokenStore()
        val clock = FakeClock()
        val seeded = emu.seed()["refresh_token"] as String
        client(clock).session("u", EncryptedStore(inner, EncryptionKey("2025", KEY_A))).seed(SeedOptions(refreshToken = seeded))
        assertEquals("2025", envelope(inner.get("u"))["kid"])
        val rotated = EncryptedStore(
            inner,
            EncryptionKey.fromBase64("2026", Base64.getEncoder().encodeToString(KEY_B)),
            old = listOf(EncryptionKey("2025", KEY_A)),
        )
        client(clock).session("u", rotated).accessToken()
        assertEquals("2026", envelope(inner.get("u"))["kid"])
        val strict = EncryptedStore(inner, EncryptionKey("2026", KEY_B), refusePlaintext = true)
        assertTrue(strict.load("u")!!.contains("freshtoken.record/1"))
        inner.save("plain", """{"schema":"freshtoken.record/1","refresh_token":"rt-SENTINEL","updated_at":1}""")
        val refused = expectError<FreshTokenException.Storage> { client(clock).session("plain", strict).accessToken() }
        assertTrue(refused.message, refused.message!!.contains("not encrypted"))
    }

    @Test fun `a record no key opens is replaced by a re-link`() = blocking {
        // A compare-and-swap store (the file store) holds a record under a key
        // removed too early: reading it is a Storage error, and the user's
        // re-link (seed) replaces it instead of failing on it.
        val dir = java.nio.file.Files.createTempDirectory("freshtoken-encrypted")
        try {
            val inner = FileTokenStore(dir)
            assertTrue(inner.supportsVersions())
            val clock = FakeClock()
            val old = emu.seed()["refresh_token"] as String
            client(clock).session("u", EncryptedStore(inner, EncryptionKey("2025", KEY_A))).seed(SeedOptions(refreshToken = old))
            val current = EncryptedStore(inner, EncryptionKey("2026", KEY_B))
            val session = client(clock).session("u", current)
            expectError<FreshTokenException.Storage> { session.accessToken() }
            val relinked = emu.seed()["refresh_token"] as String
            session.seed(SeedOptions(refreshToken = relinked))
            same(Json.obj(current.load("u")!!)["refresh_token"], relinked, "the new link is stored under the current key")
            session.accessToken()
            assertEquals(1L, emu.refreshRequests())
        } finally {
            dir.toFile().deleteRecursively()
        }
    }

    @Test fun `bad keys are Config errors naming the field, and a key never shows itself`() {
        val short = expectError<FreshTokenException.Config> { EncryptionKey("k", ByteArray(16)) }
        assertEquals("key", short.field)
        assertEquals("id", expectError<FreshTokenException.Config> { EncryptionKey("has space", KEY_A) }.field)
        assertEquals("key", expectError<FreshTokenException.Config> { EncryptionKey.fromBase64("k", "not base64!") }.field)
        val duplicate = expectError<FreshTokenException.Config> {
            EncryptedStore(MemoryTokenStore(), EncryptionKey("k", KEY_A), listOf(EncryptionKey("k", KEY_B)))
        }
        assertEquals("old", duplicate.field)
        val key = EncryptionKey("2026-11", KEY_A)
        assertEquals("2026-11", key.id)
        assertEquals("EncryptionKey(id=2026-11)", key.toString())
    }

    @Test fun `its members called directly fail with Storage, not the internal HostException`() = blocking {
        // They threw the generated HostException.Failed, which is no FreshTokenException.
        val inner = MemoryTokenStore()
        EncryptedStore(inner, EncryptionKey("2026", KEY_A)).save("u", "{}")
        val unknown = expectError<FreshTokenException.Storage> {
            EncryptedStore(inner, EncryptionKey("2027", KEY_A)).load("u")
        }
        assertEquals("storage", unknown.code)
        assertEquals(
            "the record of session key \"u\" (key id \"2026\") is encrypted with a key that is not among the keys given",
            unknown.message,
        )

        val failing = object : TokenStoreBase() {
            override suspend fun load(key: String): String? = throw HostException.Failed("disk gone")
            override suspend fun save(key: String, record: String) = throw HostException.Failed("disk gone")
            override fun supportsLease() = true
            override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean = throw HostException.Failed("disk gone")
            override suspend fun release(key: String, owner: String) = throw HostException.Failed("disk gone")
            override fun supportsVersions() = true
            override suspend fun loadVersioned(key: String): VersionedRecord? = throw HostException.Failed("disk gone")
            override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult =
                throw HostException.Failed("disk gone")
        }
        val store = EncryptedStore(failing, EncryptionKey("k", KEY_A))
        val calls: List<suspend () -> Any?> = listOf(
            { store.load("u") }, { store.save("u", "{}") }, { store.acquire("u", "o", 1000) },
            { store.release("u", "o") }, { store.loadVersioned("u") }, { store.saveVersioned("u", "{}", null) },
        )
        for (call in calls) {
            val e = expectError<FreshTokenException.Storage> { call() }
            assertTrue(e.message, e.message!!.contains("disk gone"))
        }
        assertEquals("ttlMs", expectError<FreshTokenException.Config> { store.acquire("u", "o", -1) }.field)
    }
}
