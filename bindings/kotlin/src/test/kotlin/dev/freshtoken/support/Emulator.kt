package dev.freshtoken.support

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.net.HttpURLConnection
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.Socket
import java.net.URI
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit

/**
 * The project's token-endpoint emulator (tests/emulator) as a child process,
 * started with `--port 0 --exit-on-stdin-eof`, and its admin API (see
 * tests/emulator/README.md). Nothing here prints a token: failures show HTTP
 * statuses and admin error codes only.
 *
 * The binary: $FRESHTOKEN_EMULATOR_BIN, else <repo>/target/debug/freshtoken-emulator,
 * where <repo> is the system property `freshtoken.repo` or the working directory.
 */
class Emulator private constructor(private val process: Process, ready: Map<String, Any?>) : AutoCloseable {
    val tokenEndpoint = ready["token_endpoint"] as String
    val authorizationEndpoint = ready["authorization_endpoint"] as String
    val adminEndpoint = (ready["admin_endpoint"] as String).trimEnd('/')
    /** The base URL, the `issuer` of its discovery document. */
    val issuer = ready["issuer"] as String
    val revocationEndpoint = ready["revocation_endpoint"] as String
    val discoveryEndpoint = ready["discovery_endpoint"] as String
    val port = (ready["port"] as Long).toInt()

    /** A token set as if a user had just linked (refresh_token, access_token, …). */
    fun seed(scope: String = "openid offline_access accounts", clientId: String = "test-client"): Map<String, Any?> =
        admin("POST", "seed", mapOf("client_id" to clientId, "scope" to scope))

    fun counters(): Map<String, Any?> = admin("GET", "counters")

    /** `by_grant[grant]` of the counters: token requests with that grant_type. */
    fun grantRequests(grant: String): Long {
        @Suppress("UNCHECKED_CAST")
        val byGrant = counters()["by_grant"] as Map<String, Any?>? ?: return 0
        return byGrant[grant] as Long? ?: 0
    }

    fun refreshRequests(): Long = grantRequests("refresh_token")

    fun counter(name: String): Long = counters()[name] as Long

    /** `revocation_by_hint[hint]` of the counters: revocation requests with that `token_type_hint`. */
    fun revocationsByHint(hint: String): Long {
        @Suppress("UNCHECKED_CAST")
        val byHint = counters()["revocation_by_hint"] as Map<String, Any?>? ?: return 0
        return byHint[hint] as Long? ?: 0
    }

    /** Serves the discovery document in [mode] (`normal`, `not_found`, `wrong_issuer`, `insecure_token_endpoint`, `invalid_json`) until changed or reset. */
    fun discovery(mode: String): Map<String, Any?> = admin("POST", "discovery", mapOf("mode" to mode))

    /** Queues one fault object (see the README's fault table). */
    fun fault(vararg pairs: Pair<String, Any?>): Map<String, Any?> = admin("POST", "faults", mapOf(*pairs))

    fun clearFaults(): Map<String, Any?> = admin("DELETE", "faults")

    /**
     * Queues a `hold` fault: the next `count` token requests (of `grant`, if
     * given) stay unanswered until [releaseHeld]; then they meet the next
     * queued fault that is not a hold, or are processed normally.
     */
    fun hold(count: Int = 1, grant: String? = "refresh_token") =
        fault(*listOfNotNull("kind" to "hold", "count" to count, grant?.let { "grant" to it }).toTypedArray())

    /** Blocks until at least `count` requests are held (the emulator answers 504, and this throws, after 20 s). */
    fun waitHeld(count: Int = 1): Long =
        admin("POST", "held/wait", mapOf("count" to count, "timeout_ms" to 20_000))["held"] as Long

    /** Lets every held request go on; returns how many. */
    fun releaseHeld(): Long = admin("POST", "held/release")["released"] as Long

    /** Queues an `endless` answer (framing `chunked`, `length` or `close`). */
    fun endless(framing: String = "chunked", status: Int = 200) =
        fault("kind" to "endless", "framing" to framing, "status" to status)

    /**
     * Blocks until `count` endless answers have ended (throws after 20 s);
     * returns them: `status`, `framing`, `bytes_written`, `end`
     * (`client_closed`, `max_bytes` or `stalled`).
     */
    @Suppress("UNCHECKED_CAST")
    fun waitStreamsEnded(count: Int = 1): List<Map<String, Any?>> {
        val answer = Json.parse(adminText("POST", "streams/wait", mapOf("count" to count, "timeout_ms" to 20_000)))
        return (if (answer is Map<*, *>) answer["streams"] else answer) as List<Map<String, Any?>>
    }

