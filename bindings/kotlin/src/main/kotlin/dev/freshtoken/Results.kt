package dev.freshtoken

import java.time.Instant

/**
 * A fresh access token with its expiry, scope, ID token and the refresh
 * token's expiry. Times are milliseconds since the epoch on the client's
 * clock, and the same as [Instant]s. `toString()` redacts every token.
 */
class TokenInfo internal constructor(private val ffi: FfiTokenInfo) {
    /** The access token. */
    val accessToken: String get() = ffi.accessToken

    /** When the access token expires (ms since the epoch). */
    val expiresAtMs: Long get() = ffi.expiresAtMs.toLong()

    /** [expiresAtMs] as an [Instant]. */
    val expiresAt: Instant get() = Instant.ofEpochMilli(expiresAtMs)

    /** The granted scope, if the server said. */
    val scope: String? get() = ffi.scope

    /** The ID token, if the server sent one. */
    val idToken: String? get() = ffi.idToken

    /** When the refresh token's sliding lifetime ends (ms since the epoch), if known. */
    val refreshExpiresAtMs: Long? get() = ffi.refreshExpiresAtMs?.toLong()

    /** [refreshExpiresAtMs] as an [Instant]. */
    val refreshExpiresAt: Instant? get() = refreshExpiresAtMs?.let(Instant::ofEpochMilli)

    override fun equals(other: Any?): Boolean = other is TokenInfo && other.ffi == ffi
    override fun hashCode(): Int = ffi.hashCode()
    override fun toString(): String = ffi.toString()
}

/** What is known about a session without sending anything. */
class SessionStatus internal constructor(private val ffi: FfiSessionStatus) {
    /** A record exists (in memory or in the store). */
    val hasRecord: Boolean get() = ffi.hasRecord

    /** Set when the user must authorize again; nothing is sent until `seed()`. */
    val reauthorizationReason: ReauthorizationReason? get() = ffi.reauthorizationReason

    /** When the current access token expires (ms since the epoch), if there is one. */
    val accessExpiresAtMs: Long? get() = ffi.accessExpiresAtMs?.toLong()

    /** [accessExpiresAtMs] as an [Instant]. */
    val accessExpiresAt: Instant? get() = accessExpiresAtMs?.let(Instant::ofEpochMilli)

    /** When the refresh token's sliding lifetime ends (ms since the epoch), if known. */
    val refreshExpiresAtMs: Long? get() = ffi.refreshExpiresAtMs?.toLong()

    /** [refreshExpiresAtMs] as an [Instant]. */
    val refreshExpiresAt: Instant? get() = refreshExpiresAtMs?.let(Instant::ofEpochMilli)

    /** A renewed record is only in memory: the last save failed and is retried first. */
    val unpersisted: Boolean get() = ffi.unpersisted

    /**
     * A refresh may have reached the server without its answer reaching us
     * (on a revoked session: the server may hold a successor token that
     * `revoke()` could not reach).
     */
    val inDoubt: Boolean get() = ffi.inDoubt

    /**
     * `revoke()` marked the session revoked, but its revocation failed for
     * good: the server may still hold its token. `revoke()` again retries.
     */
    val revocationPending: Boolean get() = ffi.revocationPending

    override fun equals(other: Any?): Boolean = other is SessionStatus && other.ffi == ffi
    override fun hashCode(): Int = ffi.hashCode()
    override fun toString(): String = ffi.toString()
}
