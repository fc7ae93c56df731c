package dev.freshtoken

/*
 * The boundary's one check of String arguments (DESIGN point 16): a lone
 * UTF-16 surrogate has no UTF-8, so it cannot reach the core. uniffi's
 * converter would throw java.nio.charset.MalformedInputException (a checked
 * IOException nobody declares); every public entry point checks its strings
 * first and throws FreshTokenException.Config naming the parameter instead,
 * with the field names the core itself uses (`key`, `refresh_token`, ...).
 * Nothing else is checked here: empty values and the rest are the core's.
 * (The generated converter is patched too, as a backstop: see
 * tools/patch-generated.sh, change 6.)
 */

/** True when [text] is well-formed UTF-16: every surrogate is half of a pair. */
internal fun isWellFormed(text: String): Boolean {
    var i = 0
    val n = text.length
    while (i < n) {
        val c = text[i]
        if (Character.isSurrogate(c)) {
            if (!Character.isHighSurrogate(c) || i + 1 >= n || !Character.isLowSurrogate(text[i + 1])) return false
            i += 2
        } else {
            i++
        }
    }
    return true
}

/** The Config error for a string argument [name] with a lone surrogate (never quotes the value). */
internal fun loneSurrogate(name: String): FreshTokenException.Config =
    FreshTokenException.Config(name, "invalid configuration `$name`: must not contain a lone UTF-16 surrogate")

/** Throws [FreshTokenException.Config] naming [name] when [value] holds a lone UTF-16 surrogate. */
internal fun checkText(name: String, value: String?) {
    if (value != null && !isWellFormed(value)) throw loneSurrogate(name)
}

/**
 * The list argument [name] (e.g. `scopes`) read once into a copy of its own,
 * each element checked by [checkText]; the copy is what crosses to the core.
 * uniffi's converter reads a list twice (sizes, then bytes): one that another
 * thread changed in between, or whose `size` and iterator disagree, threw
 * `BufferOverflowException`, and a `null` element (Java) or one that is no
 * `String` (a raw Java list) threw `NullPointerException` or
 * `ClassCastException`, none of them a [FreshTokenException]. Each is
 * [FreshTokenException.Config] naming [name] now (never quoting a value).
 */
internal fun checkedTexts(name: String, values: List<String>): List<String> =
    checkedElements(name, values, "a string") { checkText(name, it as String) }

/**
 * [values] read once into a new list, each element a [T] (checked by [check]);
 * a null, an element of another class, or a list that cannot be read through
 * (a concurrent change) is [FreshTokenException.Config] naming [name].
 */
internal inline fun <reified T : Any> checkedElements(
    name: String,
    values: List<T>,
    what: String,
    check: (T) -> Unit = {},
): List<T> {
    val copy = ArrayList<T>()
    try {
        for (value in values as List<*>) {
            if (value !is T) {
                val found = if (value == null) "null" else "a ${value.javaClass.name}"
                throw FreshTokenException.Config(name, "invalid configuration `$name`: every element must be $what, found $found")
            }
            check(value)
            copy.add(value)
        }
    } catch (e: FreshTokenException) {
        throw e
    } catch (e: RuntimeException) {
        // ConcurrentModificationException and the like: the list changed while it was read.
        throw FreshTokenException.Config(name, "invalid configuration `$name`: the list could not be read (${e.javaClass.name})")
    }
    return copy
}

/**
 * The map argument [name] (`extra_params`) read once into a copy of its own,
 * as [checkedTexts] reads a list: every key and value a String checked by
 * [checkText]. A null, a key or value of another class (a raw Java map), or
 * a map that cannot be read through is [FreshTokenException.Config] naming
 * [name] (never quoting a value).
 */
internal fun checkedTextMap(name: String, values: Map<String, String>): Map<String, String> {
    val copy = LinkedHashMap<String, String>()
    try {
        for ((key, value) in values as Map<*, *>) {
            if (key !is String) {
                throw FreshTokenException.Config(name, "invalid configuration `$name`: every name must be a string, found ${classOf(key)}")
            }
            checkText(name, key)
            if (value !is String) {
                throw FreshTokenException.Config(name, "invalid configuration `$name`: `$key` must be a string, found ${classOf(value)}")
            }
            checkText(name, value)
            copy[key] = value
        }
    } catch (e: FreshTokenException) {
        throw e
    } catch (e: RuntimeException) {
        throw FreshTokenException.Config(name, "invalid configuration `$name`: the map could not be read (${e.javaClass.name})")
    }
    return copy
}

private fun classOf(value: Any?): String = if (value == null) "null" else "a ${value.javaClass.name}"

/** These options, after checking each of their strings. */
internal fun TokenClientOptions.checked(): TokenClientOptions = apply {
    checkText("token_endpoint", tokenEndpoint)
    checkText("client_id", clientId)
    checkText("client_secret", clientSecret)
    checkText("client_auth", clientAuth)
    checkText("private_key_pem", privateKeyPem)
    checkText("key_id", keyId)
    checkText("assertion_audience", assertionAudience)
    checkText("audience", audience)
    checkText("authorization_endpoint", authorizationEndpoint)
    checkText("revocation_endpoint", revocationEndpoint)
    checkText("event_keys", eventKeys)
}

/** This seed, after checking each of its strings. */
internal fun SeedOptions.checked(): SeedOptions = apply {
    checkText("refresh_token", refreshToken)
    checkText("access_token", accessToken)
    checkText("scope", scope)
    checkText("id_token", idToken)
}

/**
 * These options, after checking each of their strings, with copies of
 * [AuthorizationUrlOptions.scopes] and [AuthorizationUrlOptions.extraParams]
 * read once.
 */
internal fun AuthorizationUrlOptions.checked(): AuthorizationUrlOptions {
    checkText("redirect_uri", redirectUri)
    checkText("state", state)
    checkText("nonce", nonce)
    checkText("prompt", prompt)
    return copy(scopes = checkedTexts("scopes", scopes), extraParams = checkedTextMap("extra_params", extraParams))
}

/** These options, after checking each of their strings. */
internal fun ExchangeCodeOptions.checked(): ExchangeCodeOptions = apply {
    checkText("code", code)
    checkText("code_verifier", codeVerifier)
    checkText("redirect_uri", redirectUri)
}

/**
 * The Config error for a closed native object ([what], e.g. `EncryptionKey`)
 * passed as the argument [name]: checked before it is lowered, since uniffi
 * would hand its freed handle to the core (the patched generated code throws
 * IllegalStateException there as a backstop).
 */
internal fun closedArgument(name: String, what: String): FreshTokenException.Config =
    FreshTokenException.Config(name, "invalid configuration `$name`: the $what was closed")
