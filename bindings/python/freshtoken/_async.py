"""The asyncio client: ``AsyncClient`` and its ``AsyncSession``.

Use them from any loop and any thread (``asyncio.run`` per request
included): a cached ``await session.access_token()`` reads the client's
mirror and clock without calling into the core; every other call runs on
freshtoken's own loop and is awaited from yours. A caller that is cancelled
(a timeout) or whose loop closes stops only its own wait; a refresh it
joined still finishes and saves for everyone else.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from ._ffi.freshtoken import (Clock, ExchangeCodeOptions, HttpClient, SeedOptions, SessionStatus, TokenInfo,
                              TokenStore, discover_client)
from . import _check, _loop
from ._errors import FreshTokenError
from ._shared import (ClientCore, SessionCore, answered_store, closed_error, guarded_store, scopes_list,
                      seed_options)

__all__ = ["AsyncClient", "AsyncSession"]

# The system clock the mirror reads (a module global: the fastest lookup).
_time = time.time


class AsyncSession(SessionCore):
    """One user's tokens, for asyncio code (from ``AsyncClient.session``).

    Handles with the same key in one client share one state, one refresh and
    one mirrored token, so making one per request is fine.
    """

    __slots__ = ()

    async def access_token(self) -> str:
        """A fresh access token. While the mirrored token is fresh on the
        client's clock this is an attribute read and a clock read, no call
        into the core and nothing scheduled on any loop; otherwise the core
        answers (one refresh shared by all callers, the rotated record saved
        before anyone gets the new token)."""
        entry = self._entry
        if entry.since <= _time() < entry.until:
            return entry.token
        return await self._access_token()

    async def _access_token(self) -> str:
        token = self._refill()
        if token is not None:
            return token
        token = await _loop.run(self._handle().access_token)
        self._refill()
        return token

    async def tokens(self) -> TokenInfo:
        """The fresh token with its expiry, scope, ID token and refresh expiry."""
        return await self._replacing("tokens")

    async def refresh(self) -> TokenInfo:
        """A forced refresh, shared with concurrent callers."""
        return await self._replacing("refresh")

    async def token_rejected(self, token: str) -> TokenInfo:
        """The API rejected ``token``: refresh, unless another caller already did."""
        return await self._replacing("token_rejected", _check.text(token, "token"))

    async def seed(self, options: Optional[SeedOptions] = None, **fields: Any) -> None:
        """Adopts an existing refresh token: ``seed(refresh_token=…, access_token=…, expires_in=…)``."""
        await self._replacing("seed", seed_options(options, fields))

    async def status(self) -> SessionStatus:
        """What is known without sending anything (a record not saved yet is
        saved first, as by every call)."""
        return await self._replacing("status")

    async def revoke(self) -> None:
        """Revokes the session at the server (RFC 7009: the refresh token,
        then a live access token) and marks it dead, reason ``"revoked"``:
        every later call raises ``ReauthorizationRequired`` without a request,
        in this process and, through the store, in others, until ``seed()``
        or a new code exchange (``status()`` answers, and ``revoke()``
        returns or retries a revocation still pending). A refresh in flight
        finishes first, so the rotated token is the one revoked. A
        revocation that fails for good raises the cause's class
        (``TransientError``, ``NetworkError``, ``InvalidClientError``, …)
        whose message says the server may still hold the token; the session
        is dead all the same, and ``revoke()`` again retries. A session whose
        last refresh lost its answer (``status().in_doubt``) may have a
        successor token at the server that this client never received: the
        token held is revoked, then ``ReauthorizationRequired`` (reason
        ``lost_rotation``) says the server may still hold a token, at every
        later call too (sending nothing): end that grant at the provider. A
        client with no revocation endpoint raises ``ConfigError`` naming
        ``revocation_endpoint`` and changes nothing."""
        try:
            await _loop.run(self._drop().revoke)
        finally:
            self._dropped()

    async def _replacing(self, method: str, *args: Any) -> Any:
        try:
            result = await _loop.run(getattr(self._drop(), method), *args)
        finally:
            self._dropped()
        self._refill()
        return result


class _HostClockAsyncSession(AsyncSession):
    """An ``AsyncSession`` of a client built with ``clock=``: the mirror reads that clock."""

    __slots__ = ()

    async def access_token(self) -> str:
        entry = self._entry
        try:
            if entry.since <= self._now() < entry.until:
                return entry.token
        except Exception:  # noqa: BLE001 - a failing host clock: ask the core
            pass
        return await self._access_token()

    access_token.__doc__ = AsyncSession.access_token.__doc__


class AsyncClient(ClientCore):
    """One OAuth client for asyncio code: user sessions, client tokens, the
    code flow, revocation.

    ``AsyncClient(token_endpoint, client_id, client_secret=…,
    leeway_seconds=…, timeout_ms=…, retry={…}, revocation_endpoint=…, …)``
    takes the fields of ``TokenClientOptions`` as keywords
    (``revocation_endpoint`` defaults to the token endpoint's ``…/token`` →
    ``…/revocation``; there is none for a token endpoint not ending in
    ``/token``); ``await AsyncClient.discover(issuer, client_id, …)``
    reads the endpoints from the provider's discovery document instead. ``http`` defaults to
    :class:`UrllibHttpClient`; ``clock`` (for tests with fake time) to the
    system clock.

    ``on_event=callable`` receives every event (refresh, failure, re-link,
    save, lease wait, client token, revocation) as a :class:`TokenEvent`,
    on freshtoken's events thread, after the fact: what it raises is
    ignored, and a slow one never delays a refresh. An ``async def``
    callable's coroutine runs on the loop that was running where the client
    was made (``await AsyncClient.discover(…)``, or a constructor called in
    a coroutine); made outside any loop, the coroutine is closed unrun.
    ``event_keys="hidden"`` leaves the session key out of events (default
    ``"full"``).
    """

    _session_classes = (AsyncSession, _HostClockAsyncSession)

    async def client_token(self, scopes: Iterable[str] = ()) -> str:
        """A fresh client-credentials token for ``scopes`` (cached per scope set)."""
        return await _loop.run(self._native.client_token, scopes_list(scopes))

    async def revoke_client_tokens(self) -> None:
        """Revokes every cached client token at the server (RFC 7009) and
        forgets it: the next ``client_token()`` asks for a new one. Every
        scope set is tried; the first failure is raised, and a token whose
        revocation failed is kept and revoked again by the next call. A
        ``client_token()`` already waiting for a request in flight still gets
        its token, which is revoked right after. With no revocation
        endpoint, ``ConfigError`` naming it, the tokens kept.
        Cancelling ends only the wait: the revocations go on."""
        await _loop.run(self._native.revoke_client_tokens)

    async def save_unsaved(self) -> None:
        """Saves every session record this client holds only in memory: a
        rotation (or a new link) whose save the store refused, which the
        session's next call would otherwise save first. Refreshes running are
        waited for. Await it before dropping the client (at shutdown): a
        record that goes unsaved with the client takes the session's newest
        refresh token with it, and the stored one is spent. Raises ``StorageError`` saying how many are
        still unsaved (they are kept; calling again retries). Seeds and code
        exchanges running are waited for too. Cancelling ends the wait: saves already
        started go on, the others are left for the next call. ``aclose()``
        calls it."""
        await _loop.run(self._native.save_unsaved)

    async def aclose(self) -> None:
        """Closes the client: later calls on it and on its session handles
        raise ``RuntimeError`` (``session()`` still returns a handle, whose
        calls raise); calls already running go on. Then it saves every
        record the client holds only in memory (``save_unsaved()``: a
        rotation whose save the store refused; calls running are waited for)
        and lets the native client go. Await it at shutdown, or use the
        client as an async context manager (``async with AsyncClient(...) as
        client:``), which awaits it on leaving the block. Closing a closed
        client does nothing, unless its save failed: then it tries again.

        If the store still refuses, this logs it at ERROR on the
        ``freshtoken`` logger (how many records; never a token or a secret)
        and raises ``StorageError``: those records, each the newest refresh
        token of its session (the stored one is spent), are then lost with
        the client unless its store takes them at a later ``aclose()`` or at
        interpreter exit (freshtoken's exit hook tries once more for every
        live client). Cancelling ends the wait: the saves go on, the client
        stays closed."""
        inner = self._begin_close()
        if inner is None:
            return
        try:
            await _loop.run(inner.save_unsaved)
        except FreshTokenError as error:
            self._log_unsaved(error, "aclose")
            raise
        self._closed_saved(inner)

    async def __aenter__(self) -> "AsyncClient":
        if self._closed:
            raise closed_error(self)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    @classmethod
    async def discover(cls, issuer: str, client_id: str, *, http: Optional[HttpClient] = None,
                       clock: Optional[Clock] = None, **options: Any) -> "AsyncClient":
        """A client for the provider ``issuer`` (``https://…``, or ``http`` on
        loopback), its token, authorization and revocation endpoints read from
        ``{issuer}/.well-known/openid-configuration`` (one request, no retry)
        and checked: the document's ``issuer`` must be ``issuer``, its
        endpoints https when the issuer is. Takes the constructor's keyword
        options (an endpoint given there wins over the document's; one the
        document does not publish is never guessed);
        ``client.provider_metadata`` keeps what was read. A missing or bad
        document raises ``InvalidResponseError``, a 429 or 5xx
        ``TransientError``, an unreachable issuer ``NetworkError`` (or
        ``freshtoken.TimeoutError``), a plain-http issuer off loopback
        ``ConfigError``."""
        args = cls._discovery(issuer, client_id, http, clock, options)
        return cls._discovered(await _loop.run(discover_client, *args), clock, options)

    async def exchange_code(self, key: str, store: TokenStore, *, code: str,
                            code_verifier: str, redirect_uri: str) -> AsyncSession:
        """Exchanges an authorization code; stores the first record under ``key``.

        A code is sent once per process: a repeat for the same ``key`` while
        the first runs or within 10 minutes after joins the first call or gets
        its outcome; for another key, verifier or redirect URI it raises
        ``ConfigError`` naming ``code``, nothing sent. A code that may have
        reached the server (a lost answer, a 5xx: not retried) counts as
        redeemed: a repeat then raises the same error and sends nothing, and
        the user logs in again.
        A repeat after a failed save saves the record."""
        if self._closed:
            raise closed_error(self)
        key = _check.key(key)
        guarded = guarded_store(store)
        options = _check.record(ExchangeCodeOptions, dict(code=code, code_verifier=code_verifier,
                                                          redirect_uri=redirect_uri))
        adopted = answered_store(guarded)  # its supports_* asked here, not on freshtoken's loop
        self._mirror.begin(key)
        try:
            handle = await _loop.run(self._native.exchange_code, options, key, adopted)
        finally:
            self._mirror.end(key)  # nothing mirrored during it: it replaces the token
        return self._exchanged(key, store, guarded, handle)
