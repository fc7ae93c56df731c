package dev.freshtoken

/** The core's cached token: (token, fresh-until ms) or null when it has none fresh. */
internal fun FfiUserSession.cachedTokenPair(): Pair<String, Long>? = null
