"""Where the access token comes from: a fixed string, the caller's async provider, or a login.

The client asks `TokenSource.token` before each request and, after a 401, asks `renew` once
for a fresh token. Renewal is single-flight: however many requests need a new token at once,
one renewal runs and the others take its result (or its error).

`PasswordAuth` logs in at ``POST /token``. Nothing here does I/O: this module decides when to
ask and for what, `_wire` builds the form and reads the answer, and the client's
`ExchangeToken` callable sends it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Protocol, Union

from ._errors import AuthenticationError, VBotError
from ._wire import TokenGrant, TokenRequest, password_grant, refresh_grant

__all__ = [
    "DEFAULT_REFRESH_MARGIN",
    "ApiKey",
    "Credential",
    "ExchangeToken",
    "PasswordAuth",
    "ProvidedToken",
    "StaticToken",
    "TokenProvider",
    "TokenSource",
    "api_key_source",
    "token_source",
]

logger = logging.getLogger("vbot_cdr")

#: Seconds before ``expires_in`` runs out at which a token is renewed (capped at half its life).
DEFAULT_REFRESH_MARGIN: Final = 60.0

#: An async callable returning the current access token.
TokenProvider = Callable[[], Awaitable[str]]

#: Sends one token request and returns the grant: the client's POST, with its retries.
ExchangeToken = Callable[[TokenRequest], Awaitable[TokenGrant]]


class TokenSource(Protocol):
    """What the client needs of a credential."""

    async def token(self) -> str:
        """The access token to send now."""
        ...

    async def renew(self, rejected: str) -> str | None:
        """A token to try instead of ``rejected`` (refused with 401), or ``None`` if none."""
        ...


class StaticToken:
    """A fixed token (or API key): nothing to renew."""

    def __init__(self, token: str, *, name: str = "token"):
        if not isinstance(token, str) or not token:
            raise ValueError(f"{name} must be a non-empty string")
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<hidden>)"

    async def token(self) -> str:
        return self._token

    async def renew(self, rejected: str) -> str | None:
        return None


class ProvidedToken:
    """The caller's async provider, asked before each request and once more after a 401."""

    def __init__(self, provider: TokenProvider):
        self._provider = provider
        self._lock = asyncio.Lock()
        self._latest: str | None = None

    def __repr__(self) -> str:
        # Not the provider's repr: a functools.partial would show its arguments, keys included.
        return "ProvidedToken(<provider>)"

    async def token(self) -> str:
        token = await self._provider()
        if not isinstance(token, str) or not token:
            raise TypeError("the token provider must return a non-empty string")
        self._latest = token
        return token

    async def renew(self, rejected: str) -> str | None:
        async with self._lock:
            if self._latest is not None and self._latest != rejected:
                return self._latest  # another request renewed it while we waited
            fresh = await self.token()
        return None if fresh == rejected else fresh


