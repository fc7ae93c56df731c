package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.Json
import dev.freshtoken.support.NoUncaughtExceptions
import dev.freshtoken.support.blocking
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.launch
import kotlinx.coroutines.selects.select
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Rule
import org.junit.Test

/**
 * A store's synchronous members, `supportsLease()` and `supportsVersions()`,
 * are read once on the thread that opens the session (or makes the
 * EncryptedStore) and handed to the core as fixed answers: the core never
 * runs them on its own threads, where a blocking one had no deadline (it
 * hung its caller for good and, on the process-wide flight thread, stalled
 * other clients' abandoned refreshes).
 */
class StoreCapabilitiesTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Longer than any answer may take here. */
        const val BOUND_MS = 20_000L
    }

    @get:Rule val noUncaught = NoUncaughtExceptions()

    @Before fun setUp() {
        emu.reset()
    }

    private fun client() = TokenClient(
        TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = "test-client", clientSecret = "test-secret"),
    )

    /** A fleet store whose capability members block at a gate once armed, recording where they ran. */
    private class ArmedFleetStore : InMemoryFleetStore() {
        val askedOn: MutableList<String> = Collections.synchronizedList(mutableListOf())
        val acquires = AtomicInteger()
        val gate = CountDownLatch(1)
        /** Completed when a capability member runs on a thread other than [opener]. */
        val askedElsewhere = CompletableDeferred<String>()
        @Volatile var armed = false
        @Volatile var opener: Thread? = null

        private fun ask(): Boolean {
            val thread = Thread.currentThread()
            askedOn.add(thread.name)
            if (thread !== opener) askedElsewhere.complete(thread.name)
            if (armed) gate.await()
            return true
        }

        override fun supportsLease(): Boolean = ask()
        override fun supportsVersions(): Boolean = ask()

        override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean {
            acquires.incrementAndGet()
            return super.acquire(key, owner, ttlMs)
        }
    }

    private suspend fun seed(session: UserSession) =
        session.seed(SeedOptions(refreshToken = emu.seed()["refresh_token"] as String))

    @Test fun `read once on the opening thread, a blocking one never holds a call, and the lease is still taken`() = blocking {
        val store = ArmedFleetStore().apply { opener = Thread.currentThread() }
        val session = client().session("u1", store)
        try {
            seed(session)
            store.armed = true
            // Off this thread: before the fix a blocked check could hold the thread that polls the core.
            val call = async(Dispatchers.Default) { session.accessToken() }
            val token = withTimeout(BOUND_MS) { call.await() }
            same(Json.obj(store.get("u1")!!)["access_token"], token, "the token handed out is the one stored")
        } finally {
            store.gate.countDown()
        }
        assertEquals("each member asked once, here", listOf(Thread.currentThread().name, Thread.currentThread().name), store.askedOn)
        assertEquals("the fixed answer (true) still takes the fleet lease", 1, store.acquires.get())
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `an EncryptedStore reads its inner store's capabilities when it is made`() = blocking {
        val inner = ArmedFleetStore().apply { opener = Thread.currentThread() }
        val store = EncryptionKey("k1", ByteArray(32) { it.toByte() }).use { EncryptedStore(inner, it) }
        assertEquals("read when made", 2, inner.askedOn.size)
        inner.armed = true
        try {
            val session = client().session("u1", store)
            seed(session)
            val call = async(Dispatchers.Default) { session.accessToken() }
            withTimeout(BOUND_MS) { call.await() }
        } finally {
            inner.gate.countDown()
        }
        assertEquals("never asked again", listOf(Thread.currentThread().name, Thread.currentThread().name), inner.askedOn)
        assertEquals(1, inner.acquires.get())
    }

    @Test fun `another client's abandoned refresh is saved while this store's capability check would block`() = blocking {
        val rotatedSaved = CompletableDeferred<Unit>()
        val storeB = object : MemoryTokenStore() {
            @Volatile var watching = false
            override suspend fun save(key: String, record: String) {
                super.save(key, record)
                if (watching && !record.contains("\"in_doubt\":true")) rotatedSaved.complete(Unit)
            }
        }
        val sessionB = client().session("b", storeB)
        seed(sessionB)
        storeB.watching = true
        emu.hold()
        val b = launch(Dispatchers.Default) { sessionB.accessToken() }
        withContext(Dispatchers.IO) { emu.waitHeld(1) }
        b.cancelAndJoin() // B's caller gives up; its refresh goes on, detached
        val storeA = ArmedFleetStore().apply { opener = Thread.currentThread() }
        val sessionA = client().session("a", storeA)
        seed(sessionA)
        storeA.armed = true
        try {
            val a = async(Dispatchers.Default) { sessionA.accessToken() }
            // A's refresh has either finished, or blocks in a capability check off this thread.
            withTimeout(BOUND_MS) { select<Unit> { a.onAwait { }; storeA.askedElsewhere.onAwait { } } }
            withContext(Dispatchers.IO) { emu.releaseHeld() }
            withTimeout(BOUND_MS) { rotatedSaved.await() }
            withTimeout(BOUND_MS) { a.await() }
        } finally {
            storeA.gate.countDown()
        }
        assertTrue("asked on ${storeA.askedOn}", storeA.askedOn.all { it == Thread.currentThread().name })
        assertEquals(2L, emu.refreshRequests())
    }

    @Test fun `a capability member that throws an Error is Storage too, from every kind of call, and the session then works`() = blocking {
        val store = object : MemoryTokenStore() {
            @Volatile var error: Throwable? = null
            override fun supportsLease(): Boolean = error?.let { throw it } ?: false
        }
        val client = client()
        seed(client.session("u1", store))
        val rt = Json.obj(store.get("u1")!!)["refresh_token"]
        val key = EncryptionKey("k1", ByteArray(32) { it.toByte() })
        for (error in listOf(AssertionError("no"), NotImplementedError(), StackOverflowError(), ExceptionInInitializerError())) {
            store.error = error
            val name = error.javaClass.name
            // A fresh client each time: the capabilities are read when a key's native session is made.
            val fresh = client()
            val e = expectError<FreshTokenException.Storage> { fresh.session("u1", store).accessTokenBlocking() }
            assertTrue(e.message, e.message!!.contains("supportsLease()") && e.message!!.contains(name))
            expectError<FreshTokenException.Storage> { fresh.session("u1", store).accessToken() }
            expectError<FreshTokenException.Storage> {
                try {
                    fresh.session("u1", store).accessTokenAsync().get()
                } catch (x: java.util.concurrent.ExecutionException) {
                    throw x.cause!!
                }
            }
            expectError<FreshTokenException.Storage> { EncryptedStore(store, key) }
        }
        assertEquals("nothing was sent", 0L, emu.refreshRequests())
        same(rt, Json.obj(store.get("u1")!!)["refresh_token"], "the stored refresh token is untouched")
        store.error = null
        withTimeout(BOUND_MS) { client().session("u1", store).accessToken() }
        assertEquals(1L, emu.refreshRequests())
    }

    @Test fun `a capability member that throws is Storage naming it, nothing is sent, and the next call asks again`() = blocking {
        val store = object : MemoryTokenStore() {
            @Volatile var broken = true
            override fun supportsVersions(): Boolean = if (broken) throw IllegalStateException("pool closed") else false
        }
        val client = client()
        val e = expectError<FreshTokenException.Storage> { client.session("u1", store).seed(SeedOptions(refreshToken = "rt")) }
        assertTrue(e.message, e.message!!.contains("supportsVersions()") && e.message!!.contains("IllegalStateException"))
        assertEquals("nothing was stored", null, store.get("u1"))
        store.broken = false
        seed(client.session("u1", store))
        withTimeout(BOUND_MS) { client.session("u1", store).accessToken() }
        assertEquals(1L, emu.refreshRequests())
    }
}
