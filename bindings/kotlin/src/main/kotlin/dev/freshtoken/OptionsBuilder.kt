package dev.freshtoken

/**
 * Builds an immutable [TokenClientOptions] from Java (Kotlin callers use the
 * data class's named arguments and defaults instead). Unset members keep the
 * core's defaults.
 *
 * ```java
 * TokenClientOptions options = new TokenClientOptionsBuilder(endpoint, "client-id")
 *     .clientSecret(secret).storeTimeoutMs(2000)
 *     .onEvent(e -> log.info("{} {}", e.getKind(), e.getDurationMs())).eventKeys("hidden")
 *     .build();
 * // for discovery, the client id alone (the endpoints come from the issuer):
 * TokenClient client = TokenClient.discoverBlocking(issuer,
 *     new TokenClientOptionsBuilder("client-id").clientSecret(secret).build());
 * ```
 */
class TokenClientOptionsBuilder(tokenEndpoint: String, clientId: String) {
    /** For [TokenClient.discoverBlocking] / [TokenClient.discoverAsync]: the endpoints come from the issuer. */
    constructor(clientId: String) : this("", clientId)

    /** For [TokenClient.fromCredentialsJson]: the credentials JSON sets the endpoint and the client. */
    constructor() : this("", "")

    private var o = TokenClientOptions(tokenEndpoint = tokenEndpoint, clientId = clientId)

    fun clientSecret(v: String?) = apply { o = o.copy(clientSecret = v) }
    fun clientAuth(v: String?) = apply { o = o.copy(clientAuth = v) }
    fun privateKeyPem(v: String?) = apply { o = o.copy(privateKeyPem = v) }
    fun keyId(v: String?) = apply { o = o.copy(keyId = v) }
    fun assertionAudience(v: String?) = apply { o = o.copy(assertionAudience = v) }
    fun audience(v: String?) = apply { o = o.copy(audience = v) }
    fun authorizationEndpoint(v: String?) = apply { o = o.copy(authorizationEndpoint = v) }
    /**
     * Where `revoke()` and `revokeClientTokens()` send (RFC 7009). Default: the
     * discovered one, else the token endpoint with `/token` replaced by
     * `/revocation`; with neither, those calls throw Config naming it.
     */
    fun revocationEndpoint(v: String?) = apply { o = o.copy(revocationEndpoint = v) }
    fun leewaySeconds(v: Long) = apply { o = o.copy(leewaySeconds = v) }
    fun userTokenLifetimeSeconds(v: Long) = apply { o = o.copy(userTokenLifetimeSeconds = v) }
    fun clientTokenLifetimeSeconds(v: Long) = apply { o = o.copy(clientTokenLifetimeSeconds = v) }
    fun refreshTokenLifetimeSeconds(v: Long) = apply { o = o.copy(refreshTokenLifetimeSeconds = v) }
    fun timeoutMs(v: Long) = apply { o = o.copy(timeoutMs = v) }
    fun storeTimeoutMs(v: Long) = apply { o = o.copy(storeTimeoutMs = v) }
    fun maxSessions(v: Long) = apply { o = o.copy(maxSessions = v) }
    fun leaseTtlMs(v: Long) = apply { o = o.copy(leaseTtlMs = v) }
    fun leaseWaitMs(v: Long) = apply { o = o.copy(leaseWaitMs = v) }
    fun retry(v: RetryOptions?) = apply { o = o.copy(retry = v) }

    /**
     * Receives the client's events on a thread of its own (a Java lambda
     * will do: `.onEvent(e -> counter.increment(e.getKind()))`). The client
     * keeps it and the core holds it only weakly, so it may refer back to
     * the client (`.onEvent(this::onTokenEvent)` in the object that owns
     * the client): a client dropped without `close()` is still collected.
     */
    fun onEvent(v: EventListener?) = apply { o = o.copy(onEvent = v) }

    /** What events show of session keys: `"full"` (default) or `"hidden"` (every key null). */
    fun eventKeys(v: String?) = apply { o = o.copy(eventKeys = v) }

    /** The options (a value: later builder calls do not change it). */
    fun build(): TokenClientOptions = o
}
