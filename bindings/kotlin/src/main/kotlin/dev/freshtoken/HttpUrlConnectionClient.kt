package dev.freshtoken

import java.io.IOException
import java.io.InputStream
import java.net.HttpURLConnection
import java.net.SocketTimeoutException
import java.net.URI
import java.net.UnknownHostException
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledThreadPoolExecutor
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean
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
 *   deadline);
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
        val deadline = started + timeoutMs * 1_000_000L
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
        if (System.nanoTime() >= deadline) throw HostException.NotSent("no time left to send the request")

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

        // The read timeout bounds each read, not the status line and the
        // headers as a whole: at the deadline the connection is dropped,
        // which ends a read in progress.
        val expired = AtomicBoolean()
        val watch = deadlines.schedule(
            { expired.set(true); conn.disconnect() },
            (deadline - System.nanoTime()).coerceAtLeast(0),
            TimeUnit.NANOSECONDS,
        )
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
            val bytes = stream?.use { readAtMost(it, limit + 1, deadline) }
                ?: if (status == 401) UNAUTHORIZED_BODY else ByteArray(0)
            return HttpResponse(status, headers, bytes)
        } catch (e: HostException) {
            throw e
        } catch (e: SocketTimeoutException) {
            throw HostException.Timeout()
        } catch (e: IOException) {
            if (expired.get()) throw HostException.Timeout()
            throw HostException.Failed("${e.javaClass.simpleName}: ${e.message ?: "I/O error"}")
        } finally {
            watch.cancel(false)
            conn.disconnect()
        }
    }

    private companion object {
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

    /** Milliseconds left until `deadline` (a System.nanoTime value), at least 1. */
    private fun remainingMs(deadline: Long): Int =
        ((deadline - System.nanoTime()) / 1_000_000).coerceIn(1, Int.MAX_VALUE.toLong()).toInt()

    /**
     * Reads until end of stream or `max` bytes, whichever comes first; past
     * `deadline` (System.nanoTime) it gives up with [HostException.Timeout].
     */
    private fun readAtMost(input: InputStream, max: Int, deadline: Long): ByteArray {
        val out = java.io.ByteArrayOutputStream(minOf(max, 16 * 1024))
        val buffer = ByteArray(8 * 1024)
        while (out.size() < max) {
            val n = input.read(buffer, 0, minOf(buffer.size, max - out.size()))
            if (n < 0) break
            out.write(buffer, 0, n)
            if (System.nanoTime() - deadline > 0 && out.size() < max) throw HostException.Timeout()
        }
        return out.toByteArray()
    }
}
