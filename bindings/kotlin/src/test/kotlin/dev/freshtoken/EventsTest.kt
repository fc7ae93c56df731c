package dev.freshtoken

import com.sun.jna.Callback
import com.sun.jna.Native
import dev.freshtoken.support.Emulator
import dev.freshtoken.support.approvedCode
import dev.freshtoken.support.FakeClock
import dev.freshtoken.support.Json
import dev.freshtoken.support.TestStore
import dev.freshtoken.support.blocking
import dev.freshtoken.support.differ
import dev.freshtoken.support.expectError
import dev.freshtoken.support.same
import java.io.File
import java.time.Duration
import java.time.Instant
import java.util.Collections
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.BeforeClass
import org.junit.Test

/**
 * Events (issue 14, README "Events and metrics") through the Kotlin API
 * against the emulator: the kinds a refresh, a failure, a re-link, a
 * failing store, a fleet lease wait, a client token and a revocation emit,
 * in order, with their fields; `eventKeys = "hidden"`; a listener that
 * throws, blocks or falls behind changes and delays nothing; and no event
 * of any kind carries a token or a secret. Mirrors tests/events.rs and
 * bindings/js/test/events.test.mjs.
 *
 * Delivery is asynchronous (the client's own `freshtoken-events` thread):
 * tests take events from a queue until the kind they expect, or until a
 * fence (a client token with scope `fence`, emitted after everything the
 * test did before it) to see that nothing else came. Time is a fake Clock.
 * Nothing here prints a token: a leaked secret is reported replaced.
 */
class EventsTest {
    companion object {
        private lateinit var emu: Emulator

        @BeforeClass @JvmStatic fun start() { emu = Emulator.start() }
        @AfterClass @JvmStatic fun stop() { emu.close() }

        /** How long to wait for an event that must come (it comes in ms). */
        private const val WAIT_S = 20L

        /** Any call here that takes longer has waited for a listener. */
        private const val HANG_MS = 20_000L

        private const val CLIENT_SECRET = "test-secret"
        private const val REDIRECT = "https://app.example/callback"
    }

    /** Keeps every event for the test thread, and the threads it was called on. */
    private open class Recorder : EventListener {
        val queue = LinkedBlockingQueue<TokenEvent>()
        val threads: MutableSet<Thread> = ConcurrentHashMap.newKeySet()

        override fun onEvent(event: TokenEvent) {
            threads.add(Thread.currentThread())
            queue.put(event)
        }

        /** The events up to and including the first that [stop] accepts (fails if none comes). */
        fun until(what: String, stop: (TokenEvent) -> Boolean): List<TokenEvent> {
            val seen = mutableListOf<TokenEvent>()
            while (true) {
                val event = queue.poll(WAIT_S, TimeUnit.SECONDS)
                    ?: throw AssertionError("no $what within $WAIT_S s; got ${kinds(seen)}")
                seen.add(event)
                if (stop(event)) return seen
            }
        }

        /** The events up to and including the first of [kind]. */
        fun until(kind: EventKind): List<TokenEvent> = until(kind.code) { it.kind == kind }

        /**
         * Every event emitted before this call, and nothing else: a client
         * token for scope `fence` is emitted after them, on the same thread.
         */
        suspend fun fence(client: TokenClient): List<TokenEvent> {
            client.clientTokens().invalidate(listOf("fence"))
            client.clientToken(listOf("fence"))
            return until("the fence") { it.kind == EventKind.CLIENT_TOKEN_ISSUED && it.scope == "fence" }.dropLast(1)
        }
    }

    private val clock = FakeClock()
    private val store = TestStore()
    private val clients = mutableListOf<TokenClient>()

    private val uncaught: MutableList<Throwable> = Collections.synchronizedList(mutableListOf())
    private val callbackExceptions: MutableList<Throwable> = Collections.synchronizedList(mutableListOf())
    private var previousHandler: Thread.UncaughtExceptionHandler? = null
    private var previousCallbackHandler: Callback.UncaughtExceptionHandler? = null

    @Before fun setUp() {
        emu.reset()
        previousHandler = Thread.getDefaultUncaughtExceptionHandler()
        Thread.setDefaultUncaughtExceptionHandler { _, e -> uncaught.add(e) }
        previousCallbackHandler = Native.getCallbackExceptionHandler()
        Native.setCallbackExceptionHandler { _, e -> callbackExceptions.add(e) }
    }

