"""Client configuration: the retry policy, defaults, and validation of settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

import attrs

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_LOOKBACK",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_RETRY",
    "DEFAULT_SETTLE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WINDOW",
    "RetryPolicy",
    "normalize_base_url",
]

DEFAULT_CONCURRENCY: Final = 8
DEFAULT_PAGE_SIZE: Final = 100
DEFAULT_TIMEOUT: Final = 30.0
#: A sync re-reads this much before its watermark: calls VBot writes late are not missed.
DEFAULT_LOOKBACK: Final = dt.timedelta(minutes=10)
#: A sync stops this long before now: calls still being written are left to the next run.
DEFAULT_SETTLE: Final = dt.timedelta(minutes=2)
#: The width of the time windows a sync pages one by one.
DEFAULT_WINDOW: Final = dt.timedelta(days=1)
#: A single response larger than this is refused rather than buffered (64 MiB).
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024

#: HTTP statuses that say "try again": the request may succeed unchanged.
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    Retried: connection errors, attempts past the timeout, HTTP 429, 500, 502, 503, 504, and
    bodies that are not a readable envelope. Never retried: 401/403, other 4xx, a failure
    envelope, and records of the wrong shape. The API answers ``GET`` requests only, so a retry is
    safe; so is repeating a token request (at worst a rotated refresh token is refused, and the
    client logs in with the password instead).

    Before attempt ``n + 1`` (``n`` >= 1 failed attempts) the client waits::

        retry_after                                     if the server sent Retry-After
        random.uniform(0, min(max_backoff, backoff * 2 ** (n - 1)))   otherwise

    i.e. exponential backoff with full jitter. ``Retry-After`` (seconds or an HTTP date) is
    the server's word and is honoured as given, even above ``max_backoff``, up to
    ``max_retry_after``; a longer demand raises `RateLimitError` at once instead of sleeping.

    Args:
        max_attempts: Attempts per request, the first one included (1 disables retries).
        backoff: The first backoff ceiling, in seconds.
        max_backoff: The largest backoff ceiling, in seconds.
        max_retry_after: The longest ``Retry-After`` the client will sleep, in seconds.
        sleep: Waits the given seconds between attempts (`asyncio.sleep`). A test can pass
            its own to observe or hold the waits; to skip them in every client at once, see
            `vbot_cdr.testing.instant_retries`. Not part of equality or the repr.

    .. versionadded:: Unreleased ``sleep``.
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least_one)
    backoff: float = attrs.field(default=0.5, validator=_positive)
    max_backoff: float = attrs.field(default=30.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)
    sleep: Callable[[float], Awaitable[object]] = attrs.field(
        default=asyncio.sleep, eq=False, repr=False
    )


_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """Check a base URL and return it without a trailing slash.

    Raises:
        ValueError: The URL is not ``http(s)://host[...]``, or it is plain ``http://`` to a
            host other than loopback without ``allow_insecure_http`` (the token would cross
            the network in clear text).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must look like 'https://host', got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"base_url must not have a query or fragment, got {base_url!r}")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise ValueError(
            f"refusing plain http:// to {parts.hostname!r}: the token would travel unencrypted; "
            "use https:// or pass allow_insecure_http=True"
        )
    return base_url.rstrip("/")


#: The policy a client uses unless given another.
DEFAULT_RETRY: Final = RetryPolicy()
