package dev.freshtoken

import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ExperimentalCoroutinesApi

/**
 * Where the binding's own blocking I/O runs ([HttpUrlConnectionClient]'s
 * exchange, [FileTokenStore]'s file calls): a view of `Dispatchers.IO` with
 * 64 threads of its own. Not `Dispatchers.IO` itself: an app whose blocking
 * work filled IO's 64 threads held a token request there until the core's
 * deadline had passed, and the rotated refresh token its answer brought was
 * lost (`LOST_ROTATION` at the next call). A view is bounded by its own
 * limit only, and shares IO's daemon threads.
 */
@OptIn(ExperimentalCoroutinesApi::class)
internal val blockingIo: CoroutineDispatcher = Dispatchers.IO.limitedParallelism(64)