    @After fun tearDown() {
        clients.forEach { it.close() }
        Thread.setDefaultUncaughtExceptionHandler(previousHandler)
        Native.setCallbackExceptionHandler(previousCallbackHandler)
        assertEquals("nothing reached the uncaught-exception handler",
            emptyList<String>(), uncaught.map { it.javaClass.name })
        assertEquals("nothing reached JNA's callback exception handler",
            emptyList<String>(), callbackExceptions.map { it.javaClass.name })
    }

    private fun options(listener: EventListener?, eventKeys: String? = null, leaseWaitMs: Long? = null) = TokenClientOptions(
        tokenEndpoint = emu.tokenEndpoint,
        authorizationEndpoint = emu.authorizationEndpoint,
        clientId = "test-client",
        clientSecret = CLIENT_SECRET,
        onEvent = listener,
        eventKeys = eventKeys,
        leaseWaitMs = leaseWaitMs,
    )

    /** A client on the fake clock whose events go to [listener]; closed after the test. */
    private fun client(listener: EventListener?, eventKeys: String? = null, leaseWaitMs: Long? = null) =
        TokenClient.withClock(options(listener, eventKeys, leaseWaitMs), HttpUrlConnectionClient(), clock)
            .also { clients.add(it) }

    /** A session seeded with a new emulator family; returns it and the refresh token. */
    private suspend fun seeded(client: TokenClient, key: String = "u1", to: TokenStore = store): Pair<UserSession, String> {
        val rt = emu.seed()["refresh_token"] as String
        val session = client.session(key, to)
        session.seed(SeedOptions(refreshToken = rt))
        return session to rt
    }

    // ---- the kinds, in order, with their fields ----------------------------

    @Test fun `every kind has the stable name Rust gives it`() {
        val repo = System.getProperty("freshtoken.repo") ?: "."
        val rust = File(repo, "src/events.rs").readText()
        val asStr = Regex("""EventKind::(\w+) => "([a-z_]+)"""").findAll(rust)
            .associate { it.groupValues[1] to it.groupValues[2] }
        assertEquals("one Rust name per Kotlin kind", EventKind.values().size, asStr.size)
        for (kind in EventKind.values()) {
            val rustName = kind.name.lowercase().split('_').joinToString("") { it.replaceFirstChar(Char::uppercase) }
            assertEquals("EventKind.$kind", asStr[rustName], kind.code)
        }
    }

    @Test fun `a refresh emits saved, refresh_started, saved, refreshed on the listener's own thread`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        val (session, _) = seeded(client)
        assertEquals("the seed's save", listOf("saved"), kinds(recorder.until(EventKind.SAVED)))

        val token = session.accessToken()
        val seen = recorder.until(EventKind.REFRESHED)
        assertEquals(listOf("saved", "refresh_started", "saved", "refreshed"), kinds(seen))
        assertTrue("every event names the session", seen.all { it.key == "u1" })
        val refreshed = seen.last()
        assertEquals(1, refreshed.attempts)
        assertEquals("fake time did not move", 0L, refreshed.durationMs)
        assertEquals(Duration.ZERO, refreshed.duration)
        assertEquals(clock.now(), refreshed.atMs)
        assertEquals(Instant.ofEpochMilli(clock.now()), refreshed.at)
        assertNull(refreshed.errorCode)
        assertNull(refreshed.reason)
        assertNull(refreshed.reasonCode)
        assertNull(refreshed.scope)
        val started = seen[1]
        assertEquals(EventKind.REFRESH_STARTED, started.kind)
        assertNull("refresh_started has no duration", started.durationMs)
        assertNull(started.attempts)
        assertEquals("a save has a duration", 0L, seen[0].durationMs)

        // The next call is served from the mirror: nothing happens, nothing is said.
        same(session.accessToken(), token, "the mirrored token")
        assertEquals(emptyList<String>(), kinds(recorder.fence(client)))

        val thread = recorder.threads.single()
        assertEquals("freshtoken-events", thread.name)
        assertTrue("a daemon: a stuck listener never holds up the JVM's exit", thread.isDaemon)
    }

