package dev.freshtoken.support

import dev.freshtoken.FileTokenStore
import dev.freshtoken.SeedOptions
import dev.freshtoken.TokenClient
import dev.freshtoken.TokenClientOptions
import java.nio.file.Paths
import kotlin.system.exitProcess

/**
 * The exiting process of FileTokenStoreProcessesTest, run in a child JVM: seeds `u1` in a
 * FileTokenStore directory, starts a refresh whose caller does not wait
 * (the emulator holds it), prints `started`; then, on a line on stdin,
 * prints `exiting` and exits the JVM. Arguments: token endpoint,
 * directory, refresh token.
 */
fun main(args: Array<String>) {
    val (endpoint, directory, refreshToken) = args
    val client = TokenClient(TokenClientOptions(tokenEndpoint = endpoint, clientId = "test-client", clientSecret = "test-secret"))
    val store = FileTokenStore(Paths.get(directory))
    client.session("u1", store).seedBlocking(SeedOptions(refreshToken = refreshToken))
    client.session("u1", store).accessTokenAsync()
    println("started")
    System.out.flush()
    readLine()
    println("exiting")
    System.out.flush()
    exitProcess(0)
}
