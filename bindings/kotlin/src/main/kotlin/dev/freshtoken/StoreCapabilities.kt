package dev.freshtoken

/**
 * A host store as the core is handed it: its two synchronous members,
 * [TokenStore.supportsLease] and [TokenStore.supportsVersions], read once on
 * the calling thread (when a session's native object is made, a code is
 * exchanged, or an [EncryptedStore] is made over the store) and answered from
 * fields from then on; every other member passes through.
 *
 * The core asks both on its own threads (the process-wide flight thread that
 * finishes every client's abandoned refreshes among them), where a
 * synchronous call has no deadline: a store whose answer blocked there hung
 * its caller for good and stalled other clients' refreshes. With fixed
 * answers the core never runs host code synchronously for them.
 *
 * The core's store adapter now asks them once too (src/ffi/host.rs), for
 * every binding, with the same failure rule: a member that throws fails
 * the call with Storage, and nothing is sent (read as false, a fleet
 * store's lease would be skipped). This layer keeps its own message, which
 * names the exception's class and never its text.
 */
internal class FixedCapabilities private constructor(
    private val store: TokenStore,
    private val lease: Boolean,
    private val versions: Boolean,
) : TokenStore by store {
    /** The host's own store under this wrapper. */
    internal val host: TokenStore get() = store

    override fun supportsLease(): Boolean = lease

    override fun supportsVersions(): Boolean = versions

    companion object {
        /**
         * [store] with its capabilities read now. A native store (an
         * [EncryptedStore]) is returned as it is: the core answers it, from
         * the inner store fixed when it was made.
         *
         * @throws FreshTokenException.Storage when either member throws
         *   (naming the member and the exception's class, never its message);
         *   nothing was done, and the next call asks again.
         * @throws FreshTokenException.Config naming [name] for a closed
         *   native store (its handle must never reach the core).
         */
        fun of(store: TokenStore, name: String = "store"): TokenStore =
            if (store is TokenStoreImpl) {
                if (store.uniffiIsDestroyed) throw closedArgument(name, store.javaClass.simpleName)
                store
            } else if (store is FixedCapabilities) {
                store
            } else {
                FixedCapabilities(
                    store,
                    read("supportsLease") { store.supportsLease() },
                    read("supportsVersions") { store.supportsVersions() },
                )
            }

        /**
         * Asks [member]. Any Throwable counts (an `AssertionError`, `TODO()`'s
         * `NotImplementedError`, a `StackOverflowError`), as for every other
         * host callback (tools/patch-generated.sh, change 1): an Error used
         * to escape every public call raw, past `catch (FreshTokenException)`.
         */
        private inline fun read(member: String, ask: () -> Boolean): Boolean =
            try {
                ask()
            } catch (e: Throwable) {
                throw FreshTokenException.Storage("token storage failed: the store's $member() threw ${e.javaClass.name}")
            }
    }
}

/**
 * The host object a callback runs on, for its share of the host dispatcher
 * (tools/patch-generated.sh, change 10): a store under its per-session
 * [FixedCapabilities] wrapper is the store itself, so all its sessions share one view.
 */
internal fun hostObjectOf(callbackObject: Any): Any = (callbackObject as? FixedCapabilities)?.host ?: callbackObject
