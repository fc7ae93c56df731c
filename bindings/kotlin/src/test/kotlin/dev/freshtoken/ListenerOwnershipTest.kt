package dev.freshtoken

import dev.freshtoken.support.Emulator
import dev.freshtoken.support.FakeClock
import java.io.File
import java.lang.ref.WeakReference
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Who owns an event listener (README "Events and metrics", "Ownership"):
 * the [TokenClient] holds its listener, and the core (through uniffi's
 * handle map, a GC root) holds only a forwarder that reaches it weakly. A
 * listener that refers back to its client (a service that owns the client
 * and handles its events, `EventListener { e -> onTokenEvent(e) }`) is
 * then a cycle of plain JVM objects: a client dropped without `close()`
 * becomes unreachable, its Cleaner frees the native client, and the
 * client's `freshtoken-events` thread ends. Before, the handle map kept
 * the listener, the service and the client alive for good (30 clients, 30
 * threads left after GC: the review probe P-K1).
 *
 * Every way to make a client is covered (constructor, [TokenClient.withClock],
 * [TokenClient.fromCredentialsJson], [TokenClient.discoverBlocking]). No
 * fixed sleeps: a bounded number of GC rounds, polled.
 */
class ListenerOwnershipTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** Clients per way of making one. */
        private const val PER_FACTORY = 8

        /** GC rounds at most (each followed by a 25 ms poll interval: 30 s in all). */
        private const val GC_ROUNDS = 1_200

        /** How long to wait for an event that must come (it comes in ms). */
        private const val WAIT_S = 20L

        private const val SECRET = "test-secret"

        /** The `freshtoken-events` threads of this process (by thread id; the kernel's name is cut at 15 bytes). */
        fun eventThreads(): Set<String> = File("/proc/self/task").listFiles().orEmpty()
            .filter { runCatching { File(it, "comm").readText().trim() }.getOrNull() == "freshtoken-even" }
            .map { it.name }
            .toSet()

        /** Runs GC rounds until [done] (at most [GC_ROUNDS]); whether it came. */
        fun collectUntil(done: () -> Boolean): Boolean {
            repeat(GC_ROUNDS) {
                if (done()) return true
                System.gc()
                Thread.sleep(25)
            }
            return done()
        }
    }

    @Before fun setUp() {
        emu.reset()
    }

    /** A service that owns its client and handles the client's events: the listener captures the service. */
    private class Service(make: (EventListener) -> TokenClient) {
        val events = LinkedBlockingQueue<TokenEvent>()
        val client: TokenClient = make(EventListener { e -> onTokenEvent(e) })

        fun onTokenEvent(event: TokenEvent) {
            events.put(event)
        }
    }

    private fun options(listener: EventListener?) = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint,
        clientId = "test-client",
        clientSecret = SECRET,
        onEvent = listener,
    )

    /** Every way to make a client, each with the listener given. */
    private fun factories(): List<Pair<String, (EventListener) -> TokenClient>> = listOf(
        "constructor" to { l -> TokenClient(options(l)) },
        "withClock" to { l -> TokenClient.withClock(options(l), HttpUrlConnectionClient(), FakeClock()) },
        "fromCredentialsJson" to { l ->
            val json = """{"clientId":"test-client","clientSecret":"$SECRET",""" +
                """"tokenEndpoint":"${emu.tokenEndpoint}","slidingRefreshTokenLifetime":3600}"""
            TokenClient.fromCredentialsJson(json, HttpUrlConnectionClient(), TokenClientOptions(clientId = "", onEvent = l))
        },
        "discoverBlocking" to { l ->
            TokenClient.discoverBlocking(emu.issuer, TokenClientOptions(clientId = "test-client", clientSecret = SECRET, onEvent = l))
        },
    )

    /**
     * Makes [PER_FACTORY] services per way of making a client, has each
     * client's listener receive an event (a client token issued), and drops
     * them all without `close()`. Returns weak references to the clients and
     * the ids of the events threads they started. (Its own frame: no local
     * of the test's keeps a service.)
     */
    private fun droppedServices(): Pair<List<Pair<String, WeakReference<TokenClient>>>, Set<String>> {
        val before = eventThreads()
        // Held until all are made: each client's thread is then counted.
        val services = mutableListOf<Pair<String, Service>>()
        for ((name, make) in factories()) {
            repeat(PER_FACTORY) {
                val service = Service(make)
                services.add(name to service)
                service.client.clientTokenBlocking(listOf("scope-$it"))
                val event = service.events.poll(WAIT_S, TimeUnit.SECONDS)
                assertNotNull("$name: the live client's listener got its event", event)
                assertEquals("$name: the live client's listener got its event", EventKind.CLIENT_TOKEN_ISSUED, event!!.kind)
            }
        }
        val started = eventThreads() - before
        assertEquals("one events thread per client", services.size, started.size)
        val clients = services.map { (name, service) -> name to WeakReference(service.client) }
        services.clear()
        return clients to started
    }

    @Test fun `a client whose listener refers back to it is freed when dropped without close`() {
        val (clients, threads) = droppedServices()
        val freed = collectUntil { clients.all { it.second.get() == null } && (threads intersect eventThreads()).isEmpty() }
        val kept = clients.filter { it.second.get() != null }.groupingBy { it.first }.eachCount()
        val left = (threads intersect eventThreads()).size
        assertTrue(
            "after $GC_ROUNDS GC rounds, clients still reachable per factory: $kept; " +
                "events threads left: $left of ${threads.size} (the core's handle map keeps the listener, " +
                "the listener its service, the service its client)",
            freed,
        )
    }

    /** A client whose listener nothing else holds (made here, so no local of the caller keeps it). */
    private fun clientWithOnlyItsListener(make: (EventListener) -> TokenClient, events: LinkedBlockingQueue<TokenEvent>): TokenClient =
        make(EventListener { e -> events.put(e) })

    @Test fun `the client keeps its listener alive for as long as it lives`() {
        for ((name, make) in factories()) {
            val events = LinkedBlockingQueue<TokenEvent>()
            val client = clientWithOnlyItsListener(make, events)
            try {
                // Collections that would free a listener only the core's forwarder held weakly.
                val garbage = WeakReference(Any())
                assertTrue("a collection ran", collectUntil { garbage.get() == null })
                repeat(3) { System.gc() }
                client.clientTokenBlocking(listOf("after-gc"))
                val event = events.poll(WAIT_S, TimeUnit.SECONDS)
                assertNotNull("$name: the listener still gets events after GC", event)
                assertEquals(EventKind.CLIENT_TOKEN_ISSUED, event!!.kind)
                assertEquals("after-gc", event.scope)
            } finally {
                client.close()
            }
        }
    }

    @Test fun `a forwarder whose listener is gone does nothing`() {
        var listener: EventListener? = EventListener { throw AssertionError("never called") }
        val forwarder = WeakEventListener(listener!!)
        val gone = WeakReference(listener)
        listener = null
        assertTrue("the listener was collected", collectUntil { gone.get() == null })
        forwarder.onEvent(
            TokenEvent(kind = EventKind.SAVED, key = null, scope = null, durationMs = null, attempts = null,
                errorCode = null, reason = null, atMs = 0L),
        )
    }
}
