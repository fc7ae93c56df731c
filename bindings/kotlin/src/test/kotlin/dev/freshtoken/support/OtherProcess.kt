package dev.freshtoken.support

import dev.freshtoken.FileTokenStore
import dev.freshtoken.FreshTokenException
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import java.nio.file.Paths

/**
 * The other process of FileTokenStoreProcessesTest, run in a child JVM:
 * one `accessToken()` on a FileTokenStore directory. Prints `refused` each
 * time the lease is refused, then `token <value>` or `error <code>`.
 * Arguments: token endpoint, directory, `lease` or `one-process`.
 */
fun main(args: Array<String>) {
    val (endpoint, directory, mode) = args
    val store = object : FileTokenStore(Paths.get(directory)) {
        override fun supportsLease() = mode == "lease"
        override fun supportsVersions() = mode == "lease"

        override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean =
            super.acquire(key, owner, ttlMs).also { if (!it) println("refused").also { System.out.flush() } }
    }
    val options = TokenClientOptions(tokenEndpoint = endpoint, clientId = "test-client", clientSecret = "test-secret")
    TokenClient(options).use { client ->
        try {
            println("token " + client.session("u1", store).accessTokenBlocking())
        } catch (e: FreshTokenException) {
            println("error " + e.code)
        }
    }
    System.out.flush()
}
