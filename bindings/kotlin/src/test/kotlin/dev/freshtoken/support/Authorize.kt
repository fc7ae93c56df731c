package dev.freshtoken.support

import java.net.HttpURLConnection
import java.net.URI
import java.net.URLDecoder
import org.junit.Assert.assertEquals

/** Follows the authorize URL once, without redirects (the emulator approves at once): its `Location`. */
fun authorizeRedirect(url: String): String {
    val conn = URI(url).toURL().openConnection() as HttpURLConnection
    try {
        conn.instanceFollowRedirects = false
        assertEquals(302, conn.responseCode)
        return conn.getHeaderField("location")
    } finally {
        conn.disconnect()
    }
}

/** The code the emulator's authorize endpoint redirects with for `url`. */
fun approvedCode(url: String): String =
    URI(authorizeRedirect(url)).rawQuery.split('&').map { it.split('=', limit = 2) }
        .first { it[0] == "code" }[1].let { URLDecoder.decode(it, Charsets.UTF_8) }
