package dev.freshtoken.support

import java.io.IOException
import java.io.InputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.concurrent.CompletableFuture
import java.util.concurrent.atomic.AtomicLong

/**
 * A loopback HTTP server whose every answer is a 200 with a body that never
 * ends, for the response-size cap. It counts the body bytes it manages to
 * write; [closed] completes with that count when the client has dropped the
 * connection (a write failed). (Stands in for the emulator's `endless`
 * fault until that is available.)
 *
 * - [Mode.CHUNKED]: `Transfer-Encoding: chunked`, 16 KiB chunks, no last chunk;
 * - [Mode.HUGE_LENGTH]: `Content-Length` of 1 TiB;
 * - [Mode.TRICKLE]: chunked, one byte every [trickleMs] (a server that is
 *   slow forever; the pace is the fault, not a synchronisation).
 */
class EndlessServer(private val mode: Mode, private val trickleMs: Long = 20) : AutoCloseable {
    enum class Mode { CHUNKED, HUGE_LENGTH, TRICKLE }

    private val server = ServerSocket(0, 50, InetAddress.getLoopbackAddress())
    val url = "http://127.0.0.1:${server.localPort}/connect/token"

    /** Body bytes written so far (all connections). */
    val written = AtomicLong()

    /** Completed with [written] when the first connection was dropped by the client. */
    val closed = CompletableFuture<Long>()

    init {
        Thread({
            while (!server.isClosed) {
                val socket = try { server.accept() } catch (_: IOException) { break }
                Thread({ serve(socket) }, "endless-connection").apply { isDaemon = true; start() }
            }
        }, "endless-server").apply { isDaemon = true; start() }
    }

    private fun serve(socket: Socket) = socket.use {
        try {
            readRequest(socket.getInputStream())
            val out = socket.getOutputStream()
            val head = when (mode) {
                Mode.HUGE_LENGTH -> "Content-Length: ${1L shl 40}\r\n"
                else -> "Transfer-Encoding: chunked\r\n"
            }
            out.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n$head\r\n".toByteArray())
            fun body(bytes: ByteArray) {
                if (mode == Mode.HUGE_LENGTH) {
                    out.write(bytes)
                } else {
                    out.write((Integer.toHexString(bytes.size) + "\r\n").toByteArray())
                    out.write(bytes)
                    out.write("\r\n".toByteArray())
                }
                out.flush()
                written.addAndGet(bytes.size.toLong())
            }
            body("{\"access_token\":\"".toByteArray())
            val chunk = ByteArray(if (mode == Mode.TRICKLE) 1 else 16 * 1024) { '7'.code.toByte() }
            while (true) {
                body(chunk)
                if (mode == Mode.TRICKLE) Thread.sleep(trickleMs)
            }
        } catch (_: IOException) {
            closed.complete(written.get())
        } catch (_: InterruptedException) {
        }
    }

    /** Reads the request line, headers and a Content-Length body. */
    private fun readRequest(input: InputStream) {
        val head = StringBuilder()
        while (!head.endsWith("\r\n\r\n")) {
            val c = input.read()
            if (c < 0) throw IOException("request ended early")
            head.append(c.toChar())
        }
        val length = Regex("(?im)^content-length:\\s*(\\d+)").find(head)?.groupValues?.get(1)?.toLong() ?: 0
        var left = length
        while (left > 0) {
            val n = input.skip(left)
            if (n <= 0) { if (input.read() < 0) break else left-- } else left -= n
        }
    }

    override fun close() {
        server.close()
    }
}
