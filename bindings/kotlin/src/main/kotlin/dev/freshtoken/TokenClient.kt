package dev.freshtoken

import java.util.concurrent.CompletableFuture

/**
 * One OAuth client: user sessions, client tokens, the code flow,
 * revocation. Made from options (constructor, [withClock]) or from the
 * provider's discovery document ([discover]).
 *
 * It keeps a bounded mirror of each session's fresh access token (key ->
 * token and the instant it stays fresh until, on this client's clock), so
 * `session(key, store).accessToken()` on a fresh token is a map lookup with
 * no FFI call; everything else runs in the Rust core. Thread-safe; create one
 * per OAuth client and share it. `AutoCloseable` (a Cleaner frees it otherwise).
 *
 * Ownership: the client keeps its `onEvent` listener, and the core holds
 * that listener only weakly ([WeakEventListener]), so a listener may refer
 * back to its client (a service that owns the client and handles its
 * events) and a client dropped without [close] is still collected. The
 * other objects the core calls back, the [HttpClient], the [Clock] and
 * every session's [TokenStore], it holds strongly (it must still save a
 * rotated refresh token after its caller has gone) from a GC root (uniffi's
 * handle map): one that refers to this client, or to an object that owns
 * it (an inner class of that object, a lambda using its fields), keeps the
 * client and its native resources alive until [close]. Give them what they
 * need (a database, a key) rather than their owner, or close the client.
 */