    fun reset(): Map<String, Any?> = admin("POST", "reset")

    /** active | consumed | revoked | expired | unknown */
    fun refreshTokenState(refreshToken: String): String =
        admin("POST", "refresh-token-state", mapOf("refresh_token" to refreshToken))["state"] as String

    fun admin(method: String, route: String, body: Any? = null): Map<String, Any?> = Json.obj(adminText(method, route, body))

    private fun adminText(method: String, route: String, body: Any? = null): String {
        val conn = URI("$adminEndpoint/$route").toURL().openConnection() as HttpURLConnection
        try {
            conn.requestMethod = method
            conn.connectTimeout = 10_000
            conn.readTimeout = 30_000
            if (body != null) {
                val bytes = Json.write(body).toByteArray()
                conn.doOutput = true
                conn.setRequestProperty("content-type", "application/json")
                conn.setFixedLengthStreamingMode(bytes.size)
                conn.outputStream.use { it.write(bytes) }
            }
            val status = conn.responseCode
            val stream = if (status >= 400) conn.errorStream else conn.inputStream
            val text = stream?.use { String(it.readBytes()) } ?: ""
            if (status >= 400) {
                // Admin error bodies are {"error","error_description"}: no tokens.
                val err = runCatching { Json.obj(text) }.getOrNull()
                throw IllegalStateException("emulator admin $method /admin/$route answered HTTP $status: ${err?.get("error")} ${err?.get("error_description") ?: ""}")
            }
            return text
        } finally {
            conn.disconnect()
        }
    }

    /** Closes stdin (the emulator exits on EOF) and waits; kills it if it lingers. */
    override fun close() {
        runCatching { process.outputStream.close() }
        if (!process.waitFor(5, TimeUnit.SECONDS)) {
            process.destroyForcibly()
            process.waitFor(5, TimeUnit.SECONDS)
        }
    }

    companion object {
        fun binary(): File {
            System.getenv("FRESHTOKEN_EMULATOR_BIN")?.let { return File(it) }
            val repo = System.getProperty("freshtoken.repo") ?: "."
            return File(repo, "target/debug/freshtoken-emulator")
        }

        fun start(vararg extraArgs: String): Emulator {
            val bin = binary()
            check(bin.canExecute()) {
                "freshtoken-emulator not found at $bin: run `cargo build -p freshtoken-emulator` (or set FRESHTOKEN_EMULATOR_BIN)"
            }
            val stderr = File.createTempFile("freshtoken-emulator", ".stderr").apply { deleteOnExit() }
            val process = ProcessBuilder(listOf(bin.path, "--port", "0", "--exit-on-stdin-eof") + extraArgs)
                .redirectError(stderr)
                .start()
            val reader = BufferedReader(InputStreamReader(process.inputStream))
            val line = CompletableFuture.supplyAsync { reader.readLine() }
            val ready = try {
                // A bound for a hang only: a busy machine may take seconds to start it.
                val text = line.get(60, TimeUnit.SECONDS)
                    ?: error("freshtoken-emulator exited before it was ready: ${stderr.readText().takeLast(2000)}")
                Json.obj(text).also { check(it["ready"] == true) { "not a ready line" } }
            } catch (e: Exception) {
                process.destroyForcibly()
                throw IllegalStateException("freshtoken-emulator did not start: ${e.message}", e)
            }
            // Keep draining stdout (it prints nothing more) so the pipe never fills.
            Thread({ runCatching { while (reader.readLine() != null) continue } }, "emulator-stdout").apply {
                isDaemon = true
                start()
            }
            val emulator = Emulator(process, ready)
            Runtime.getRuntime().addShutdownHook(Thread { process.destroyForcibly() })
            return emulator
        }

        /**
         * A loopback port nothing listens on: bound and never listening, so
         * that connections to it are refused (Linux) and no other socket can
         * take it meanwhile, as one released at once could be. Kept bound
         * until the JVM exits.
         */
        fun closedPort(): Int {
            val socket = Socket()
            socket.bind(InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0))
            synchronized(closedPorts) { closedPorts.add(socket) }
            return socket.localPort
        }

        /** The sockets of [closedPort]. */
        private val closedPorts = mutableListOf<Socket>()
    }
}
