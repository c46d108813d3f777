"""Retry policy in action: which failures are transient, how long to wait, and the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import attrs

from ._config import RETRY_STATUSES, RetryPolicy
from ._errors import APIError, ResponseFormatError, TransportError, VBotError

__all__ = ["OnRetry", "call_with_retries", "compute_backoff", "instant_retries", "is_transient"]

T = TypeVar("T")
logger = logging.getLogger("vbot_cdr")

#: Called before each retry with the failure, the number of failed attempts, and the wait.
OnRetry = Callable[[VBotError, int, float], None]


@attrs.define
class _Instant:
    """One `instant_retries` in force: its cap on attempts, and the waits it skipped."""

    max_attempts: int | None
    waits: list[float]


# The `instant_retries` blocks in force, innermost last; empty outside tests. A plain list,
# not a context variable, so that it reaches tasks and clients made before the block.
_instant: list[_Instant] = []


@contextlib.contextmanager
def instant_retries(*, max_attempts: int | None = None) -> Iterator[list[float]]:
    """Within the block, every client's retries wait zero seconds (for tests).

    Usage::

        with vbot_cdr.testing.instant_retries(max_attempts=2) as waits:
            ...  # a client meeting 503s retries at once
        assert len(waits) == 1

    Each retry loop still decides as it would (which failures to retry, ``Retry-After``
    above ``max_retry_after``, a deadline that leaves no room for the wait); it only skips
    the wait, yielding to the event loop once instead, and notes the seconds it would have
    waited in the list the block gives. The policy's own ``sleep`` is not called. Blocks
    nest; the innermost applies. Not thread-safe, like the rest of a test's setup.

    Args:
        max_attempts: Cap every policy's ``max_attempts`` at this many (``None``: as is).

    Raises:
        ValueError: ``max_attempts`` is below 1.

    .. versionadded:: Unreleased
    """
    if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
        raise ValueError(f"max_attempts must be >= 1 or None, got {max_attempts!r}")
    instant = _Instant(max_attempts, [])
    _instant.append(instant)
    try:
        yield instant.waits
    finally:
        _instant.remove(instant)


def is_transient(exc: VBotError) -> bool:
    """Whether a new attempt of the same request may succeed."""
    if isinstance(exc, TransportError):
        return True
    if isinstance(exc, ResponseFormatError):
        return exc.retryable
    if isinstance(exc, APIError):
        # A failure envelope comes with a 2xx status: the server has spoken, do not insist.
        return exc.http_status in RETRY_STATUSES
    return False


def compute_backoff(
    failed_attempts: int,
    policy: RetryPolicy,
    *,
    retry_after: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait after ``failed_attempts`` (>= 1) failures; see `RetryPolicy`."""
    if retry_after is not None:
        return retry_after
    # Capping the exponent first keeps 2 ** n from overflowing a float on absurd counts.
    ceiling = min(policy.max_backoff, policy.backoff * 2.0 ** min(failed_attempts - 1, 64))
    return uniform(0.0, ceiling)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: OnRetry | None = None,
    deadline: float | None = None,
) -> T:
    """Await ``attempt()`` until it succeeds, a failure is not transient, or the budget ends.

    Args:
        attempt: Makes one attempt; raises `VBotError` on failure.
        policy: Attempts and waits.
        on_retry: Told of each retry before its wait.
        deadline: Event-loop time (``loop.time()``) after which no retry is started; a wait
            that would end past it is not begun.

    Returns:
        The first successful result.

    Waits go through ``policy.sleep``, or are skipped inside `instant_retries`.

    Raises:
        VBotError: The last failure, when it is not transient, when ``max_attempts`` are
            spent, when the deadline leaves no room for the wait, or at once when the server
            asks (``Retry-After``) to wait longer than ``policy.max_retry_after``.
    """
    loop = asyncio.get_running_loop()
    failed = 0
    while True:
        try:
            return await attempt()
        except VBotError as exc:
            failed += 1
            instant = _instant[-1] if _instant else None
            attempts = policy.max_attempts
            if instant is not None and instant.max_attempts is not None:
                attempts = min(attempts, instant.max_attempts)
            if not is_transient(exc) or failed >= attempts:
                raise
            retry_after = exc.retry_after if isinstance(exc, APIError) else None
            if retry_after is not None and retry_after > policy.max_retry_after:
                raise
            wait = compute_backoff(failed, policy, retry_after=retry_after)
            if deadline is not None and loop.time() + wait >= deadline:
                raise
            logger.info(
                "retrying %s after %s (attempt %d of %d, waiting %.2fs)",
                exc.endpoint,
                type(exc).__name__,
                failed + 1,
                attempts,
                wait,
            )
            if on_retry is not None:
                on_retry(exc, failed, wait)
            if instant is None:
                await policy.sleep(wait)
            else:
                instant.waits.append(wait)
                await asyncio.sleep(0)