class TokenClient private constructor(
    internal val ffi: FfiTokenClient,
    private val clock: Clock?,
    maxSessions: Long?,
    /**
     * The application's event listener, owned here: the core only has a
     * [WeakEventListener] reaching it, so it lives exactly as long as this
     * client (never read: holding it is the point).
     */
    @Suppress("unused") private val onEvent: EventListener?,
) : AutoCloseable {
    /** A client sending token requests through [http] (default: [HttpUrlConnectionClient]), on the system clock. */
    @JvmOverloads
    @Throws(FreshTokenException::class)
    constructor(options: TokenClientOptions, http: HttpClient = HttpUrlConnectionClient()) :
        this(ffiCall { FfiTokenClient(options.checked().withWeakListener(), http) }, null, options.maxSessions?.toLong(), options.onEvent)

    init {
        ExitHook.register()
    }

    private val mirrorCapacity = (maxSessions ?: DEFAULT_MAX_SESSIONS).coerceIn(1, Int.MAX_VALUE.toLong()).toInt()

    internal val mirror = TokenMirror(mirrorCapacity, if (clock == null) null else ::nowMs)

    /**
     * The mirror's map, held here too: the per-request read is then one field
     * load from the client and a map lookup, which measured 1.7 ns (a third)
     * cheaper than going through [TokenMirror.get] (bench row 15).
     */
    @PublishedApi
    internal val mirrorEntries = mirror.entries

    @Volatile
    private var closed = false

    /** How many times a UserSession of this client went to its native object (tests check the mirror with it). */
    internal val nativeUses = java.util.concurrent.atomic.AtomicLong()

    /**
     * A handle on the session [key], persisted through [store]. Cheap: no
     * native object is made until a call needs one, and all handles with the
     * same key in this client share one state, one refresh and one mirrored
     * token, so create one per request. It checks nothing itself (that would
     * cost the per-request path): an empty key, or one with a lone UTF-16
     * surrogate, is a `Config` error naming `key` at the handle's first
     * call, which always goes to the core.
     */
    fun session(key: String, store: TokenStore): UserSession {
        // (No closed check here: every call of the handle checks, the
        // mirror read included.)
        return UserSession(this, key, store)
    }

    /** This client's name as a fleet lease owner: a store's lease holds it followed by `.` and a random number, new for each lease taken. */
    @Throws(FreshTokenException::class)
    fun leaseOwner(): String {
        checkOpen()
        return ffiCall { ffi.leaseOwner() }
    }

    /** How many session states the core holds in memory. */
    @Throws(FreshTokenException::class)
    fun sessionCount(): Long {
        checkOpen()
        return ffiCall { ffi.sessionCount().toLong() }
    }

    /** A fresh client-credentials token for [scopes]. */
    @Throws(FreshTokenException::class)
    suspend fun clientToken(scopes: List<String>): String {
        checkOpen()
        val checked = checkedTexts("scopes", scopes)
        return ffiCall { ffi.clientToken(checked) }
    }

    /** [clientToken], blocking the calling thread (for Java and synchronous code). */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun clientTokenBlocking(scopes: List<String>): String = blocking { clientToken(scopes) }

    /** [clientToken] as a [CompletableFuture] (for Java; a null [scopes]: the future fails with Config naming `scopes`). */
    fun clientTokenAsync(scopes: List<String>?): CompletableFuture<String> = future { clientToken(given("scopes", scopes)) }

    /**
     * Revokes every cached client token at the revocation endpoint (RFC
     * 7009) and forgets it; the next [clientToken] fetches a new one. Every
     * scope set is tried and the first failure thrown; a token it could not
     * revoke is kept and tried again by the next call. A [clientToken] already waiting
     * for a request in flight still gets its token, which is revoked right after. With no revocation
     * endpoint (none given or discovered, and a token endpoint not ending in
     * `/token`): [FreshTokenException.Config] naming `revocation_endpoint`,
     * the tokens kept.
     */
    @Throws(FreshTokenException::class)
    suspend fun revokeClientTokens() {
        checkOpen()
        ffiCall { ffi.revokeClientTokens() }
    }

    /** [revokeClientTokens], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun revokeClientTokensBlocking(): Unit = blocking { revokeClientTokens() }

    /** [revokeClientTokens] as a [CompletableFuture]. */
    fun revokeClientTokensAsync(): CompletableFuture<Unit> = future { revokeClientTokens() }

    /**
     * Saves every session record this client holds only in memory: a
     * rotation (or a new link) whose save the store refused, which the
     * session's next call would otherwise save first. Refreshes running are
     * waited for. Call it before [close] (at shutdown): a record closed
     * unsaved takes the session's newest refresh token with it, and the
     * stored one is spent. Throws [FreshTokenException.Storage] saying how
     * many are still unsaved (they are kept; calling again retries). Seeds
     * and code exchanges running are waited for too. Cancelled, saves
     * already started go on and the others are left for the next call.
     */
    @Throws(FreshTokenException::class)
    suspend fun saveUnsaved() {
        checkOpen()
        ffiCall { ffi.saveUnsaved() }
    }

    /** [saveUnsaved], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun saveUnsavedBlocking(): Unit = blocking { saveUnsaved() }

    /** [saveUnsaved] as a [CompletableFuture]. */
    fun saveUnsavedAsync(): CompletableFuture<Unit> = future { saveUnsaved() }

    /**
     * What the provider's discovery document said (issuer, endpoints, the
     * client authentications it lists), for a client made by [discover];
     * null for one made from options.
     */
    val providerMetadata: ProviderMetadata?
        get() {
            checkOpen()
            return ffi.providerMetadata()
        }

    /** The client-token cache. */
    @Throws(FreshTokenException::class)
    fun clientTokens(): ClientTokens {
        checkOpen()
        return ClientTokens(this, ffiCall { ffi.clientTokens() })
    }

    /**
     * The authorize URL (PKCE S256, state, nonce, `offline_access`). With no
     * authorization endpoint (none given or discovered, and a token endpoint
     * not ending in `/token`): Config naming `authorization_endpoint`.
     */
    @Throws(FreshTokenException::class)
    fun authorizationUrl(options: AuthorizationUrlOptions): AuthorizationRequest {
        checkOpen()
        return ffiCall { ffi.authorizationUrl(options.checked()) }
    }

    /**
     * The authorization code of [redirect], the URL the server sent the user
     * back to (or its query string), for [exchangeCode]. Checked first,
     * nothing sent: its `state` must be [expectedState] (the kept
     * [authorizationUrl] result's `state`, RFC 6749 §10.12); for a client
     * made by [discover], its `iss` must be the provider's issuer, and be
     * there when the provider announces it (RFC 9207, a mix-up between
     * providers).
     *
     * @throws FreshTokenException.OAuth for an error redirect with the right
     *   state (`error == "access_denied"` when the user said no)
     * @throws FreshTokenException.InvalidResponse for any other mismatch, a
     *   repeated parameter or a missing code; the message names what (never
     *   a value)
     * @throws FreshTokenException.Config naming `expected_state` when it is
     *   empty, or the argument with a lone UTF-16 surrogate
     */
    @Throws(FreshTokenException::class)
    fun codeFromRedirect(redirect: String, expectedState: String): String {
        checkOpen()
        checkText("redirect", redirect)
        checkText("expected_state", expectedState)
        return ffiCall { ffi.codeFromRedirect(redirect, expectedState) }
    }

    /**
     * Exchanges an authorization code, stores the first record under [key],
     * and returns the session. A code is sent once per process: a repeat for
     * the same [key] while the first runs or within 10 minutes after (a
     * reloaded or double-submitted callback) joins the first call or gets its
     * outcome; a code that may have reached the server (a lost answer, a 5xx:
     * not retried) counts as redeemed, a repeat then gets the same error,
     * sends nothing, and the user logs in again; for another key, verifier or
     * redirect URI it is
     * a Config naming `code`, and a
     * `codeVerifier` that is not 43 to 128 RFC 7636 characters a Config
     * naming `code_verifier`, nothing sent.
     */
    @Throws(FreshTokenException::class)
    suspend fun exchangeCode(options: ExchangeCodeOptions, key: String, store: TokenStore): UserSession {
        checkOpen()
        checkText("key", key)
        options.checked()
        mirror.begin(key)
        val native = try {
            ffiCall { ffi.exchangeCode(options, key, FixedCapabilities.of(store)) }
        } finally {
            // Nothing was mirrored during the exchange: it replaces the token.
            mirror.end(key)
        }
        remember(key, store, native)
        return UserSession(this, key, store)
    }

    /** [exchangeCode], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun exchangeCodeBlocking(options: ExchangeCodeOptions, key: String, store: TokenStore): UserSession =
        blocking { exchangeCode(options, key, store) }

    /** [exchangeCode] as a [CompletableFuture] (a null argument from Java: the future fails with Config naming it). */
    fun exchangeCodeAsync(options: ExchangeCodeOptions?, key: String?, store: TokenStore?): CompletableFuture<UserSession> =
        future { exchangeCode(given("options", options), given("key", key), given("store", store)) }

    /**
     * Frees the native client (a record its store refused goes with it: call
     * [saveUnsaved] first); later calls (on this client and on every
     * session handle of it) throw [IllegalStateException] ([session] still
     * returns a handle, whose calls throw). A call already in
     * flight may still return its token, but nothing is mirrored any more and
     * the mirror's expiry timers are cancelled.
     */
    override fun close() {
        closed = true
        mirror.close()
        natives.clear()
        ffi.close()
    }

    /** One native session per key (with the store it was made with), shared by every handle of the key. */
    private class NativeSession(val store: TokenStore, val ffi: FfiUserSession)

    private val natives = java.util.concurrent.ConcurrentHashMap<String, NativeSession>()

    /**
     * The key's native session, made on first need. Bounded like the mirror;
     * a dropped one is freed by the Cleaner once no call uses it (never
     * closed here: another thread may be calling it). A handle with a
     * different store object gets (and keeps) a native session of its own store.
     */
    internal fun nativeSession(key: String, store: TokenStore): FfiUserSession {
        nativeUses.incrementAndGet()
        checkOpen()
        natives[key]?.let { if (it.store === store) return it.ffi }
        checkText("key", key)
        val created = ffiCall { ffi.session(key, FixedCapabilities.of(store)) }
        remember(key, store, created)
        return created
    }

    private fun remember(key: String, store: TokenStore, native: FfiUserSession) {
        if (natives.size >= mirrorCapacity && !natives.containsKey(key)) {
            natives.keys.firstOrNull()?.let { natives.remove(it) }
        }
        natives[key] = NativeSession(store, native)
    }

    /**
     * Revokes the key's session in the core. The mirrored token is dropped
     * before the call and again after it, whatever its outcome, and nothing
     * is mirrored in between: a reader that got the token before the core
     * marked the record dead does not mirror it, so no revoked token is
     * served from the mirror.
     */
    internal suspend fun revoke(key: String, store: TokenStore) {
        mirror.begin(key)
        try {
            val native = nativeSession(key, store)
            ffiCall { native.revoke() }
        } finally {
            mirror.end(key)
        }
    }

    /** The mirror missed: the core's in-memory token (one plain call), else its shared refresh. */
    @PublishedApi
    internal suspend fun accessTokenFromCore(key: String, store: TokenStore): String {
        val epoch = mirror.epoch(key)
        val native = nativeSession(key, store)
        refill(key, native, epoch)?.let { return it }
        val token = ffiCall { native.accessToken() }
        refill(key, native, epoch)
        return token
    }

    /**
     * The core's in-memory fresh token (no waiting), mirrored. While a call
     * that may replace it runs in the core, the core offers nothing to mirror
     * but still serves its token: a second plain call reads it, unmirrored.
     */
    internal fun cachedTokenFromCore(key: String, store: TokenStore): String? {
        val native = nativeSession(key, store)
        return refill(key, native, mirror.epoch(key)) ?: ffiCall { native.cachedAccessToken() }
    }

    /**
     * Drops the key's mirrored token, runs [call] in the core, drops it again
     * whatever the outcome, and mirrors the core's token after a success.
     * Nothing is mirrored in between: a read during the call gets the core's
     * token of that moment, which the call may be replacing (a rejected
     * token, a session that then dies, the account a seed replaces).
     */
    internal suspend inline fun <T> mirrored(key: String, store: TokenStore, call: (FfiUserSession) -> T): T {
        mirror.begin(key)
        val native: FfiUserSession
        val result = try {
            native = nativeSession(key, store)
            ffiCall { call(native) }
        } finally {
            mirror.end(key)
        }
        refill(key, native, mirror.epoch(key))
        return result
    }

    /** Mirrors the core's fresh token for [key] (if it has one) and returns it. */
    internal fun refill(key: String, native: FfiUserSession, epoch: Long): String? {
        val (token, freshUntilMs) = ffiCall { native.cachedTokenPair() } ?: return null
        mirror.fill(key, epoch, token, freshUntilMs)
        return token
    }

    /**
     * Now in ms on this client's clock, exactly as the core reads it: the
     * host clock if given, else the system's; a host clock that throws, reads
     * negative or past the year 9999 is replaced by the system clock (the
     * core's rule, in
     * `ClockAdapter::now_ms`), so the mirror judges freshness on the same time.
     */
    internal fun nowMs(): Long {
        val c = clock ?: return System.currentTimeMillis()
        val ms = try {
            c.nowMs()
        } catch (_: Throwable) {
            return System.currentTimeMillis()
        }
        return if (ms in 0..LATEST_PLAUSIBLE_MS) ms else System.currentTimeMillis()
    }

    internal fun checkOpen() {
        check(!closed) { "TokenClient has been closed" }
    }

    companion object {
        /** The core's default bound on sessions, also the mirror's. */
        private const val DEFAULT_MAX_SESSIONS = 100_000L

        /** The end of year 9999 in Unix ms: a later reading is no time (src/clock.rs). */
        private const val LATEST_PLAUSIBLE_MS = 253_402_300_799_999L

        /** A client on the host's [clock] (for tests with fake time); the mirror uses the same clock. */
        @JvmStatic
        @Throws(FreshTokenException::class)
        fun withClock(options: TokenClientOptions, http: HttpClient, clock: Clock): TokenClient =
            TokenClient(
                ffiCall { FfiTokenClient.withClock(options.checked().withWeakListener(), http, clock) },
                clock,
                options.maxSessions?.toLong(),
                options.onEvent,
            )

        /**
         * A client for the provider [issuer] (e.g. `https://secure.stitch.money`):
         * its token, authorization and revocation endpoints are read from
         * `{issuer}/.well-known/openid-configuration` (one request, no retry,
         * within `options.timeoutMs`) and checked (the document's issuer is
         * [issuer]; the endpoints are https when the issuer is, and a
         * plain-http loopback issuer may name loopback http ones). Leave
         * `options.tokenEndpoint` empty; an endpoint set in [options] wins over
         * the document's, and one the document does not publish is not guessed
         * (a call that needs it throws Config naming it). [clock] is for tests
         * with fake time (the mirror reads it too; default: the system clock).
         *
         * @throws FreshTokenException.InvalidResponse for a missing or bad
         *   document (the message contains "discovery: …"),
         *   [FreshTokenException.Network] or [FreshTokenException.Timeout] for
         *   an unreachable issuer, [FreshTokenException.Transient] for a 429 or
         *   5xx, [FreshTokenException.Config] for a plain-http issuer that is not loopback
         */
        @Throws(FreshTokenException::class)
        suspend fun discover(
            issuer: String,
            options: TokenClientOptions,
            http: HttpClient = HttpUrlConnectionClient(),
            clock: Clock? = null,
        ): TokenClient {
            checkText("issuer", issuer)
            options.checked()
            return TokenClient(
                ffiCall { discoverClient(issuer, options.withWeakListener(), http, clock) },
                clock,
                options.maxSessions?.toLong(),
                options.onEvent,
            )
        }

        /** [discover], blocking the calling thread (for Java and synchronous code). */
        @JvmStatic
        @JvmOverloads
        @Throws(FreshTokenException::class, InterruptedException::class)
        fun discoverBlocking(
            issuer: String,
            options: TokenClientOptions,
            http: HttpClient = HttpUrlConnectionClient(),
            clock: Clock? = null,
        ): TokenClient = blocking { discover(issuer, options, http, clock) }

        /** [discover] as a [CompletableFuture] (for Java; a null argument: the future fails with Config naming it). */
        @JvmStatic
        @JvmOverloads
        fun discoverAsync(
            issuer: String?,
            options: TokenClientOptions?,
            http: HttpClient? = HttpUrlConnectionClient(),
            clock: Clock? = null,
        ): CompletableFuture<TokenClient> =
            future { discover(given("issuer", issuer), given("options", options), given("http", http), clock) }

        /**
         * A client from the provider's client-credentials JSON (`clientId`,
         * `clientSecret` or `certificate`, `slidingRefreshTokenLifetime`,
         * optionally `tokenEndpoint`, default Stitch's, and `keyId`); a missing
         * member is a `Config` error naming it.
         * [options] set what the JSON does not (leeway, timeouts, retries,
         * `maxSessions`, `onEvent`, …; `refreshTokenLifetimeSeconds` overrides
         * `slidingRefreshTokenLifetime`) and leave the identity empty:
         * `TokenClientOptions(clientId = "", onEvent = …)`, or from Java
         * `new TokenClientOptionsBuilder().onEvent(…).build()`. An identity
         * member set there (`clientSecret`, `tokenEndpoint`, …) is a `Config`
         * error naming it (`client_secret`, `token_endpoint`, …). [clock] is
         * for tests with fake time.
         */
        @JvmStatic
        @JvmOverloads
        @Throws(FreshTokenException::class)
        fun fromCredentialsJson(
            json: String,
            http: HttpClient = HttpUrlConnectionClient(),
            options: TokenClientOptions = TokenClientOptions(clientId = ""),
            clock: Clock? = null,
        ): TokenClient {
            checkText("credentials", json)
            options.checked()
            return TokenClient(
                ffiCall { FfiTokenClient.fromCredentialsJsonWith(json, options.withWeakListener(), http, clock) },
                clock,
                options.maxSessions?.toLong(),
                options.onEvent,
            )
        }
    }
}

