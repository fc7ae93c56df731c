package dev.freshtoken

import java.util.concurrent.CompletableFuture

/**
 * One user's tokens, on the session [key] of a [TokenClient]. All handles
 * with the same key in one client share one state in the core and one
 * mirrored token in the client, so make one per request:
 * `client.session(userId, store).accessToken()`.
 *
 * No native object exists until a call needs one: [accessToken] on a fresh
 * mirrored token is a map lookup and a clock read. Every other call drops the
 * key's mirrored token first and mirrors the core's token again after it
 * succeeds.
 */
class UserSession internal constructor(
    private val client: TokenClient,
    /** The session key. */
    val key: String,
    private val store: TokenStore,
    created: FfiUserSession? = null,
) : AutoCloseable {
    @Volatile
    private var handle: FfiUserSession? = created

    @Volatile
    private var closed = false

    /**
     * A fresh access token: the mirrored one while it is fresh on the
     * client's clock (no FFI call), else from the core (in memory, or one
     * refresh shared by every caller of this key, which returns only after
     * the rotated refresh token is saved).
     *
     * @throws FreshTokenException (see [FreshTokenException.code])
     */
    @Throws(FreshTokenException::class)
    suspend fun accessToken(): String = mirroredToken() ?: accessTokenFromCore()

    /** The mirror missed: the core's in-memory token (one plain call), else its shared refresh. */
    private suspend fun accessTokenFromCore(): String {
        val epoch = client.mirror.epoch(key)
        val native = native()
        refill(native, epoch)?.let { return it }
        val token = ffiCall { native.accessToken() }
        refill(native, epoch)
        return token
    }

    /** [accessToken], blocking the calling thread (for Java and synchronous code); the fresh path never blocks. */
    @Throws(FreshTokenException::class)
    fun accessTokenBlocking(): String = mirroredToken() ?: blocking { accessToken() }

    /** [accessToken] as a [CompletableFuture] (for Java); already complete on the fresh path. */
    fun accessTokenAsync(): CompletableFuture<String> =
        mirroredToken()?.let { CompletableFuture.completedFuture(it) } ?: future { accessToken() }

    /**
     * The access token if one is fresh in memory, else null; never waits or
     * sends anything. The mirrored token when fresh (no FFI call), else one
     * plain call asks the core (and mirrors its answer).
     */
    @Throws(FreshTokenException::class)
    fun cachedAccessToken(): String? {
        mirroredToken()?.let { return it }
        val epoch = client.mirror.epoch(key)
        return refill(native(), epoch)
    }

    /** The mirrored token if it is fresh on the client's clock; no FFI call. */
    private fun mirroredToken(): String? {
        check(!closed) { "UserSession has been closed" }
        client.checkOpen()
        return client.mirror.get(key)
    }

    /** The fresh token with its expiry, scope, ID token and refresh expiry. */
    @Throws(FreshTokenException::class)
    suspend fun tokens(): TokenInfo = mirrored { TokenInfo(it.tokens()) }

    /** [tokens], blocking the calling thread. */
    @Throws(FreshTokenException::class)
    fun tokensBlocking(): TokenInfo = blocking { tokens() }

    /** [tokens] as a [CompletableFuture]. */
    fun tokensAsync(): CompletableFuture<TokenInfo> = future { tokens() }

    /** A forced refresh, shared with concurrent callers. */
    @Throws(FreshTokenException::class)
    suspend fun refresh(): TokenInfo = mirrored { TokenInfo(it.refresh()) }

    /** [refresh], blocking the calling thread. */
    @Throws(FreshTokenException::class)
    fun refreshBlocking(): TokenInfo = blocking { refresh() }

    /** [refresh] as a [CompletableFuture]. */
    fun refreshAsync(): CompletableFuture<TokenInfo> = future { refresh() }

    /** The API rejected [token] (a 401): refresh, unless another caller already did. */
    @Throws(FreshTokenException::class)
    suspend fun tokenRejected(token: String): TokenInfo = mirrored { TokenInfo(it.tokenRejected(token)) }

    /** [tokenRejected], blocking the calling thread. */
    @Throws(FreshTokenException::class)
    fun tokenRejectedBlocking(token: String): TokenInfo = blocking { tokenRejected(token) }

    /** [tokenRejected] as a [CompletableFuture]. */
    fun tokenRejectedAsync(token: String): CompletableFuture<TokenInfo> = future { tokenRejected(token) }

    /** Adopts an existing refresh token (and optionally its access token). */
    @Throws(FreshTokenException::class)
    suspend fun seed(seed: SeedOptions): Unit = mirrored { it.seed(seed) }

    /** [seed], blocking the calling thread. */
    @Throws(FreshTokenException::class)
    fun seedBlocking(seed: SeedOptions): Unit = blocking { seed(seed) }

    /** [seed] as a [CompletableFuture]. */
    fun seedAsync(seed: SeedOptions): CompletableFuture<Unit> = future { seed(seed) }

    /** What is known without sending anything. */
    @Throws(FreshTokenException::class)
    suspend fun status(): SessionStatus = mirrored { SessionStatus(it.status()) }

    /** [status], blocking the calling thread. */
    @Throws(FreshTokenException::class)
    fun statusBlocking(): SessionStatus = blocking { status() }

    /** [status] as a [CompletableFuture]. */
    fun statusAsync(): CompletableFuture<SessionStatus> = future { status() }

    /** Frees this handle's native object (if one was made); the session's state stays in the client. */
    override fun close() {
        closed = true
        synchronized(this) { handle?.close() }
    }

    /** Drops the key's mirrored token, runs [call] in the core, and mirrors the core's token after a success. */
    private suspend inline fun <T> mirrored(call: (FfiUserSession) -> T): T {
        client.mirror.drop(key)
        val epoch = client.mirror.epoch(key)
        val native = native()
        val result = ffiCall { call(native) }
        refill(native, epoch)
        return result
    }

    /** Mirrors the core's fresh token (if it has one) and returns it. */
    private fun refill(native: FfiUserSession, epoch: Long): String? {
        val (token, freshUntilMs) = ffiCall { native.cachedTokenPair() } ?: return null
        client.mirror.fill(key, epoch, token, freshUntilMs)
        return token
    }

    private fun native(): FfiUserSession {
        client.nativeUses.incrementAndGet()
        handle?.let { return it }
        synchronized(this) {
            check(!closed) { "UserSession has been closed" }
            client.checkOpen()
            handle?.let { return it }
            return ffiCall { client.ffi.session(key, store) }.also { handle = it }
        }
    }
}