class PasswordAuth:
    """Log in with a username and password, and keep the token fresh.

    Usage::

        auth = PasswordAuth("alice", password)
        async with VBotClient(auth, base_url="https://api.example.vn") as client:
            ...

    Each client using it logs in on its first request (``POST {base_url}/token``,
    form-encoded ``username``, ``password``, ``grant_type=password``) and reuses the token.
    The token is renewed with ``grant_type=refresh_token``:

    - ``refresh_margin`` seconds before its ``expires_in`` runs out, the margin being capped
      at half the token's lifetime (a 20-second token is renewed after 10 seconds);
    - after a 401 on a token that was still valid.

    If the refresh is refused, or the server gave no refresh token, the client logs in again
    with the password, once; if that is refused too, `AuthenticationError` carries the
    server's reason. However many requests are in flight, one expiry causes one ``/token``
    request; the others wait for its token (or its error).

    Args:
        username: The VBot account's username.
        password: Its password. Never shown in a repr, an exception or a log line.
        refresh_margin: Seconds of a token's life to leave unused (default 60), so that a
            request sent just before the expiry is not refused on arrival.
        clock: Seconds on a monotonic clock; tests pass a fake one to expire tokens at will.

    Raises:
        ValueError: ``username`` or ``password`` is empty, or ``refresh_margin`` < 0.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ):
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        if not refresh_margin >= 0:
            raise ValueError(f"refresh_margin must be >= 0 seconds, got {refresh_margin!r}")
        self.username = username
        self._password = password
        self.refresh_margin = float(refresh_margin)
        self.clock = clock

    def __repr__(self) -> str:
        return f"PasswordAuth(username={self.username!r}, password=<hidden>)"

    def _bind(self, exchange: ExchangeToken) -> TokenSource:
        return _PasswordTokens(self, password_grant(self.username, self._password), exchange)


class _PasswordTokens:
    """One client's tokens from a `PasswordAuth`, renewed one flight at a time."""

    def __init__(self, auth: PasswordAuth, login: TokenRequest, exchange: ExchangeToken):
        self._auth = auth
        self._login = login
        self._exchange = exchange
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self._renew_at = -math.inf
        # Renewals that ended (in success or failure), and how the last one failed: a task
        # that queued behind a renewal takes its outcome instead of starting another.
        self._renewals = 0
        self._failure: tuple[VBotError, TracebackType | None] | None = None

    def __repr__(self) -> str:
        return f"<tokens of {self._auth!r}>"

    def _fresh(self, stale: str | None) -> str | None:
        """The current token, unless it is ``stale``, missing, or due for renewal."""
        if self._access != stale and self._auth.clock() < self._renew_at:
            return self._access
        return None

    async def token(self) -> str:
        return self._fresh(None) or await self._replace(self._access)

    async def renew(self, rejected: str) -> str | None:
        return await self._replace(rejected)

    async def _replace(self, stale: str | None) -> str:
        """A token other than ``stale``, from at most one renewal however many ask at once."""
        queued_at = self._renewals
        async with self._lock:
            if self._renewals != queued_at:
                return self._outcome()  # a renewal ended while we queued: share it
            fresh = self._fresh(stale)
            if fresh is not None:
                return fresh  # one ended after ``stale`` was read, before we queued
            started = self._auth.clock()
            try:
                grant = await self._obtain()
            except VBotError as exc:
                # Only errors are shared: a cancelled renewal is left for the next in line.
                self._failure = (exc, exc.__traceback__)
                self._renewals += 1
                raise
            self._failure = None
            self._renewals += 1
            self._store(grant, started)
            return grant.access_token

    def _outcome(self) -> str:
        if self._failure is not None:
            exc, traceback = self._failure
            raise exc.with_traceback(traceback)
        assert self._access is not None  # a renewal that did not fail stored a token
        return self._access

    async def _obtain(self) -> TokenGrant:
        if self._refresh is not None:
            try:
                return await self._exchange(refresh_grant(self._refresh))
            except AuthenticationError as exc:
                logger.info("token: refresh refused (%s); logging in again", exc.message)
                self._refresh = None
        logger.debug("token: logging in as %r", self._auth.username)
        return await self._exchange(self._login)

    def _store(self, grant: TokenGrant, started: float) -> None:
        self._access = grant.access_token
        if grant.refresh_token is not None:
            # Without a new one, a refresh token stays valid (RFC 6749, section 6).
            self._refresh = grant.refresh_token
        lifetime = grant.expires_in
        if lifetime is None:
            self._renew_at = math.inf  # renewed only after a 401
        else:
            # Counted from before the request: the server's clock started no earlier.
            self._renew_at = started + lifetime - min(self._auth.refresh_margin, lifetime / 2)


#: What `VBotClient` accepts as credentials.
Credential = Union[str, TokenProvider, TokenSource, PasswordAuth]


def token_source(token: Credential, exchange: ExchangeToken) -> TokenSource:
    """Wrap what the caller gave as ``token`` into a `TokenSource`.

    Args:
        token: A token, an async token provider, a token source, or a `PasswordAuth`.
        exchange: How a `PasswordAuth` sends its token requests (the client's POST).

    Raises:
        TypeError: ``token`` is none of the above.
    """
    if isinstance(token, str):
        return StaticToken(token)
    if isinstance(token, PasswordAuth):
        return token._bind(exchange)
    if hasattr(token, "token") and hasattr(token, "renew"):
        return token
    if callable(token):
        return ProvidedToken(token)
    raise TypeError(
        f"token must be a string, an async callable or a PasswordAuth, got {type(token).__name__}"
    )


#: What `VBotClient` accepts as an API key: the key, or an async callable returning it.
ApiKey = Union[str, TokenProvider]


def api_key_source(api_key: ApiKey) -> TokenSource:
    """Wrap what the caller gave as ``api_key`` into a `TokenSource` (a key is a secret as a
    token is; a provider is asked before each request, and once more after a 401).

    Raises:
        TypeError: ``api_key`` is neither a string nor a callable.
        ValueError: ``api_key`` is an empty string.
    """
    if isinstance(api_key, str):
        return StaticToken(api_key, name="api_key")
    if callable(api_key):
        return ProvidedToken(api_key)
    raise TypeError(f"api_key must be a string or an async callable, got {type(api_key).__name__}")
