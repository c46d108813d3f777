"""Which failures are retried, how long the client waits, and the bounded retry loop."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vbot_cdr import (
    APIError,
    AuthenticationError,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    TransportError,
    VBotError,
)
from vbot_cdr._retry import call_with_retries, compute_backoff, is_transient
from vbot_cdr.testing import instant_retries


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits the retry loop asked for, recorded instead of slept."""
    with instant_retries() as recorded:
        yield recorded


# -- compute_backoff ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failed", "policy", "ceiling"),
    [
        (1, RetryPolicy(backoff=0.5, max_backoff=30.0), 0.5),
        (2, RetryPolicy(backoff=0.5, max_backoff=30.0), 1.0),
        (3, RetryPolicy(backoff=0.5, max_backoff=30.0), 2.0),
        (7, RetryPolicy(backoff=0.5, max_backoff=30.0), 30.0),
        (10_000, RetryPolicy(backoff=0.5, max_backoff=30.0), 30.0),
        (3, RetryPolicy(backoff=0.0, max_backoff=30.0), 0.0),
        (1, RetryPolicy(backoff=5.0, max_backoff=2.0), 2.0),
    ],
    ids=["first", "second", "third", "capped", "huge-count", "zero-backoff", "cap-below-base"],
)
def test_backoff_ceiling(failed: int, policy: RetryPolicy, ceiling: float) -> None:
    """The wait is drawn from [0, min(max_backoff, backoff * 2 ** (failed - 1))]."""
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return (low + high) / 2

    assert compute_backoff(failed, policy, uniform=uniform) == ceiling / 2
    assert draws == [(0.0, ceiling)]


def test_backoff_uses_real_jitter_within_bounds() -> None:
    """With the default random source every wait lies between zero and the ceiling."""
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    for failed in range(1, 8):
        ceiling = min(4.0, 2.0 ** (failed - 1))
        for _ in range(50):
            assert 0.0 <= compute_backoff(failed, policy) <= ceiling


@pytest.mark.parametrize(
    "retry_after", [0.0, 3.0, 45.0], ids=["zero", "small", "above-max-backoff"]
)
def test_retry_after_replaces_backoff(retry_after: float) -> None:
    """A Retry-After is the wait as given, even above max_backoff, with no jitter drawn."""

    def no_draw(low: float, high: float) -> float:
        raise AssertionError("jitter drawn despite Retry-After")

    policy = RetryPolicy(backoff=0.5, max_backoff=1.0)
    assert compute_backoff(3, policy, retry_after=retry_after, uniform=no_draw) == retry_after


# -- is_transient -------------------------------------------------------------------------


def api_error(status: int, cls: type[APIError] = APIError) -> APIError:
    return cls("x", http_status=status)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransportError("connection reset"), True),
        (TransportError("no complete answer within 30s"), True),
        (RateLimitError("slow down", retry_after=1.0), True),
        (RateLimitError("slow down", retry_after=None), True),
        (api_error(500), True),
        (api_error(502), True),
        (api_error(503), True),
        (api_error(504), True),
        (ResponseFormatError("not JSON", retryable=True), True),
        (ResponseFormatError("data[0].duration", field="data[0].duration"), False),
        (api_error(200), False),
        (api_error(400), False),
        (api_error(404), False),
        (api_error(501), False),
        (api_error(302), False),
        (api_error(401, AuthenticationError), False),
        (api_error(403, AuthenticationError), False),
        (VBotError("other"), False),
    ],
    ids=[
        "connection",
        "timeout",
        "429-retry-after",
        "429-bare",
        "500",
        "502",
        "503",
        "504",
        "unreadable-body",
        "wrong-field",
        "failure-envelope",
        "400",
        "404",
        "501",
        "redirect",
        "401",
        "403",
        "base-error",
    ],
)
def test_is_transient(error: VBotError, transient: bool) -> None:
    """Connection errors, timeouts, 429, 500/502/503/504 and unreadable bodies are transient."""
    assert is_transient(error) is transient


# -- call_with_retries --------------------------------------------------------------------


