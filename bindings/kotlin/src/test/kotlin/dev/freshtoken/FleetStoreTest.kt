package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.blocking
import dev.freshtoken.support.callersThatJoin
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicReference
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/** The client ([TokenClient.leaseOwner]) whose lease `owner` names: a lease adds `.` and its own number. */
private fun clientOf(owner: String?): String? = owner?.substringBeforeLast('.')

/**
 * Several clients, as if several processes, sharing one session through a
 * store with a lease and compare-and-swap versions (DESIGN point 9;
 * [InMemoryFleetStore]), against the emulator with reuse detection on: a
 * refresh token sent twice would revoke the family and show as
 * `reuse_detected`/`invalid_grant`. Mirrors tests/fleet.rs and the Python
 * `FleetStore` test.
 *
 * The clients run on the system clock (the plain constructor): a client
 * waiting for another's lease really sleeps between looks, where a fake
 * clock's instant sleeps would spend its whole lease-wait budget at once.
 * Nothing sleeps to synchronise: the one wait measured (a dead holder's
 * lease TTL) is the behaviour under test.
 */
class FleetStoreTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Any test here that takes longer has hung (the lease-wait budget is 70 s). */
        private const val HANG_MS = 30_000L
    }

    /** An [InMemoryFleetStore] that counts what freshtoken asked of it. */
    private open class CountingFleetStore : InMemoryFleetStore() {
        val acquired = AtomicInteger()
        val refused = AtomicInteger()
        val released = AtomicInteger()
        val casSaves = AtomicInteger()
        val conflicts = AtomicInteger()
        val plainSaves = AtomicInteger()
        val acquiredBy: MutableSet<String> = ConcurrentHashMap.newKeySet()
        val refusedTo: MutableSet<String> = ConcurrentHashMap.newKeySet()
        val firstOwner = AtomicReference<String?>()

        /** Completed when an acquire is first refused (another owner holds the lease). */
        val refusal = CompletableDeferred<Unit>()

        override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean {
            val ok = super.acquire(key, owner, ttlMs)
            if (ok) {
                acquired.incrementAndGet()
                acquiredBy.add(owner)
                firstOwner.compareAndSet(null, owner)
            } else {
                refused.incrementAndGet()
                refusedTo.add(owner)
                refusal.complete(Unit)
            }
            return ok
        }

        override suspend fun release(key: String, owner: String) {
            if (leaseHolder(key) == owner) released.incrementAndGet()
            super.release(key, owner)
        }

        override suspend fun save(key: String, record: String) {
            plainSaves.incrementAndGet()
            super.save(key, record)
        }

        override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult {
            return super.saveVersioned(key, record, expected).also {
                if (it is CasResult.Saved) casSaves.incrementAndGet() else conflicts.incrementAndGet()
            }
        }
    }

    /**
     * Another writer saves `next` (once) just before this process's
     * compare-and-swap of a rotated record lands (not before the in-doubt
     * marker a lease holder saves ahead of its request).
     */
    private class InterlopingStore : CountingFleetStore() {
        val next = AtomicReference<String?>()

        override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult {
            if (!record.contains("\"in_doubt\":true")) next.getAndSet(null)?.let { save(key, it) }
            return super.saveVersioned(key, record, expected)
        }
    }

    private fun options() = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint,
        clientId = "test-client",
        clientSecret = "test-secret",
    )

    /** A client on the system clock (one "process"). */
    private fun process() = TokenClient(options(), HttpUrlConnectionClient())

    private fun refreshTokenOf(record: String?): String = Json.obj(record!!)["refresh_token"] as String

    @Before fun setUp() { emu.reset() }

    @Test fun `two clients sharing a fleet store send one refresh for 2 x 50 concurrent callers`() = blocking {
        withTimeout(HANG_MS) {
            val store = CountingFleetStore()
            process().use { a ->
                process().use { b ->
                    assertFalse("each client has its own lease owner", a.leaseOwner() == b.leaseOwner())
                    val original = emu.seed()["refresh_token"] as String
                    a.session("u1", store).seed(SeedOptions(refreshToken = original))
                    assertEquals("the seed went through saveVersioned", "1", store.version("u1"))

                    // The lease holder's refresh is held at the emulator until
                    // every caller of both clients has joined and the other
                    // client has been refused the lease.
                    emu.hold()
                    val sessions = listOf(a.session("u1", store), b.session("u1", store))
                    val tokens = callersThatJoin(emu, 100, beforeRelease = { store.refusal.await() }) { i ->
                        sessions[i / 50].accessToken()
                    }

                    assertEquals(100, tokens.size)
                    assertEquals("exactly one refresh request", 1L, emu.refreshRequests())
                    assertEquals(1L, emu.counter("max_concurrent_token_requests"))
                    assertEquals(0L, emu.counter("reuse_detected"))
                    assertEquals(0L, emu.counter("invalid_grant"))
                    assertEquals("every caller of both clients got the one token", 1, tokens.toSet().size)
                    assertEquals("consumed", emu.refreshTokenState(original))

                    val stored = Json.obj(store.get("u1")!!)
                    same(stored["access_token"], tokens[0], "the stored token is the one handed out")
                    differ(stored["refresh_token"], original, "the rotated refresh token is stored")
                    assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))

                    // The lease: taken by one client, refused to the other, given back.
                    val winner = clientOf(store.firstOwner.get())
                    assertTrue("the lease was taken by one of the clients", winner in setOf(a.leaseOwner(), b.leaseOwner()))
                    assertTrue("the other client was refused the lease", store.refused.get() >= 1)
                    assertEquals("only the other client was refused", setOf(a.leaseOwner(), b.leaseOwner()) - winner, store.refusedTo.map(::clientOf).toSet())
                    assertEquals("every lease taken was released", store.acquired.get(), store.released.get())
                    assertNull("no lease is left", store.leaseHolder("u1"))

                    // The saves, all compare-and-swap: the seed, the in-doubt
                    // marker the holder saves before sending, the rotation.
                    assertEquals(3, store.casSaves.get())
                    assertEquals(0, store.conflicts.get())
                    assertEquals("no plain save", 0, store.plainSaves.get())
                    assertEquals("3", store.version("u1"))

                    // Both clients now serve the stored token from memory.
                    same(sessions[0].cachedAccessToken(), tokens[0], "client A's cached token")
                    same(sessions[1].cachedAccessToken(), tokens[0], "client B's cached token")
                }
            }
        }
    }

    @Test fun `a save that lost the race is a Conflict, keeps the other writer's record, and the next call uses it`() = blocking {
        withTimeout(HANG_MS) {
            val store = InterlopingStore()
            process().use { client ->
                val session = client.session("u1", store)
                val original = emu.seed()["refresh_token"] as String
                session.seed(SeedOptions(refreshToken = original))

                // A new login elsewhere: another process writes its own record
                // for the same key while this one refreshes.
                val relinked = emu.seed()["refresh_token"] as String
                val elsewhere = MemoryTokenStore()
                process().use { other -> other.session("u1", elsewhere).seed(SeedOptions(refreshToken = relinked)) }
                val otherRecord = elsewhere.get("u1")!!
                same(refreshTokenOf(otherRecord), relinked, "the other writer's record holds the new login")
                store.next.set(otherRecord)

                val err = expectError<FreshTokenException.Conflict> { session.accessToken() }
                assertEquals("conflict", err.code)
                assertEquals("the refresh was sent before the save lost", 1L, emu.refreshRequests())
                assertEquals("consumed", emu.refreshTokenState(original))
                assertEquals(1, store.conflicts.get())
                assertTrue("the other writer's record is kept, not overwritten", store.get("u1") == otherRecord)
                assertEquals("seed, in-doubt marker, the other writer's save", "3", store.version("u1"))
                assertNull("the lease was given back after the conflict", store.leaseHolder("u1"))
                assertEquals(store.acquired.get(), store.released.get())
                assertNull("nothing is served from memory after a conflict", session.cachedAccessToken())

                // The next call reads the other writer's record and uses its refresh token.
                val token = session.accessToken()
                assertEquals(2L, emu.refreshRequests())
                assertEquals("the new login's refresh token was used", "consumed", emu.refreshTokenState(relinked))
                val stored = Json.obj(store.get("u1")!!)
                same(stored["access_token"], token, "the stored token is the one handed out")
                differ(stored["refresh_token"], relinked, "the new login's rotated refresh token is stored")
                assertEquals("active", emu.refreshTokenState(stored["refresh_token"] as String))
                assertEquals("then a marker and the rotation", "5", store.version("u1"))
                assertEquals("the seed, two markers and the last rotation", 4, store.casSaves.get())
                assertEquals("only the other writer's save was plain", 1, store.plainSaves.get())
                assertEquals(0L, emu.counter("reuse_detected"))
                assertEquals(0L, emu.counter("invalid_grant"))
                assertNull(store.leaseHolder("u1"))
            }
        }
    }

    @Test fun `a lease held by a dead owner delays the client by about its TTL, then it refreshes once`() = blocking {
        withTimeout(HANG_MS) {
            val ttl = 1_500L
            val store = CountingFleetStore()
            process().use { client ->
                val session = client.session("u1", store)
                session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))

                // Another process took the lease and died.
                val started = System.nanoTime()
                assertTrue(store.acquire("u1", "dead-process", ttl))
                val token = session.accessToken()
                val waited = (System.nanoTime() - started) / 1_000_000
                println("[FleetStoreTest] waited $waited ms for a $ttl ms dead lease (${store.refused.get()} refusals)")

                // Lease expiry is by System.currentTimeMillis (ms steps): 10 ms slack below.
                assertTrue("waited $waited ms for a $ttl ms lease", waited >= ttl - 10)
                // About the TTL: the client looks again and again (below) rather than
                // sleeping past it. The upper bound only tells a hang (a client that
                // waits out its whole lease-wait budget) from a busy machine's delays.
                assertTrue("waited $waited ms for a $ttl ms lease: more than the TTL + 15 s", waited <= ttl + 15_000)
                assertTrue("the client looked at the lease more than once", store.refused.get() >= 2)
                val owners = store.acquiredBy.map(::clientOf).toSet()
                assertEquals(setOf("dead-process"), owners - client.leaseOwner())
                assertTrue("the client took the expired lease", client.leaseOwner() in owners)
                assertEquals("then released it (the dead holder never did)", 1, store.released.get())
                assertNull(store.leaseHolder("u1"))
                assertEquals("exactly one refresh", 1L, emu.refreshRequests())
                assertEquals(0L, emu.counter("reuse_detected"))
                same(Json.obj(store.get("u1")!!)["access_token"], token, "the stored token is the one handed out")
            }
        }
    }
}
