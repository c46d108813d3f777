"""Retry policy in action: which failures are transient, how long to wait, and the loop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._config import RETRY_STATUSES, RetryPolicy
from ._errors import APIError, ResponseFormatError, TransportError, VBotError

__all__ = ["OnRetry", "call_with_retries", "compute_backoff", "is_transient"]

T = TypeVar("T")
logger = logging.getLogger("vbot_cdr")

#: Called before each retry with the failure, the number of failed attempts, and the wait.
OnRetry = Callable[[VBotError, int, float], None]

# Tests replace this to observe waits without spending them.
_sleep = asyncio.sleep


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
            if not is_transient(exc) or failed >= policy.max_attempts:
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
                policy.max_attempts,
                wait,
            )
            if on_retry is not None:
                on_retry(exc, failed, wait)
            await _sleep(wait)