class Script:
    """An attempt that fails with the given errors in turn, then succeeds."""

    def __init__(self, *outcomes: VBotError | str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self) -> str:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, VBotError):
            raise outcome
        return outcome


FAST = RetryPolicy(max_attempts=4, backoff=0.0, max_backoff=0.0)


@pytest.mark.parametrize("failures", [0, 1, 3], ids=["first-try", "one-failure", "last-attempt"])
async def test_succeeds_after_transient_failures(failures: int, waits: list[float]) -> None:
    """Transient failures are retried until an attempt succeeds within max_attempts."""
    attempt = Script(*[TransportError("reset")] * failures, "ok")
    assert await call_with_retries(attempt, FAST) == "ok"
    assert attempt.calls == failures + 1
    assert len(waits) == failures


@pytest.mark.parametrize("max_attempts", [1, 2, 5], ids=["one", "two", "five"])
async def test_exhausted_budget_raises_the_last_error(
    max_attempts: int, waits: list[float]
) -> None:
    """After max_attempts failures, counting the first, the last failure is raised."""
    errors = [api_error(500 + i % 2 * 3) for i in range(max_attempts)]
    attempt = Script(*errors)
    with pytest.raises(APIError) as info:
        await call_with_retries(attempt, RetryPolicy(max_attempts=max_attempts, backoff=0.0))
    assert info.value is errors[-1]
    assert attempt.calls == max_attempts
    assert len(waits) == max_attempts - 1


@pytest.mark.parametrize(
    "error",
    [
        api_error(401, AuthenticationError),
        api_error(403, AuthenticationError),
        api_error(400),
        api_error(200),
        ResponseFormatError("bad field", field="data[0].phone"),
    ],
    ids=["401", "403", "400", "failure-envelope", "wrong-field"],
)
async def test_non_transient_failure_is_not_retried(error: VBotError, waits: list[float]) -> None:
    """A failure that a new attempt cannot cure is raised after one attempt, without a wait."""
    attempt = Script(error, "ok")
    with pytest.raises(VBotError) as info:
        await call_with_retries(attempt, FAST)
    assert info.value is error
    assert attempt.calls == 1
    assert waits == []


async def test_waits_follow_the_backoff(waits: list[float]) -> None:
    """Between attempts the loop waits a full-jitter draw under the exponential backoff
    ceiling, which grows to the cap: the same draws, from the same seed, as computed here."""
    attempt = Script(*[TransportError("reset")] * 5, "ok")
    policy = RetryPolicy(max_attempts=6, backoff=0.5, max_backoff=3.0)
    state = random.getstate()
    try:
        random.seed(19)
        assert await call_with_retries(attempt, policy) == "ok"
        random.seed(19)
        expected = [random.uniform(0.0, ceiling) for ceiling in [0.5, 1.0, 2.0, 3.0, 3.0]]
    finally:
        random.setstate(state)
    assert waits == expected


async def test_real_waits_stay_under_the_ceilings(waits: list[float]) -> None:
    """With real jitter each wait lies between zero and that attempt's backoff ceiling."""
    attempt = Script(*[TransportError("reset")] * 5, "ok")
    policy = RetryPolicy(max_attempts=6, backoff=0.5, max_backoff=3.0)
    assert await call_with_retries(attempt, policy) == "ok"
    assert len(waits) == 5
    for wait, ceiling in zip(waits, [0.5, 1.0, 2.0, 3.0, 3.0], strict=True):
        assert 0.0 <= wait <= ceiling


async def test_retry_after_is_honoured(waits: list[float]) -> None:
    """A 429's Retry-After is waited as given, above max_backoff, up to max_retry_after."""
    attempt = Script(
        RateLimitError("slow", retry_after=45.0),
        RateLimitError("slow", retry_after=60.0),
        api_error(503),
        "ok",
    )
    policy = RetryPolicy(max_attempts=5, backoff=0.0, max_backoff=1.0, max_retry_after=60.0)
    assert await call_with_retries(attempt, policy) == "ok"
    assert waits == [45.0, 60.0, 0.0]


