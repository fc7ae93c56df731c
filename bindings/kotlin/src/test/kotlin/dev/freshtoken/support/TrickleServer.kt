package dev.freshtoken.support

import java.io.IOException
import java.io.InputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.CompletableFuture

/**
 * A loopback HTTP server that answers 200 with a chunked body that never
 * ends, one byte every [paceMs] (or, with [inHeaders], a header that never
 * ends): a server slow forever (the pace is the fault, not a
 * synchronisation). [closed] completes when the client has dropped the
 * connection (a write failed). The emulator's `endless` fault writes as
 * fast as the client reads; this is the slow case it lacks.
 */
class TrickleServer(private val paceMs: Long = 20, private val inHeaders: Boolean = false) : AutoCloseable {
    private val server = ServerSocket(0, 50, InetAddress.getLoopbackAddress())
    val url = "http://127.0.0.1:${server.localPort}/connect/token"

    /** Completed when the first connection was dropped by the client. */
    val closed = CompletableFuture<Unit>()

    init {
        Thread({
            while (!server.isClosed) {
                val socket = try { server.accept() } catch (_: IOException) { break }
                Thread({ serve(socket) }, "trickle-connection").apply { isDaemon = true; start() }
            }
        }, "trickle-server").apply { isDaemon = true; start() }
    }

    private fun serve(socket: Socket) = socket.use {
        try {
            readRequest(socket.getInputStream())
            val out = socket.getOutputStream()
            if (inHeaders) {
                out.write("HTTP/1.1 200 OK\r\nX-Slow: ".toByteArray())
                while (true) {
                    out.write('a'.code)
                    out.flush()
                    Thread.sleep(paceMs)
                }
            }
            out.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".toByteArray())
            fun chunk(text: String) {
                out.write("${Integer.toHexString(text.length)}\r\n$text\r\n".toByteArray())
                out.flush()
            }
            chunk("{\"access_token\":\"")
            while (true) {
                chunk("7")
                Thread.sleep(paceMs)
            }
        } catch (_: IOException) {
            closed.complete(Unit)
        } catch (_: InterruptedException) {
        }
    }

    /** Reads the request line, the headers and a Content-Length body. */
    private fun readRequest(input: InputStream) {
        val head = StringBuilder()
        while (!head.endsWith("\r\n\r\n")) {
            val c = input.read()
            if (c < 0) throw IOException("request ended early")
            head.append(c.toChar())
        }
        var left = Regex("(?im)^content-length:\\s*(\\d+)").find(head)?.groupValues?.get(1)?.toLong() ?: 0
        while (left > 0 && input.read() >= 0) left--
    }

    override fun close() {
        server.close()
    }
}