/**
 * The client's own tokens (`client_credentials`), cached per scope set.
 * Closed with its client: once the [TokenClient] is closed, every call
 * throws [IllegalStateException], as on the client's session handles.
 */
class ClientTokens internal constructor(
    private val client: TokenClient,
    private val ffi: FfiClientTokens,
) : AutoCloseable {
    /** A fresh client token for [scopes] (order and duplicates ignored). */
    @Throws(FreshTokenException::class)
    suspend fun token(scopes: List<String>): String {
        client.checkOpen()
        val checked = checkedTexts("scopes", scopes)
        return ffiCall { ffi.token(checked) }
    }

    /** [token], blocking the calling thread. */
    @Throws(FreshTokenException::class, InterruptedException::class)
    fun tokenBlocking(scopes: List<String>): String = blocking { token(scopes) }

    /** [token] as a [CompletableFuture] (a null [scopes] from Java: the future fails with Config naming `scopes`). */
    fun tokenAsync(scopes: List<String>?): CompletableFuture<String> = future { token(given("scopes", scopes)) }

    /** Forgets the cached token for [scopes], whichever it is. After the API rejected a token, prefer [tokenRejected]. */
    @Throws(FreshTokenException::class)
    fun invalidate(scopes: List<String>) {
        client.checkOpen()
        val checked = checkedTexts("scopes", scopes)
        ffiCall { ffi.invalidate(checked) }
    }

    /**
     * The API rejected [token], a client token for [scopes] (a 401): forgets it if it is still the cached one, so
     * the next [token] call requests a new one. When another caller has already replaced it, nothing changes: many
     * workers that saw one revoked token cause one request, not one each. A forgotten token that still lives is
     * revoked by `revokeClientTokens()`.
     */
    @Throws(FreshTokenException::class)
    fun tokenRejected(scopes: List<String>, token: String) {
        client.checkOpen()
        val checked = checkedTexts("scopes", scopes)
        checkText("token", token)
        ffiCall { ffi.tokenRejected(checked, token) }
    }

    override fun close() = ffi.close()
}
