@file:JvmName("TokenEvents")

package dev.freshtoken

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
 */
@Suppress("FunctionName")
fun EventListener(handler: (TokenEvent) -> Unit): EventListener = object : EventListener {
    override fun onEvent(event: TokenEvent) = handler(event)

    override fun toString(): String = "EventListener($handler)"
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
