package dev.freshtoken

import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ExperimentalCoroutinesApi

/**
 * Where one host object's own blocking I/O runs ([HttpUrlConnectionClient]'s
 * exchanges, [FileTokenStore]'s file calls): a view of `Dispatchers.IO` with
 * 64 threads of its own, one view per object. Not `Dispatchers.IO` itself:
 * an app whose blocking work filled IO's 64 threads held a token request
 * there until the core's deadline had passed, and the rotated refresh token
 * its answer brought was lost (`LOST_ROTATION` at the next call). Not one
 * view for all: a store stuck on a lock would hold every client's requests.
 * A view is bounded by its own limit only, and shares IO's daemon threads.
 */
@OptIn(ExperimentalCoroutinesApi::class)
internal fun blockingIo(): CoroutineDispatcher = Dispatchers.IO.limitedParallelism(64)
