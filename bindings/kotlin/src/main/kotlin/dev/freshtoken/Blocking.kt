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

/*
 * Every `…Async` method is documented never to throw: its failures are its
 * future's. Kotlin checks a non-null parameter on entry, so a Java caller's
 * null threw NullPointerException synchronously, past the future. The
 * `…Async` methods therefore take their reference parameters as nullable
 * types and check them inside the future with [given]: a null is
 * [FreshTokenException.Config] naming the parameter (DESIGN point 16, as the
 * JavaScript binding answers one). Kotlin callers pass values as before.
 */

/** [value], or [FreshTokenException.Config] naming the parameter [name] when a Java caller passed null. */
internal fun <T : Any> given(name: String, value: T?): T =
    value ?: throw FreshTokenException.Config(name, "invalid configuration `$name`: must not be null")