async def test_retry_after_of_a_503_is_honoured(waits: list[float]) -> None:
    """A 503 that says when to come back (Retry-After) is retried after that wait."""
    attempt = Script(APIError("busy", http_status=503, retry_after=7.0), "ok")
    policy = RetryPolicy(backoff=0.0, max_backoff=1.0)
    assert await call_with_retries(attempt, policy) == "ok"
    assert waits == [7.0]


async def test_retry_after_above_the_cap_raises_at_once(waits: list[float]) -> None:
    """A Retry-After longer than max_retry_after raises RateLimitError without sleeping."""
    error = RateLimitError("slow", retry_after=61.0)
    attempt = Script(error, "ok")
    with pytest.raises(RateLimitError) as info:
        await call_with_retries(attempt, RetryPolicy(max_retry_after=60.0))
    assert info.value is error
    assert info.value.retry_after == 61.0
    assert attempt.calls == 1
    assert waits == []


async def test_persistent_429_ends_in_rate_limit_error(waits: list[float]) -> None:
    """A 429 that outlasts the retries is raised as RateLimitError with its retry_after."""
    attempt = Script(RateLimitError("slow", retry_after=2.0))
    with pytest.raises(RateLimitError) as info:
        await call_with_retries(attempt, RetryPolicy(max_attempts=3))
    assert info.value.retry_after == 2.0
    assert attempt.calls == 3
    assert waits == [2.0, 2.0]


async def test_on_retry_is_told_each_retry(waits: list[float]) -> None:
    """on_retry hears of every retry, before its wait, with the failure and the count."""
    first, second = TransportError("a"), api_error(502)
    heard: list[tuple[VBotError, int, float]] = []

    def on_retry(exc: VBotError, failed: int, wait: float) -> None:
        heard.append((exc, failed, wait))
        assert len(waits) == failed - 1

    await call_with_retries(Script(first, second, "ok"), FAST, on_retry=on_retry)
    assert heard == [(first, 1, 0.0), (second, 2, 0.0)]


