package dev.freshtoken

import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.SocketTimeoutException
import java.net.URI
import java.net.UnknownHostException
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.withContext

/**
 * The default [HttpClient]: `java.net.HttpURLConnection` (Android and the
 * JVM alike, so it follows the platform's proxy, certificate and network
 * security settings), run on a view of `Dispatchers.IO` of its own (64
 * threads the app's blocking I/O cannot take).
 *
 * - POSTs the request's headers and body with a fixed `Content-Length`
 *   (streaming mode, so the JDK never silently re-sends a POST that may
 *   have consumed a single-use refresh token);
 * - never follows redirects;
 * - the whole exchange within `timeoutMs`: connect timeout `timeoutMs`,
 *   read timeout what is left of it, and the status line, the headers and
 *   the body must be complete by then (a server that trickles bytes
 *   forever gets [HostException.Timeout], its connection dropped at the
 *   deadline); a body read to its end (Content-Length or end of stream) is
 *   delivered however late;
 * - a paused process (Android's freezer of cached apps, SIGSTOP, a long VM
 *   pause) finds every deadline past on resume, though the answer may be in
 *   its socket: a deadline that passed over 100 ms late is moved once, by
 *   min(lateness, `timeoutMs`, 250 ms), as the core moves its own, so that
 *   answer (and the rotated refresh token in it) is read, not lost;
 * - reads error bodies too, stops reading one byte past `maxResponseBytes`
 *   (the core rejects the over-size answer) and then drops the connection,
 *   so an endless answer is read no further;
 * - failures before anything was written (connection refused, unknown
 *   host, connect timeout, TLS handshake) are [HostException.NotSent] and
 *   may be retried; a read timeout is [HostException.Timeout]; anything
 *   else after sending is [HostException.Failed] (the server may have
 *   processed the request).
 *
 * It logs nothing, and its error details never hold a header or a body.
 */
open class HttpUrlConnectionClient : HttpClient {

    /** Opens the connection (override to set a `SSLSocketFactory`, a proxy, …). */
    protected open fun open(uri: URI): HttpURLConnection =
        uri.toURL().openConnection() as HttpURLConnection

    /** This client's own threads for its blocking exchanges. */
    private val io = blockingIo()

    override suspend fun send(request: HttpRequest): HttpResponse {
        // The budget starts when the core asks: a wait for a thread counts.
        val started = System.nanoTime()
        return withContext(io) { exchange(request, started) }
    }

    private fun exchange(request: HttpRequest, started: Long): HttpResponse {
        val timeoutMs = request.timeoutMs.coerceIn(1L, Int.MAX_VALUE.toLong()).toInt()
        val deadline = Deadline(started, timeoutMs * 1_000_000L)
        val uri = try {
            URI(request.url).also {
                val scheme = it.scheme?.lowercase()
                require(scheme == "http" || scheme == "https") { "not an http(s) URL" }
            }
        } catch (e: Exception) {
            throw HostException.NotSent("invalid URL (${e.javaClass.simpleName})")
        }
        val body = request.body.toByteArray(Charsets.UTF_8)
        // The budget spent waiting for a thread: nothing is sent that late.
        // (No pause grace here: it is for an answer already received.)
        if (deadline.reached()) throw HostException.NotSent("no time left to send the request")

        // 1. Connect: nothing of the request has left yet.
        val conn = try {
            open(uri).apply {
                requestMethod = request.method
                instanceFollowRedirects = false
                useCaches = false
                doInput = true
                connectTimeout = remainingMs(deadline)
                readTimeout = remainingMs(deadline)
                for (h in request.headers) addRequestProperty(h.name, h.value)
                if (body.isNotEmpty() || request.method == "POST") {
                    doOutput = true
                    setFixedLengthStreamingMode(body.size)
                }
                connect()
            }
        } catch (e: IOException) {
            throw notSent(e)
        } catch (e: RuntimeException) {
            // Bad method or header names and the like: nothing was sent.
            throw HostException.NotSent("request rejected before sending (${e.javaClass.simpleName})")
        }

        // Connected late (the process was paused while connecting): still
        // nothing written, and nothing is sent past the deadline.
        if (deadline.reached()) {
            conn.disconnect()
            throw HostException.NotSent("no time left to send the request")
        }

        // The read timeout bounds each read, not the status line and the
        // headers as a whole: at the deadline the connection is dropped,
        // which ends a read in progress.
        val watch = Watch(deadline, conn).apply { start() }
        try {
            // 2. Send: from here on the server may have seen (part of) it.
            if (conn.doOutput) conn.outputStream.use { it.write(body) }

            // 3. Answer: the rest of the time budget bounds each read.
            conn.readTimeout = remainingMs(deadline)
            val status = conn.responseCode
            if (status !in 100..599) throw HostException.Failed("not an HTTP answer")
            val headers = buildList {
                for ((name, values) in conn.headerFields) {
                    if (name == null) continue // the status line
                    for (value in values) add(HttpHeader(name, value))
                }
            }
            val stream = if (status >= 400) conn.errorStream else conn.inputStream
            val limit = request.maxResponseBytes.coerceIn(0L, (Int.MAX_VALUE - 1).toLong()).toInt()
            // Past the cap (or the deadline) nothing more is read: closing
            // the stream and disconnecting close the connection. (The JDK
            // drops what its buffers hold; only a declared Content-Length of
            // at most 512 KiB may be drained in the background to keep the
            // connection alive.)
            val length = conn.contentLengthLong
            val bytes = stream?.use { readAtMost(it, limit + 1, length, deadline) }
                ?: if (status == 401) UNAUTHORIZED_BODY else ByteArray(0)
            return HttpResponse(status, headers, bytes)
        } catch (e: HostException) {
            throw e
        } catch (e: SocketTimeoutException) {
            throw HostException.Timeout()
        } catch (e: IOException) {
            if (deadline.over) throw HostException.Timeout()
            throw HostException.Failed("${e.javaClass.simpleName}: ${e.message ?: "I/O error"}")
        } catch (e: RuntimeException) {
            // The JDK's HttpURLConnection, disconnected by the watch while it
            // reads the answer, may throw a NullPointerException instead of an
            // IOException.
            if (deadline.over) throw HostException.Timeout()
            throw HostException.Failed("${e.javaClass.simpleName} after sending")
        } finally {
            watch.cancel()
            conn.disconnect()
        }
    }

