@file:JvmName("TokenEvents")

package dev.freshtoken

import java.lang.ref.WeakReference
import java.time.Duration
import java.time.Instant

// Events (README "Events and metrics"): the generated EventListener,
// TokenEvent and EventKind keep their names (values and a host callback,
// with no FFI behind them to hide, like TokenStore and
// ReauthorizationReason); this file adds the Kotlin idioms. Java reads the
// properties as `TokenEvents.getKindCode(event)`, `TokenEvents.getAt(event)`,
// and passes a lambda where an EventListener is expected.

/**
 * An [EventListener] from a lambda, for `TokenClientOptions(…, onEvent =
 * EventListener { e -> … })`. It is called on the client's own
 * `freshtoken-events` thread, in order, after the fact: a slow listener
 * delays no refresh (events that find 1,024 others waiting are dropped),
 * and whatever it throws is ignored.
 *
 * The [TokenClient] made with it keeps it (strongly) for as long as the
 * client lives; the core holds it only weakly (see [WeakEventListener]), so
 * it may refer back to its client, e.g. `EventListener { e ->
 * this.onTokenEvent(e) }` in a service that owns the client: a service
 * dropped without `close()` is still collected and its native client freed.
 */
@Suppress("FunctionName")
fun EventListener(handler: (TokenEvent) -> Unit): EventListener = object : EventListener {
    override fun onEvent(event: TokenEvent) = handler(event)

    override fun toString(): String = "EventListener($handler)"
}

/**
 * What the core is handed in place of the application's [EventListener]:
 * a forwarder that reaches it through a [WeakReference], and does nothing
 * once it is gone. The [TokenClient] wrapper owns the application's
 * listener (a strong field), so it lives exactly as long as the wrapper.
 *
 * Ownership: the core keeps its listener for the native client's life, and
 * uniffi's Kotlin keeps every callback object handed to Rust in its handle
 * map, a static map and so a GC root. A listener held there strongly that
 * refers back to its client (a service that owns the client and handles
 * its events) kept the service, the wrapper, its `FfiTokenClient` and so
 * the native client, its sessions and its `freshtoken-events` thread alive
 * for good: the Cleaner never ran. Through this forwarder the cycle
 * (wrapper -> listener -> service -> wrapper) is one of plain JVM objects,
 * which the collector frees. The forwarder captures nothing else (a
 * top-level class: no outer instance, no client). Events the core emits
 * after the wrapper was collected (an abandoned refresh finishing on the
 * core's threads) are dropped.
 */
internal class WeakEventListener(listener: EventListener) : EventListener {
    private val listener = WeakReference(listener)

    override fun onEvent(event: TokenEvent) {
        listener.get()?.onEvent(event)
    }

    override fun toString(): String = "WeakEventListener"
}

/**
 * These options as the core is handed them: [TokenClientOptions.onEvent]
 * replaced by a [WeakEventListener] around it (the caller's [TokenClient]
 * keeps the listener itself).
 */
internal fun TokenClientOptions.withWeakListener(): TokenClientOptions =
    when (val listener = onEvent) {
        null -> this
        else -> copy(onEvent = WeakEventListener(listener))
    }

/** The stable name of the kind, the same in every binding: `refresh_started`, `refreshed`, …. */
val EventKind.code: String
    get() = when (this) {
        EventKind.REFRESH_STARTED -> "refresh_started"
        EventKind.REFRESHED -> "refreshed"
        EventKind.REFRESH_FAILED -> "refresh_failed"
        EventKind.REAUTHORIZATION_REQUIRED -> "reauthorization_required"
        EventKind.SAVED -> "saved"
        EventKind.SAVE_FAILED -> "save_failed"
        EventKind.LEASE_WAITED -> "lease_waited"
        EventKind.CLIENT_TOKEN_ISSUED -> "client_token_issued"
        EventKind.CLIENT_TOKEN_FAILED -> "client_token_failed"
        EventKind.REVOKED -> "revoked"
    }

/** [TokenEvent.kind] as its stable name (`event.kindCode == "refresh_failed"`). */
val TokenEvent.kindCode: String get() = kind.code

/** [TokenEvent.atMs] (the client's clock) as an [Instant]. */
val TokenEvent.at: Instant get() = Instant.ofEpochMilli(atMs)

/** [TokenEvent.durationMs] as a [Duration], where the kind has one. */
val TokenEvent.duration: Duration? get() = durationMs?.let(Duration::ofMillis)

/** [TokenEvent.reason] as its stable string (`invalid_grant`, …), for `reauthorization_required`. */
val TokenEvent.reasonCode: String? get() = reason?.code
