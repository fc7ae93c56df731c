package dev.freshtoken

/** The core's cached token: (token, fresh-until ms on the client's clock), or null when it has none fresh. */
internal fun FfiUserSession.cachedTokenPair(): Pair<String, Long>? = cachedToken()?.let { it.token to it.freshUntilMs }