    /**
     * An exchange's deadline on System.nanoTime, shared by the thread that
     * reads and the [Watch] that drops the connection. The first look at it
     * over [PAUSE_NS] late (the whole process stood still: nothing saw it
     * pass in time) moves it once, by min(lateness, the timeout, [GRACE_NS]);
     * past that, or past a deadline seen in time, it is [over] for good.
     */
    private class Deadline(started: Long, private val lengthNs: Long) {
        private val first = started + lengthNs
        private var at = first
        private var graced = false

        @Volatile var over = false
            private set

        /** Whether the deadline as first set has passed (no grace: for what is not sent yet). */
        fun reached(): Boolean = System.nanoTime() - first >= 0

        /** Nanoseconds left, the grace included if given (0 when none). */
        @Synchronized fun remainingNs(): Long = (at - System.nanoTime()).coerceAtLeast(0)

        /** Whether it has passed; a first look over [PAUSE_NS] late moves it instead. */
        @Synchronized fun passed(): Boolean {
            if (over) return true
            val now = System.nanoTime()
            val late = now - at
            if (late < 0) return false
            if (!graced && late > PAUSE_NS) {
                graced = true
                at = now + minOf(late, lengthNs, GRACE_NS)
                return false
            }
            over = true
            return true
        }
    }

    /** Drops `conn` once `deadline` has passed (set again when it was moved). */
    private class Watch(private val deadline: Deadline, private val conn: HttpURLConnection) : Runnable {
        private var task: ScheduledFuture<*>? = null
        private var done = false

        @Synchronized fun start() {
            if (!done) task = deadlines.schedule(this, deadline.remainingNs(), TimeUnit.NANOSECONDS)
        }

        override fun run() {
            synchronized(this) {
                if (done) return
                if (!deadline.passed()) return start()
                done = true
            }
            conn.disconnect()
        }

        @Synchronized fun cancel() {
            done = true
            task?.cancel(false)
        }
    }

    private companion object {
        /** How late a deadline may be seen before the process counts as paused (threads run a few ms late under load). */
        const val PAUSE_NS = 100_000_000L
        /** The most a deadline is moved by after a pause. */
        const val GRACE_NS = 250_000_000L

        /** Drops connections at their exchange's deadline (one daemon thread for all clients). */
        val deadlines: ScheduledExecutorService =
            ScheduledThreadPoolExecutor(1) { task -> Thread(task, "freshtoken-http-deadline").apply { isDaemon = true } }
                .apply { removeOnCancelPolicy = true }

        /**
         * The JDK's HttpURLConnection discards the body of a 401 answer to a
         * streamed request (it throws HttpRetryException internally and
         * disconnects), and streaming is what keeps it from re-sending a POST.
         * A 401 from a token endpoint is `invalid_client` (RFC 6749 §5.2), so
         * that is what the core is told when the body is gone. (Android's
         * HttpURLConnection keeps the body; then the server's own is used.)
         */
        val UNAUTHORIZED_BODY =
            """{"error":"invalid_client","error_description":"HTTP 401; the JDK discarded the answer's body"}"""
                .toByteArray(Charsets.UTF_8)
    }

    private fun notSent(e: IOException): HostException = when (e) {
        is SocketTimeoutException -> HostException.NotSent("connect timed out")
        is UnknownHostException -> HostException.NotSent("unknown host")
        // ConnectException (refused), NoRouteToHostException, TLS handshake, …
        else -> HostException.NotSent("${e.javaClass.simpleName}: ${e.message ?: "cannot connect"}")
    }

    /** Milliseconds left until `deadline`, at least 1. */
    private fun remainingMs(deadline: Deadline): Int =
        (deadline.remainingNs() / 1_000_000).coerceIn(1, Int.MAX_VALUE.toLong()).toInt()

    /**
     * Reads until end of stream, `length` bytes (the declared Content-Length,
     * or -1) or `max` bytes, whichever comes first. The deadline is looked at
     * before each read, never after one: a body read to its end is returned
     * however late, and past the deadline no read starts
     * ([HostException.Timeout]).
     */
    private fun readAtMost(input: InputStream, max: Int, length: Long, deadline: Deadline): ByteArray {
        val out = java.io.ByteArrayOutputStream(minOf(max, 16 * 1024))
        val buffer = ByteArray(8 * 1024)
        while (out.size() < max && (length < 0 || out.size() < length)) {
            if (deadline.passed()) throw HostException.Timeout()
            val n = input.read(buffer, 0, minOf(buffer.size, max - out.size()))
            if (n < 0) break
            out.write(buffer, 0, n)
        }
        return out.toByteArray()
    }
}
