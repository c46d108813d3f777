"""Where the access token comes from: a fixed string, or the caller's async provider.

The client asks `TokenSource.token` before each request and, after a 401, asks `renew` once
for a fresh token. Renewal is single-flight: however many requests saw the 401, one renewal
runs and the others take its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, Union

__all__ = ["ProvidedToken", "StaticToken", "TokenProvider", "TokenSource", "token_source"]

#: An async callable returning the current access token.
TokenProvider = Callable[[], Awaitable[str]]


class TokenSource(Protocol):
    """What the client needs of a credential."""

    async def token(self) -> str:
        """The access token to send now."""
        ...

    async def renew(self, rejected: str) -> str | None:
        """A token to try instead of ``rejected`` (refused with 401), or ``None`` if none."""
        ...


class StaticToken:
    """A fixed token: nothing to renew."""

    def __init__(self, token: str):
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
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
        return f"ProvidedToken({self._provider!r})"

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


def token_source(token: Union[str, TokenProvider, TokenSource]) -> TokenSource:
    """Wrap what the caller gave as ``token`` into a `TokenSource`.

    Raises:
        TypeError: ``token`` is none of a string, an async callable, or a token source.
    """
    if isinstance(token, str):
        return StaticToken(token)
    if hasattr(token, "token") and hasattr(token, "renew"):
        return token
    if callable(token):
        return ProvidedToken(token)
    raise TypeError(f"token must be a string or an async callable, got {type(token).__name__}")
