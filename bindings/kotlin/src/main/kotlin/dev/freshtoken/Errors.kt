package dev.freshtoken

/**
 * Every failure of a freshtoken call. [code] is the stable string shared with
 * Rust (`ErrorCode::as_str`), JavaScript and Python; [message] is the core's
 * sentence (Rust's `Display`), which never contains a token or secret.
 * Java reads both as `e.getCode()` / `e.getMessage()`.
 */
sealed class FreshTokenException(
    /** The stable error code, e.g. `reauthorization_required`. */
    val code: String,
    /** The core's message (the same text as [message]). */
    val detail: String,
) : Exception(detail) {
    /**
     * True when `revoke()` failed for good or cannot be confirmed: the session
     * is marked revoked, but the server may still hold a token (JavaScript's
     * `serverMayHoldToken`). Then the exception is the cause's: `Transient`,
     * `Network`, …, or `ReauthorizationRequired` (`LOST_ROTATION`) for a
     * session whose last refresh lost its answer. See `status().revocationPending`.
     */
    var serverMayHoldToken: Boolean = false
        internal set

    /** The user must authorize again (re-link); [reason] says why. Remembered: nothing is sent again. */
    class ReauthorizationRequired(
        val reason: ReauthorizationReason,
        /** The server's `error_description`, if any. */
        val description: String?,
        detail: String,
    ) : FreshTokenException("reauthorization_required", detail) {
        /** [reason] as its stable string: `invalid_grant`, `refresh_expired`, `lost_rotation`, `no_refresh_token`, `revoked`. */
        val reasonCode: String get() = reason.code
    }

    /** The server rejected the client credentials. */
    class InvalidClient(val status: Int, val description: String?, detail: String) :
        FreshTokenException("invalid_client", detail)

    /** Another RFC 6749 error; [error] is its code. */
    class OAuth(val status: Int, val error: String, val description: String?, detail: String) :
        FreshTokenException("oauth", detail)

    /** 5xx or 429 after every retry; [retryAfterMs] is the server's last `Retry-After`. */
    class Transient(val status: Int, val retryAfterMs: Long?, detail: String) :
        FreshTokenException("transient", detail)

    /** A transport failure; [maybeSent] is false when the request surely never left. */
    class Network(val maybeSent: Boolean, detail: String) : FreshTokenException("network", detail)

    /** A request to the authorization server (token or revocation endpoint, discovery document) timed out. */
    class Timeout(detail: String) : FreshTokenException("timeout", detail)

    /** The authorization server's answer (a token response, a discovery document, …) could not be understood. */
    class InvalidResponse(val status: Int?, detail: String) : FreshTokenException("invalid_response", detail)

    /** The store failed or did not answer in time; nothing was lost (see the README). */
    class Storage(detail: String) : FreshTokenException("storage", detail)

    /** A versioned save lost a race with another process. */
    class Conflict(detail: String) : FreshTokenException("conflict", detail)

    /** Bad options or arguments; [field] names the parameter. */
    class Config(val field: String, detail: String) : FreshTokenException("config", detail)
}

/** The stable reason string (`invalid_grant`, `refresh_expired`, `lost_rotation`, `no_refresh_token`, `revoked`). */
val ReauthorizationReason.code: String
    get() = when (this) {
        ReauthorizationReason.INVALID_GRANT -> "invalid_grant"
        ReauthorizationReason.REFRESH_EXPIRED -> "refresh_expired"
        ReauthorizationReason.LOST_ROTATION -> "lost_rotation"
        ReauthorizationReason.NO_REFRESH_TOKEN -> "no_refresh_token"
        ReauthorizationReason.REVOKED -> "revoked"
    }

/** The generated error as ours (same fields, [FreshTokenException.code] as a property). */
internal fun FfiFreshTokenException.toPublic(): FreshTokenException {
    val e = when (this) {
        is FfiFreshTokenException.ReauthorizationRequired ->
            FreshTokenException.ReauthorizationRequired(reason, description, detail)
        is FfiFreshTokenException.InvalidClient ->
            FreshTokenException.InvalidClient(status.toInt(), description, detail)
        is FfiFreshTokenException.OAuth -> FreshTokenException.OAuth(status.toInt(), error, description, detail)
        is FfiFreshTokenException.Transient ->
            FreshTokenException.Transient(status.toInt(), retryAfterMs?.toLong(), detail)
        is FfiFreshTokenException.Network -> FreshTokenException.Network(maybeSent, detail)
        is FfiFreshTokenException.Timeout -> FreshTokenException.Timeout(detail)
        is FfiFreshTokenException.InvalidResponse -> FreshTokenException.InvalidResponse(status?.toInt(), detail)
        is FfiFreshTokenException.Storage -> FreshTokenException.Storage(detail)
        is FfiFreshTokenException.Conflict -> FreshTokenException.Conflict(detail)
        is FfiFreshTokenException.Config -> FreshTokenException.Config(field, detail)
    }
    e.serverMayHoldToken = when (this) {
        is FfiFreshTokenException.ReauthorizationRequired -> serverMayHoldToken
        is FfiFreshTokenException.InvalidClient -> serverMayHoldToken
        is FfiFreshTokenException.OAuth -> serverMayHoldToken
        is FfiFreshTokenException.Transient -> serverMayHoldToken
        is FfiFreshTokenException.Network -> serverMayHoldToken
        is FfiFreshTokenException.Timeout -> serverMayHoldToken
        is FfiFreshTokenException.InvalidResponse -> serverMayHoldToken
        is FfiFreshTokenException.Storage -> serverMayHoldToken
        is FfiFreshTokenException.Conflict -> serverMayHoldToken
        is FfiFreshTokenException.Config -> serverMayHoldToken
    }
    e.stackTrace = stackTrace
    return e
}

/** Runs a generated call, throwing [FreshTokenException] instead of the generated error type. */
internal inline fun <T> ffiCall(block: () -> T): T =
    try {
        block()
    } catch (e: FfiFreshTokenException) {
        throw e.toPublic()
    }
