package dev.freshtoken

/**
 * A fresh access token. The cached path is one plain FFI call
 * ([UserSession.cachedAccessToken]: a lock, a clock read, a comparison) with
 * no coroutine machinery; only when it answers null does this suspend on
 * [UserSession.accessToken], which shares one refresh among all callers.
 *
 * @throws FreshTokenException (see [code])
 */
suspend fun UserSession.token(): String = cachedAccessToken() ?: accessToken()

/**
 * The stable error code, the same string as Rust's `ErrorCode::as_str` and
 * JavaScript's `FreshTokenError.code`.
 */
val FreshTokenException.code: String
    get() = when (this) {
        is FreshTokenException.ReauthorizationRequired -> "reauthorization_required"
        is FreshTokenException.InvalidClient -> "invalid_client"
        is FreshTokenException.OAuth -> "oauth"
        is FreshTokenException.Transient -> "transient"
        is FreshTokenException.Network -> "network"
        is FreshTokenException.Timeout -> "timeout"
        is FreshTokenException.InvalidResponse -> "invalid_response"
        is FreshTokenException.Storage -> "storage"
        is FreshTokenException.Conflict -> "conflict"
        is FreshTokenException.Config -> "config"
    }

/** The stable reason string (`invalid_grant`, `refresh_expired`, `lost_rotation`, `no_refresh_token`). */
val ReauthorizationReason.code: String
    get() = when (this) {
        ReauthorizationReason.INVALID_GRANT -> "invalid_grant"
        ReauthorizationReason.REFRESH_EXPIRED -> "refresh_expired"
        ReauthorizationReason.LOST_ROTATION -> "lost_rotation"
        ReauthorizationReason.NO_REFRESH_TOKEN -> "no_refresh_token"
    }
