package dev.freshtoken

import java.util.concurrent.CompletableFuture

/**
 * One user's tokens, on the session [key] of a [TokenClient]. All handles
 * with the same key in one client share one state in the core and one
 * mirrored token in the client, so make one per request:
 * `client.session(userId, store).accessToken()`.
 *
 * A handle is a plain view (client, key, store): making one allocates
 * nothing native, and [accessToken] on a fresh mirrored token is a map
 * lookup. The client makes one native session per key when a call first
 * needs the core and reuses it for every handle of the key. Every other
 * call drops the key's mirrored token when it starts and when it ends, and
 * (but [revoke]) mirrors the core's token again after it succeeds.
 */
class UserSession internal constructor(
    @PublishedApi internal val client: TokenClient,
    /** The session key. */
    val key: String,
    @PublishedApi internal val store: TokenStore,
) : AutoCloseable {
    // Plain fields only: the per-request `client.session(key, store)` must
    // stay an allocation the JIT can remove (no volatile write, and no path
    // on which this object escapes: the core calls take key and store).
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
    @Suppress("NOTHING_TO_INLINE")
    suspend inline fun accessToken(): String = mirroredToken() ?: client.accessTokenFromCore(key, store)
    // (inline: a caller's coroutine pays for a suspension point only when the
    // mirror misses, not on the fresh path)

    /**
     * [accessToken], blocking the calling thread (for Java and synchronous
     * code); the fresh path never blocks. Like every `…Blocking` method, it
     * throws [InterruptedException] when the thread is interrupted while it
     * waits (or was already, on a miss); the refresh goes on and is saved.
     */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun accessTokenBlocking(): String = mirroredToken() ?: blocking { client.accessTokenFromCore(key, store) }

    /**
     * [accessToken] as a [CompletableFuture] (for Java); already complete on
     * the fresh path. Like every `…Async` method it never throws: a closed
     * handle or client is a future failed with [IllegalStateException].
     */
    fun accessTokenAsync(): CompletableFuture<String> {
        val token = try {
            mirroredToken()
        } catch (closed: IllegalStateException) {
            // (not failedFuture: Android has it only from API 31)
            return CompletableFuture<String>().apply { completeExceptionally(closed) }
        }
        return token?.let { CompletableFuture.completedFuture(it) } ?: future { client.accessTokenFromCore(key, store) }
    }

    /**
     * The access token if one is fresh in memory, else null; never waits or
     * sends anything. The mirrored token when fresh (no FFI call), else one
     * plain call asks the core (and mirrors its answer; while a refresh, seed
     * or code exchange runs, a second one reads the core's token unmirrored).
     */
    @Throws(FreshTokenException::class)
    fun cachedAccessToken(): String? = mirroredToken() ?: client.cachedTokenFromCore(key, store)

    /**
     * The mirrored token if it is fresh on the client's clock; no FFI call.
     * Throws [IllegalStateException] once this handle or its client is closed.
     */
    @PublishedApi
    internal fun mirroredToken(): String? {
        check(!closed) { "UserSession has been closed" }
        // A closed client serves nothing, even a token its closing mirror
        // still holds (one volatile read; the mirror's map is cleared too).
        client.checkOpen()
        val value = client.mirrorEntries[key] ?: return null
        return value as? String ?: client.mirror.fresh(value)
    }

    /** The fresh token with its expiry, scope, ID token and refresh expiry. */
    @Throws(FreshTokenException::class)
    suspend fun tokens(): TokenInfo = mirrored { TokenInfo(it.tokens()) }

    /** [tokens], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun tokensBlocking(): TokenInfo = blocking { tokens() }

    /** [tokens] as a [CompletableFuture]. */
    fun tokensAsync(): CompletableFuture<TokenInfo> = future { tokens() }

    /** A forced refresh, shared with concurrent callers. */
    @Throws(FreshTokenException::class)
    suspend fun refresh(): TokenInfo = mirrored { TokenInfo(it.refresh()) }

    /** [refresh], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun refreshBlocking(): TokenInfo = blocking { refresh() }

    /** [refresh] as a [CompletableFuture]. */
    fun refreshAsync(): CompletableFuture<TokenInfo> = future { refresh() }

    /** The API rejected [token] (a 401): refresh, unless another caller already did. */
    @Throws(FreshTokenException::class)
    suspend fun tokenRejected(token: String): TokenInfo {
        checkText("token", token)
        return mirrored { TokenInfo(it.tokenRejected(token)) }
    }

    /** [tokenRejected], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun tokenRejectedBlocking(token: String): TokenInfo = blocking { tokenRejected(token) }

    /** [tokenRejected] as a [CompletableFuture] (a null [token] from Java: the future fails with Config naming `token`). */
    fun tokenRejectedAsync(token: String?): CompletableFuture<TokenInfo> = future { tokenRejected(given("token", token)) }

    /** Adopts an existing refresh token (and optionally its access token). */
    @Throws(FreshTokenException::class)
    suspend fun seed(seed: SeedOptions) {
        seed.checked()
        mirrored { it.seed(seed) }
    }

    /** [seed], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun seedBlocking(seed: SeedOptions): Unit = blocking { seed(seed) }

    /** [seed] as a [CompletableFuture] (a null [seed] from Java: the future fails with Config naming `seed`). */
    fun seedAsync(seed: SeedOptions?): CompletableFuture<Unit> = future { seed(given("seed", seed)) }

    /**
     * Revokes the session at the server (RFC 7009): waits for a refresh in
     * flight, marks the stored record dead (reason
     * [ReauthorizationReason.REVOKED]) and saves it before the server hears
     * of it, then revokes the refresh token and a live access token. From
     * then on every call fails with [FreshTokenException.ReauthorizationRequired]
     * without sending anything, until [seed] (or `exchangeCode`) starts the
     * session again; except [status] (reason `REVOKED`), [cachedAccessToken]
     * (null) and [revoke] (it retries a revocation still pending, else sends
     * nothing). The mirrored token is dropped before and after the call.
     *
     * @throws FreshTokenException when the server could not be told for good
     *   (the cause's type: `Transient`, `Network`, `InvalidClient`, …): the
     *   session is dead all the same, the message says the server may still
     *   hold its token, and calling revoke() again retries the revocation.
     *   A session whose last refresh lost its answer ([SessionStatus.inDoubt])
     *   may have a successor at the server that no revocation from here
     *   reaches: after revoking what it holds, `ReauthorizationRequired`
     *   (`LOST_ROTATION`, the same message), at every later revoke() too,
     *   sending nothing. With no revocation endpoint (none given or
     *   discovered, and a token endpoint not ending in `/token`):
     *   [FreshTokenException.Config] naming `revocation_endpoint`, and
     *   nothing changes.
     */
    @Throws(FreshTokenException::class)
    suspend fun revoke() {
        check(!closed) { "UserSession has been closed" }
        client.revoke(key, store)
    }

    /** [revoke], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun revokeBlocking(): Unit = blocking { revoke() }

    /** [revoke] as a [CompletableFuture]. */
    fun revokeAsync(): CompletableFuture<Unit> = future { revoke() }

    /** What is known without sending anything (a record not saved yet is saved first, as by every call). */
    @Throws(FreshTokenException::class)
    suspend fun status(): SessionStatus = mirrored { SessionStatus(it.status()) }

    /** [status], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun statusBlocking(): SessionStatus = blocking { status() }

    /** [status] as a [CompletableFuture]. */
    fun statusAsync(): CompletableFuture<SessionStatus> = future { status() }

    /**
     * Marks this handle closed (later calls on it throw IllegalStateException).
     * The native session belongs to the client (one per key, reused by every
     * handle of the key, freed with the client or by the Cleaner).
     */
    override fun close() {
        closed = true
    }

    /** Runs [call] in the core as [TokenClient.mirrored] does (the mirrored token dropped before and after). */
    private suspend inline fun <T> mirrored(call: (FfiUserSession) -> T): T {
        check(!closed) { "UserSession has been closed" }
        return client.mirrored(key, store, call)
    }
}