async def test_retries_are_logged_without_secrets(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry is logged once at INFO, naming the endpoint and the failure class."""
    caplog.set_level("INFO", logger="vbot_cdr")
    error = TransportError("reset", endpoint="getAll", page=2)
    await call_with_retries(Script(error, "ok"), FAST)
    [record] = caplog.records
    assert "getAll" in record.getMessage()
    assert "TransportError" in record.getMessage()


async def test_deadline_stops_retries(waits: list[float]) -> None:
    """No retry starts when its wait would end past the deadline; the failure is raised."""
    loop = asyncio.get_running_loop()
    error = RateLimitError("slow", retry_after=30.0)
    attempt = Script(error, "ok")
    with pytest.raises(RateLimitError) as info:
        await call_with_retries(attempt, RetryPolicy(), deadline=loop.time() + 10.0)
    assert info.value is error
    assert attempt.calls == 1
    assert waits == []


async def test_deadline_with_room_lets_retries_run(waits: list[float]) -> None:
    """A deadline far enough away does not stop a retry whose wait fits before it."""
    loop = asyncio.get_running_loop()
    attempt = Script(RateLimitError("slow", retry_after=1.0), "ok")
    assert await call_with_retries(attempt, RetryPolicy(), deadline=loop.time() + 3600.0) == "ok"
    assert waits == [1.0]


async def test_foreign_exceptions_pass_through_unretried(waits: list[float]) -> None:
    """An exception that is not a VBotError (a bug, a cancellation) is never retried."""
    calls = 0

    async def attempt() -> Any:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retries(attempt, FAST)
    assert calls == 1
    assert waits == []


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: RetryPolicy(max_attempts=0), ValueError),
        (lambda: RetryPolicy(backoff=-1.0), ValueError),
        (lambda: RetryPolicy(max_backoff=-0.1), ValueError),
        (lambda: RetryPolicy(max_retry_after=-1.0), ValueError),
        (lambda: RetryPolicy(3), TypeError),  # type: ignore[misc]
    ],
    ids=["zero-attempts", "negative-backoff", "negative-max-backoff", "negative-cap", "positional"],
)
def test_policy_refuses_bad_settings(
    make: Callable[[], RetryPolicy], error: type[Exception]
) -> None:
    """A RetryPolicy with an impossible setting cannot be made."""
    with pytest.raises(error):
        make()


def test_policy_defaults() -> None:
    """The default policy is five attempts, 0.5 s first backoff, 30 s cap, 60 s Retry-After cap."""
    assert RetryPolicy() == RetryPolicy(
        max_attempts=5, backoff=0.5, max_backoff=30.0, max_retry_after=60.0
    )


# -- the seams: the policy's sleep, instant_retries -----------------------------------------


async def test_the_policy_sleeps_through_its_own_sleep() -> None:
    """Outside instant_retries each wait goes to the policy's ``sleep``, as computed."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    policy = RetryPolicy(max_attempts=3, sleep=sleep)
    attempt = Script(RateLimitError("slow", retry_after=4.0), api_error(503), "ok")
    assert await call_with_retries(attempt, policy) == "ok"
    assert len(slept) == 2
    assert slept[0] == 4.0
    assert 0.0 <= slept[1] <= policy.backoff * 2


def test_the_policy_sleep_is_no_part_of_equality_or_repr() -> None:
    async def sleep(delay: float) -> None:
        raise AssertionError("never awaited")

    assert RetryPolicy(sleep=sleep) == RetryPolicy()
    assert "sleep" not in repr(RetryPolicy(sleep=sleep))


async def test_instant_retries_skips_the_policy_sleep_and_records_the_waits() -> None:
    """Inside the block the policy's sleep is not called; the waits are listed instead."""

    async def sleep(delay: float) -> None:
        raise AssertionError("the policy's sleep was called inside instant_retries")

    policy = RetryPolicy(max_attempts=3, sleep=sleep)
    with instant_retries() as waits:
        attempt = Script(RateLimitError("slow", retry_after=40.0), api_error(500), "ok")
        assert await call_with_retries(attempt, policy) == "ok"
    assert waits[0] == 40.0
    assert len(waits) == 2


async def test_instant_retries_caps_the_attempts() -> None:
    """``max_attempts`` caps every policy's, never raises it."""
    errors = [TransportError(f"reset {i}") for i in range(10)]
    with instant_retries(max_attempts=2) as waits:
        attempt = Script(*errors)
        with pytest.raises(TransportError) as info:
            await call_with_retries(attempt, RetryPolicy(max_attempts=5))
        assert info.value is errors[1]
        assert attempt.calls == 2
        attempt = Script(*errors)
        with pytest.raises(TransportError):
            await call_with_retries(attempt, RetryPolicy(max_attempts=1))
        assert attempt.calls == 1
    assert len(waits) == 1


async def test_instant_retries_nest_and_the_innermost_applies() -> None:
    with instant_retries(max_attempts=4) as outer:
        with instant_retries(max_attempts=2) as inner:
            attempt = Script(*[TransportError("reset")] * 5)
            with pytest.raises(TransportError):
                await call_with_retries(attempt, FAST)
            assert attempt.calls == 2
        attempt = Script(*[TransportError("reset")] * 5)
        with pytest.raises(TransportError):
            await call_with_retries(attempt, FAST)
        assert attempt.calls == 4
    assert (len(inner), len(outer)) == (1, 3)


async def test_instant_retries_still_decides_as_the_policy_does() -> None:
    """A Retry-After above max_retry_after, or past the deadline, still raises at once."""
    loop = asyncio.get_running_loop()
    with instant_retries() as waits:
        attempt = Script(RateLimitError("slow", retry_after=120.0), "ok")
        with pytest.raises(RateLimitError):
            await call_with_retries(attempt, RetryPolicy(max_retry_after=60.0))
        attempt = Script(RateLimitError("slow", retry_after=30.0), "ok")
        with pytest.raises(RateLimitError):
            await call_with_retries(attempt, RetryPolicy(), deadline=loop.time() + 10.0)
    assert waits == []


@pytest.mark.parametrize("bad", [0, -1, True])
def test_instant_retries_refuses_a_cap_below_one(bad: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"), instant_retries(max_attempts=bad):
        pass
