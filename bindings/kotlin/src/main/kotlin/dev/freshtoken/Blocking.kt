package dev.freshtoken

import java.util.concurrent.CompletableFuture
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.future.future
import kotlinx.coroutines.runBlocking

/** Where the CompletableFuture variants run their suspend call (never the caller's thread). */
private val futureScope = CoroutineScope(SupervisorJob() + Dispatchers.Default)

/**
 * Runs a suspend call to completion on the calling thread (the `…Blocking`
 * variants). An interrupt of that thread ends only its wait: `runBlocking`
 * cancels this caller's coroutine and throws [InterruptedException] (with
 * the flag cleared, as every InterruptedException leaves it), which every
 * `…Blocking` method declares for javac; a refresh it joined goes on and is saved.
 */
internal fun <T> blocking(block: suspend () -> T): T = runBlocking { block() }

/** Runs a suspend call as a [CompletableFuture] (the `…Async` variants); cancelling the future cancels only this caller's wait. */
internal fun <T> future(block: suspend () -> T): CompletableFuture<T> = futureScope.future { block() }
