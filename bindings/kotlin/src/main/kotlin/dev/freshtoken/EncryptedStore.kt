package dev.freshtoken

/**
 * An AES-256 key for [EncryptedStore]. [id] names it in every record it
 * encrypts: 1 to 64 printable ASCII characters without spaces (e.g.
 * `"2026-11"`). The key's 32 bytes are copied into freshtoken's native
 * memory, never come back, and are wiped when the key is closed (or
 * collected) and no store uses it any more; wipe your own copy after.
 *
 * Throws [FreshTokenException.Config] naming `id` or `key` for a bad one.
 */
class EncryptionKey private constructor(internal val ffi: FfiEncryptionKey) : AutoCloseable {
    /** A key from its 32 bytes. */
    @Throws(FreshTokenException::class)
    constructor(id: String, key: ByteArray) : this(ffiCall { FfiEncryptionKey(id.also { checkText("id", it) }, key) })

    /** The key's id. */
    val id: String get() = ffi.id()

    /**
     * Drops this handle on the native key (a store made with it keeps its
     * own). A closed key given to [EncryptedStore] is a
     * [FreshTokenException.Config] naming the parameter; [id] throws
     * [IllegalStateException].
     */
    override fun close() = ffi.close()

    /** The native key for the parameter [name]; Config naming it once the key was closed. */
    internal fun open(name: String): FfiEncryptionKey {
        if (ffi.uniffiIsDestroyed) throw closedArgument(name, "EncryptionKey")
        return ffi
    }

    /** The id only, never the key (a closed key: `EncryptionKey(closed)`). */
    override fun toString(): String = if (ffi.uniffiIsDestroyed) "EncryptionKey(closed)" else "EncryptionKey(id=$id)"

    companion object {
        /** A key from its 32 bytes in base64 (standard or URL-safe, padding optional: `openssl rand -base64 32`). */
        @JvmStatic
        @Throws(FreshTokenException::class)
        fun fromBase64(id: String, key: String): EncryptionKey {
            checkText("id", id)
            checkText("key", key)
            return EncryptionKey(ffiCall { FfiEncryptionKey.fromBase64(id, key) })
        }
    }
}

/**
 * A [TokenStore] whose records [inner] keeps encrypted at rest: AES-256-GCM
 * in freshtoken's Rust core, a random 96-bit nonce per save, and the session
 * key and key id bound as associated data, so a record copied under another
 * key, or altered, fails to decrypt. [inner] holds a JSON envelope
 * `{"schema":"freshtoken.encrypted/1","kid",…}` instead of the record.
 *
 * [current] encrypts every save; [old] keys only decrypt, and a record read
 * under one is rewritten under [current] by its next save. An unknown key id
 * or a failed decryption is a [FreshTokenException.Storage] naming the key
 * id, never a fallback. Plain records written before encryption was switched
 * on are read and encrypted by their next save, unless [refusePlaintext].
 * The lease and compare-and-swap members pass through to [inner], so fleet
 * stores keep working; [inner]'s `supportsLease()` and `supportsVersions()`
 * are read once, here, on the calling thread (one that throws is a
 * [FreshTokenException.Storage] naming it).
 *
 * The store is implemented natively: a session calls it without crossing
 * back into Kotlin except for [inner]'s own calls. Two keys with one id are a
 * [FreshTokenException.Config] naming `old`; a closed key or [inner] one
 * naming `current`, `old` or `inner`. Once this store is closed its own
 * members throw [IllegalStateException], and a session made with it
 * afterwards a [FreshTokenException.Config] naming `store` (one made before
 * keeps the native store). Its members called directly check their strings
 * like every entry point (a lone surrogate is a Config naming `key`, `record`, …),
 * and fail with [FreshTokenException.Storage] as through a session.
 *
 * On Android, when the records live on the device only, consider a store on
 * storage that the Android Keystore protects instead (a Keystore key is
 * hardware-backed and never leaves the device); this class serves records
 * kept off the device or in files and databases the app manages itself.
 */
class EncryptedStore private constructor(
    /** The store underneath (it holds the envelopes). */
    val inner: TokenStore,
    handle: Long,
) : TokenStoreImpl(UniffiWithHandle, handle) {
    @JvmOverloads
    @Throws(FreshTokenException::class)
    constructor(
        inner: TokenStore,
        current: EncryptionKey,
        old: List<EncryptionKey> = emptyList(),
        refusePlaintext: Boolean = false,
    ) : this(
        inner,
        nativeHandle(
            FixedCapabilities.of(inner, "inner"),
            FfiEncryptionKeys(
                current.open("current"),
                checkedElements("old", old, "an EncryptionKey").map { it.open("old") },
                refusePlaintext,
            ),
        ),
    )

    // The inherited members, called by the host, with the checks of every
    // entry point; a failure is Storage (the native store's HostException is internal).
    @Throws(FreshTokenException::class)
    override suspend fun load(key: String): String? {
        checkText("key", key)
        return storeCall { super.load(key) }
    }

    @Throws(FreshTokenException::class)
    override suspend fun save(key: String, record: String) {
        checkText("key", key)
        checkText("record", record)
        storeCall { super.save(key, record) }
    }

    @Throws(FreshTokenException::class)
    override suspend fun acquire(key: String, owner: String, ttlMs: Long): Boolean {
        checkText("key", key)
        checkText("owner", owner)
        if (ttlMs < 0) throw FreshTokenException.Config("ttlMs", "invalid configuration `ttlMs`: must not be negative")
        return storeCall { super.acquire(key, owner, ttlMs) }
    }

    @Throws(FreshTokenException::class)
    override suspend fun release(key: String, owner: String) {
        checkText("key", key)
        checkText("owner", owner)
        storeCall { super.release(key, owner) }
    }

    @Throws(FreshTokenException::class)
    override suspend fun loadVersioned(key: String): VersionedRecord? {
        checkText("key", key)
        return storeCall { super.loadVersioned(key) }
    }

    @Throws(FreshTokenException::class)
    override suspend fun saveVersioned(key: String, record: String, expected: String?): CasResult {
        checkText("key", key)
        checkText("record", record)
        checkText("expected", expected)
        return storeCall { super.saveVersioned(key, record, expected) }
    }

    private companion object {
        /** A call into the native store, its failure ([HostException.Failed]) as Storage with the same message. */
        inline fun <T> storeCall(block: () -> T): T =
            try {
                ffiCall(block)
            } catch (e: HostException.Failed) {
                throw FreshTokenException.Storage(e.detail)
            }

        /** The handle of the core's encrypted store over [inner] (its own reference, kept by this object). */
        fun nativeHandle(inner: TokenStore, keys: FfiEncryptionKeys): Long {
            val store = ffiCall { encryptedStore(inner, keys) }
            return (store as TokenStoreImpl).use { it.uniffiCloneHandle() }
        }
    }
}