    @Test fun `a client from the credentials JSON takes the options the JSON does not set`() = blocking {
        val recorder = Recorder()
        val json = """{"clientId":"test-client","clientSecret":"$CLIENT_SECRET",""" +
            """"tokenEndpoint":"${emu.tokenEndpoint}","slidingRefreshTokenLifetime":3600}"""
        val client = TokenClient.fromCredentialsJson(
            json, HttpUrlConnectionClient(), TokenClientOptions(clientId = "", onEvent = recorder, leewaySeconds = 120), clock,
        ).also { clients.add(it) }
        val (session, _) = seeded(client)
        val first = session.accessToken()
        assertEquals("u1", recorder.until(EventKind.REFRESHED).last().key)
        clock.advance((900 - 121) * 1000L) // not yet within the 120 s leeway, on the fake clock
        same(session.accessToken(), first, "still fresh")
        clock.advance(2_000)
        differ(session.accessToken(), first, "refreshed 120 s before expiry")
        recorder.until(EventKind.REFRESHED)
        assertEquals(2L, emu.refreshRequests())
        assertEquals("the JSON's sliding lifetime", clock.now() + 3_600_000, session.status().refreshExpiresAtMs)

        for ((name, options) in listOf(
            "client_secret" to TokenClientOptionsBuilder().clientSecret("other").build(),
            "token_endpoint" to TokenClientOptions(tokenEndpoint = emu.tokenEndpoint, clientId = ""),
            "client_id" to TokenClientOptions(clientId = "x"),
        )) {
            val err = expectError<FreshTokenException.Config> { TokenClient.fromCredentialsJson(json, options = options) }
            assertEquals(name, err.field)
            assertTrue(err.message!!, err.message!!.contains("credentials JSON"))
        }
    }

    @Test fun `a failed refresh emits refresh_failed with its code, attempts and backoff`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        val (session, _) = seeded(client)
        recorder.until(EventKind.SAVED)

        emu.fault("kind" to "status", "status" to 503, "count" to 4)
        expectError<FreshTokenException.Transient> { session.accessToken() }
        val seen = recorder.until(EventKind.REFRESH_FAILED)
        assertEquals(listOf("saved", "refresh_started", "refresh_failed"), kinds(seen))
        val failed = seen.last()
        assertEquals("transient", failed.errorCode)
        assertEquals("the default policy's four requests", 4, failed.attempts)
        assertTrue("three backoffs", clock.sleeps.size == 3 && clock.sleeps.sum() > 0)
        assertEquals("the backoff is the time spent", clock.sleeps.sum(), failed.durationMs)
        assertNull(failed.reason)

        // Another failure, reported as itself (one request: not retried).
        clock.advance(900_000)
        emu.fault("kind" to "body", "status" to 400, "body" to """{"error":"invalid_scope"}""")
        expectError<FreshTokenException.OAuth> { session.accessToken() }
        val other = recorder.until(EventKind.REFRESH_FAILED).last()
        assertEquals("oauth", other.errorCode)
        assertEquals(1, other.attempts)
    }

    @Test fun `invalid_grant emits reauthorization_required once, with its reason`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        val session = client.session("u1", store)
        session.seed(SeedOptions(refreshToken = "a-refresh-token-the-server-never-issued"))
        recorder.until(EventKind.SAVED)

        expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        val seen = recorder.until(EventKind.REAUTHORIZATION_REQUIRED)
        assertEquals("no refresh_failed: the re-link is the event",
            listOf("saved", "refresh_started", "saved", "reauthorization_required"), kinds(seen))
        val dead = seen.last()
        assertEquals(ReauthorizationReason.INVALID_GRANT, dead.reason)
        assertEquals("invalid_grant", dead.reasonCode)
        assertEquals("u1", dead.key)
        assertNull(dead.errorCode)

        // A dead session fails fast, and says nothing new.
        expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
        assertEquals(emptyList<String>(), kinds(recorder.fence(client)))
    }

    @Test fun `a failing store emits save_failed`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        val (session, _) = seeded(client)
        recorder.until(EventKind.SAVED)

        // The rotated record cannot be saved (the write-ahead marker can).
        store.failSaves = 1
        store.failOnly = { it["in_doubt"] != true }
        expectError<FreshTokenException.Storage> { session.accessToken() }
        val seen = recorder.until(EventKind.REFRESH_FAILED)
        assertEquals(listOf("saved", "refresh_started", "save_failed", "refresh_failed"), kinds(seen))
        assertEquals("storage", seen[2].errorCode)
        assertEquals(0L, seen[2].durationMs)
        assertEquals("storage", seen[3].errorCode)
        assertEquals(1, seen[3].attempts)

        // The next call saves the pending record first.
        session.accessToken()
        assertEquals(listOf("saved"), kinds(recorder.fence(client)))
    }

    @Test fun `waiting for another process's lease emits lease_waited`() = blocking {
        val recorder = Recorder()
        val fleet = InMemoryFleetStore(clock::now)
        val client = client(recorder)
        val (session, _) = seeded(client, to = fleet)
        session.accessToken()
        assertFalse("a free lease: no wait", "lease_waited" in kinds(recorder.fence(client)))

        // Another process holds the lease for a minute; this one waits (on the fake clock).
        clock.advance(900_000)
        assertTrue(fleet.acquire("u1", "other-process", 60_000))
        val before = clock.now()
        session.accessToken()
        val waited = clock.now() - before
        val seen = recorder.until(EventKind.REFRESHED)
        assertEquals(listOf("lease_waited", "saved", "refresh_started", "saved", "refreshed"), kinds(seen))
        val wait = seen[0]
        assertEquals("u1", wait.key)
        assertNull(wait.errorCode)
        assertTrue("waited ${wait.durationMs} ms of $waited", wait.durationMs!! in 60_000..waited)

        // Giving up on a lease says conflict.
        val impatient = client(recorder, leaseWaitMs = 5_000)
        val (other, _) = seeded(impatient, "u2", fleet)
        recorder.until(EventKind.SAVED)
        assertTrue(fleet.acquire("u2", "busy", 3_600_000))
        expectError<FreshTokenException.Conflict> { other.accessToken() }
        val gaveUp = recorder.until(EventKind.LEASE_WAITED)
        assertEquals(listOf("lease_waited"), kinds(gaveUp))
        assertEquals("conflict", gaveUp[0].errorCode)
        assertTrue(gaveUp[0].durationMs!! >= 5_000)
    }

    @Test fun `a client token emits client_token_issued with its scope`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        client.clientToken(listOf("payments", "accounts"))
        val issued = recorder.until(EventKind.CLIENT_TOKEN_ISSUED).single()
        assertEquals("client_token_issued", issued.kindCode)
        assertEquals("sorted, space-separated", "accounts payments", issued.scope)
        assertNull("client tokens have no key", issued.key)
        assertEquals(1, issued.attempts)
        assertEquals(0L, issued.durationMs)

        // Cached: nothing.
        client.clientToken(listOf("accounts", "payments"))
        assertEquals(emptyList<String>(), kinds(recorder.fence(client)))
    }

    @Test fun `a revocation emits revoked, a client token's with its scope`() = blocking {
        val recorder = Recorder()
        val client = client(recorder)
        val (session, _) = seeded(client)
        session.accessToken()
        recorder.until(EventKind.REFRESHED)

        session.revoke()
        val seen = recorder.until(EventKind.REVOKED)
        assertEquals("dead before the server hears of it, the tokens dropped, then revoked",
            listOf("saved", "saved", "revoked"), kinds(seen))
        val revoked = seen[2]
        assertEquals("u1", revoked.key)
        assertNull(revoked.errorCode)
        assertEquals(0L, revoked.durationMs)

        // A revocation the server could not take says why.
        val (other, _) = seeded(client, "u2")
        recorder.until(EventKind.SAVED)
        emu.fault("kind" to "status", "status" to 503, "grant" to "revocation", "count" to 4)
        expectError<FreshTokenException.Transient> { other.revoke() }
        val failed = recorder.until(EventKind.REVOKED)
        assertEquals(listOf("saved", "revoked"), kinds(failed))
        assertEquals("transient", failed[1].errorCode)

        // Client tokens: one event per token, with its scope and no key.
        client.clientToken(listOf("accounts"))
        recorder.until(EventKind.CLIENT_TOKEN_ISSUED)
        client.revokeClientTokens()
        val tokens = recorder.until(EventKind.REVOKED)
        assertEquals(listOf("revoked"), kinds(tokens))
        assertEquals("accounts", tokens[0].scope)
        assertNull(tokens[0].key)
    }

    @Test fun `eventKeys hidden leaves the key out of every event`() = blocking {
        val recorder = Recorder()
        val client = client(recorder, eventKeys = "hidden")
        val (session, _) = seeded(client, "user-with-a-name")
        session.accessToken()
        val seen = recorder.until(EventKind.REFRESHED)
        assertEquals(5, seen.size)
        assertTrue(seen.all { it.key == null })
        assertFalse(seen.toString().contains("user-with-a-name"))

        // The full key is the default (a listener from a lambda here), and anything else is refused.
        val shown = LinkedBlockingQueue<TokenEvent>()
        seeded(client(EventListener { shown.put(it) }, eventKeys = "full"), "user-with-a-name")
        val saved = shown.poll(WAIT_S, TimeUnit.SECONDS)!!
        assertEquals("saved", saved.kindCode)
        assertEquals("user-with-a-name", saved.key)
        val bad = expectError<FreshTokenException.Config> { client(Recorder(), eventKeys = "hashed") }
        assertEquals("event_keys", bad.field)
    }

    // ---- listeners that throw, block or fall behind --------------------------

    @Test fun `a listener that throws changes nothing`() = blocking {
        val throwables = listOf<() -> Throwable>(
            { IllegalStateException("a listener that fails") },
            { HostException.Failed("a listener that fails politely") },
            { AssertionError("a listener's failed assertion") },
            { NotImplementedError("TODO() in a listener") },
        )
        for (make in throwables) {
            emu.reset()
            val recorder = object : Recorder() {
                override fun onEvent(event: TokenEvent) {
                    super.onEvent(event)
                    throw make()
                }
            }
            val client = client(recorder)
            val taskStore = TestStore()
            val (session, rt) = seeded(client, to = taskStore)
            val token = withTimeout(HANG_MS) { session.accessToken() }
            val stored = taskStore.record("u1")!!
            same(stored["access_token"], token, "the stored token is the one handed out")
            differ(stored["refresh_token"], rt, "rotated and saved")
            assertEquals(1L, emu.refreshRequests())
            val seen = recorder.until(EventKind.REFRESHED)
            assertEquals("the listener saw every event though it threw on each (${make().javaClass.simpleName})",
                listOf("saved", "saved", "refresh_started", "saved", "refreshed"), kinds(seen))
            same(session.accessToken(), token, "then mirrored")
        }
    }

    @Test fun `a slow listener delays no refresh`() = blocking {
        val entered = CountDownLatch(1)
        val release = CountDownLatch(1)
        val recorder = object : Recorder() {
            override fun onEvent(event: TokenEvent) {
                super.onEvent(event)
                entered.countDown()
                release.await()
            }
        }
        try {
            val client = client(recorder)
            val (session, rt) = seeded(client)
            assertTrue("the listener got the seed's save", entered.await(WAIT_S, TimeUnit.SECONDS))

            // The listener is stuck in its first event: the refresh goes on.
            val token = withTimeout(HANG_MS) { session.accessToken() }
            same(store.record("u1")!!["access_token"], token, "refreshed and saved")
            differ(store.record("u1")!!["refresh_token"], rt, "rotated")
            assertEquals(1L, emu.refreshRequests())
            assertEquals("only the first event reached the listener", 1, recorder.queue.size)
            assertEquals(1L, release.count)

            release.countDown()
            assertEquals(listOf("saved", "saved", "refresh_started", "saved", "refreshed"),
                kinds(recorder.until(EventKind.REFRESHED)))
        } finally {
            release.countDown()
        }
    }

    @Test fun `a listener more than 1,024 events behind loses the rest, never a call`() = blocking {
        val entered = CountDownLatch(1)
        val release = CountDownLatch(1)
        val recorder = object : Recorder() {
            override fun onEvent(event: TokenEvent) {
                super.onEvent(event)
                entered.countDown()
                release.await()
            }
        }
        try {
            val client = client(recorder)
            val (session, rt) = seeded(client)
            assertTrue(entered.await(WAIT_S, TimeUnit.SECONDS))
            // The first event is taken: 1,024 more fit in the queue, the rest are dropped.
            repeat(1_100) { session.seed(SeedOptions(refreshToken = rt)) }
            val token = withTimeout(HANG_MS) { session.accessToken() }
            same(store.record("u1")!!["access_token"], token, "the refresh went on")

            // Released, the listener gets the first and the 1,024 queued (then the
            // queue is empty, so the fence is not dropped), and nothing else.
            release.countDown()
            val seen = (1..1 + 1_024).map {
                recorder.queue.poll(WAIT_S, TimeUnit.SECONDS) ?: throw AssertionError("only ${it - 1} events came")
            }
            assertTrue("the seeds' saves", seen.all { it.kind == EventKind.SAVED })
            assertEquals("the other seeds' and the refresh's events were dropped",
                emptyList<String>(), kinds(recorder.fence(client)))
        } finally {
            release.countDown()
        }
    }

    // ---- the secret scan ----------------------------------------------------------

    /** The tokens a stored record holds. */
    private fun recordSecrets(record: String?): List<String> {
        val fields = Json.obj(record ?: return emptyList())
        return listOf("access_token", "refresh_token", "id_token").mapNotNull { fields[it] as? String }
    }

    /** Runs a scenario that emits [kind]; returns every event it emitted and every secret it saw. */
    private suspend fun scenario(kind: EventKind): Pair<List<TokenEvent>, List<String>> {
        val recorder = Recorder()
        val client = client(recorder)
        val secrets = mutableListOf(CLIENT_SECRET)
        val store = TestStore()
        when (kind) {
            EventKind.REFRESH_STARTED, EventKind.REFRESHED, EventKind.SAVED -> {
                val request = client.authorizationUrl(AuthorizationUrlOptions(redirectUri = REDIRECT, scopes = listOf("openid")))
                val code = approvedCode(request.url)
                secrets += listOf(code, request.codeVerifier)
                val session = client.exchangeCode(ExchangeCodeOptions(code, request.codeVerifier, REDIRECT), "u1", store)
                secrets += recordSecrets(store.get("u1"))
                repeat(2) {
                    secrets += session.refresh().accessToken
                    secrets += recordSecrets(store.get("u1"))
                }
            }
            EventKind.REFRESH_FAILED -> {
                val (session, rt) = seeded(client, to = store)
                secrets += rt
                emu.fault("kind" to "status", "status" to 503, "count" to 4)
                expectError<FreshTokenException.Transient> { session.accessToken() }
            }
            EventKind.REAUTHORIZATION_REQUIRED -> {
                val (session, rt) = seeded(client, to = store)
                secrets += rt
                secrets += recordSecrets(store.get("u1"))
                // The server refuses the token (as after its use elsewhere).
                emu.fault("kind" to "body", "status" to 400, "body" to """{"error":"invalid_grant"}""", "grant" to "refresh_token")
                expectError<FreshTokenException.ReauthorizationRequired> { session.accessToken() }
            }
            EventKind.SAVE_FAILED -> {
                val (session, rt) = seeded(client, to = store)
                secrets += rt
                store.failSaves = 1
                store.failOnly = { it["in_doubt"] != true }
                expectError<FreshTokenException.Storage> { session.accessToken() }
                secrets += session.accessToken()
                secrets += recordSecrets(store.get("u1"))
            }
            EventKind.LEASE_WAITED -> {
                val fleet = InMemoryFleetStore(clock::now)
                val (session, rt) = seeded(client, to = fleet)
                secrets += rt
                fleet.acquire("u1", "another-process", 30_000)
                secrets += session.accessToken()
                secrets += recordSecrets(fleet.get("u1"))
            }
            EventKind.CLIENT_TOKEN_ISSUED -> {
                secrets += client.clientToken(listOf("accounts"))
                secrets += client.clientToken(listOf("payments"))
            }
            EventKind.CLIENT_TOKEN_FAILED -> {
                secrets += client.clientToken(listOf("accounts"))
                secrets += client.clientToken(listOf("balances"))
                emu.fault("kind" to "body", "status" to 401, "body" to """{"error":"invalid_client"}""")
                expectError<FreshTokenException.InvalidClient> { client.clientToken(listOf("payments")) }
            }
            EventKind.REVOKED -> {
                val (session, rt) = seeded(client, to = store)
                secrets += rt
                secrets += session.accessToken()
                secrets += recordSecrets(store.get("u1"))
                session.revoke()
                secrets += client.clientToken(listOf("accounts"))
                client.revokeClientTokens()
            }
        }
        client.clientTokens().invalidate(listOf("fence"))
        secrets += client.clientToken(listOf("fence"))
        val events = recorder.until("the fence") { it.scope == "fence" }
        return events to secrets
    }

    @Test fun `no event of any kind carries a token or a secret`() = blocking {
        for (kind in EventKind.values()) {
            emu.reset()
            val (events, secrets) = scenario(kind)
            assertTrue("the ${kind.code} scenario emitted ${kinds(events)}", events.any { it.kind == kind })
            assertTrue("${kind.code}: its secrets", secrets.size >= 3 && secrets.all { it.length >= 8 })
            for (event in events) {
                val shown = listOf(event.toString(), event.key, event.scope, event.errorCode, event.kindCode, event.reasonCode)
                    .joinToString(" ")
                for (secret in secrets) {
                    if (shown.contains(secret)) {
                        fail("a ${kind.code}-scenario event shows a secret: ${shown.replace(secret, "<the secret>")}")
                    }
                }
            }
        }
    }
}

private fun kinds(events: List<TokenEvent>): List<String> = events.map { it.kindCode }
