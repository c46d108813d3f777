"""Timeouts and deadlines: silent and stalling servers end in TransportError within the budget.

The budgets are small (a fraction of a second); the upper bounds asserted on elapsed time are
ten times the budget, loose enough for a loaded machine. What must hold exactly is checked on
the loop's clock: no attempt outlives its deadline and no retry is scheduled past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests._loopback import raw_server
from vbot_cdr import (
    AiohttpTransport,
    RateLimitError,
    RetryPolicy,
    TransportError,
    VBotClient,
    VBotError,
)
from vbot_cdr._transport import Answer
from vbot_cdr.testing import FakeVBotServer, Fault

TIMEOUT = 0.2
TWO_ATTEMPTS = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0)
#: Attempts times the per-attempt timeout: what a silent server may cost in all.
BUDGET = TWO_ATTEMPTS.max_attempts * TIMEOUT
#: A bound no healthy run comes near, however loaded the machine.
LOOSE = 10 * BUDGET
GUARD = 30.0
#: Clock readings a few statements apart differ by microseconds; this is a thousand times that.
SLACK = 0.005

Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read the request, never answer."""
    await reader.read()  # returns when the client hangs up


async def headers_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send a status line and headers promising a body, then nothing."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n")
    await writer.drain()
    await reader.read()


async def half_body_then_silence(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send the headers and the first bytes of the body, then stall."""
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 80\r\n\r\n{"status": 1, "error": 0, "da')
    await writer.drain()
    await reader.read()


async def chunks_then_silence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send a chunked body's first chunk, then stall before the terminating chunk."""
    writer.write(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"sta\r\n')
    await writer.drain()
    await reader.read()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send the body one byte at a time, each well within the timeout, never finishing."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not writer.is_closing():
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 10)  # the server's pace, not a wait for the test


CALLS: dict[str, Callable[[VBotClient], Awaitable[object]]] = {
    "count": lambda client: client.count_calls(),
    "page": lambda client: client.get_calls(page=1),
    "conversation": lambda client: client.get_bot_conversation("T1"),
    "iteration": lambda client: drain(client.iter_calls()),
}


async def drain(iterator: Any) -> list[Any]:
    async with iterator:
        return [item async for item in iterator]


async def stalled_call(respond: Respond, call: str) -> None:
    """Run ``call`` against a ``respond`` server; it must end in TransportError within budget."""
    loop = asyncio.get_running_loop()
    async with raw_server(respond) as server:
        client = VBotClient("tok", base_url=server.url, timeout=TIMEOUT, retry=TWO_ATTEMPTS)
        async with client:
            started = loop.time()
            with pytest.raises(TransportError, match=r"within 0\.2s") as info:
                await asyncio.wait_for(CALLS[call](client), GUARD)
            elapsed = loop.time() - started
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)
    assert server.connections == TWO_ATTEMPTS.max_attempts
    assert BUDGET * 0.9 <= elapsed < LOOSE


@pytest.mark.parametrize(
    "respond",
    [silent, headers_then_silence, half_body_then_silence, chunks_then_silence, trickle],
    ids=["silent", "headers-only", "half-body", "half-chunked", "trickle"],
)
async def test_stalled_answer_ends_in_transport_error_within_budget(respond: Respond) -> None:
    """An answer never completed costs each attempt its timeout, then TransportError."""
    await stalled_call(respond, "page")


@pytest.mark.parametrize("call", ["count", "conversation", "iteration"])
async def test_every_call_times_out_on_a_silent_server(call: str) -> None:
    """Each endpoint, and a whole iteration, ends in TransportError against a silent server."""
    await stalled_call(silent, call)


@pytest.mark.parametrize(
    "fault",
    [Fault(hang=True), Fault(truncate=True, hang=True)],
    ids=["hang", "stall-mid-body"],
)
async def test_stalled_page_ends_the_iteration_in_transport_error(fault: Fault) -> None:
    """A page the fake never finishes ends iter_calls in TransportError, others cancelled."""
    loop = asyncio.get_running_loop()
    async with FakeVBotServer(count=50) as server:
        server.inject(*[fault] * TWO_ATTEMPTS.max_attempts, page=3)
        client = VBotClient(
            server.token, base_url=server.base_url, timeout=TIMEOUT, retry=TWO_ATTEMPTS
        )
        async with client, client.iter_calls(page_size=10, concurrency=3) as calls:
            started = loop.time()
            with pytest.raises(TransportError) as info:
                await asyncio.wait_for(drain(calls), GUARD)
            elapsed = loop.time() - started
        assert info.value.page == 3
        assert [r.params.get("page") for r in server.requests].count("3") == 2
        assert calls.stats.retries >= 1
        assert elapsed < LOOSE


# -- deadlines --------------------------------------------------------------------------------


class Waits(list[tuple[float, float]]):
    """Each wait between retries, as (loop time when it began, seconds); still really slept
    (`sleep` is the retry policy's)."""

    async def sleep(self, delay: float) -> None:
        self.append((asyncio.get_running_loop().time(), delay))
        await asyncio.sleep(delay)


@pytest.fixture
def waits() -> Waits:
    return Waits()


class Timed(AiohttpTransport):
    """The default transport, noting each request as (loop time when sent, its timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[tuple[float, float]] = []

    async def send(self, method: str, url: str, *, timeout: float, **options: Any) -> Answer:
        self.attempts.append((asyncio.get_running_loop().time(), timeout))
        return await super().send(method, url, timeout=timeout, **options)


@pytest.fixture
async def timed() -> AsyncIterator[Timed]:
    transport = Timed()
    yield transport
    await transport.aclose()


async def test_call_deadline_cuts_the_attempt_and_schedules_no_retry(
    timed: Timed, waits: Waits
) -> None:
    """A call's deadline shortens its attempt's timeout; with no time left, no retry follows."""
    loop = asyncio.get_running_loop()
    policy = RetryPolicy(max_attempts=10, backoff=0.0, max_backoff=0.0, sleep=waits.sleep)
    async with raw_server(silent) as server:
        client = VBotClient(
            "tok", base_url=server.url, timeout=60.0, retry=policy, deadline=0.3, transport=timed
        )
        async with client:
            started = loop.time()
            with pytest.raises(TransportError):
                await asyncio.wait_for(client.count_calls(), GUARD)
            elapsed = loop.time() - started
    assert server.connections == 1
    assert waits == []
    [(_, timeout)] = timed.attempts
    assert timeout <= 0.3  # not the client's 60 s: the deadline counts from the call's start
    assert elapsed < 10 * 0.3


async def test_no_retry_is_scheduled_past_the_deadline(timed: Timed, waits: Waits) -> None:
    """Retry-After waits are honoured while they end before the deadline; then the last error."""
    policy = RetryPolicy(max_attempts=50, backoff=0.0, max_backoff=0.0, sleep=waits.sleep)
    async with FakeVBotServer(count=5) as server:
        server.inject(*[Fault(status=429, retry_after="0.1")] * 50, endpoint="countAll")
        client = VBotClient(
            server.token, base_url=server.base_url, retry=policy, deadline=0.35, transport=timed
        )
        async with client:
            with pytest.raises(RateLimitError) as info:
                await asyncio.wait_for(client.count_calls(), GUARD)
    deadline = timed.attempts[0][0] + 0.35  # at or after the deadline's true start
    assert info.value.retry_after == pytest.approx(0.1)
    assert 1 <= len(waits) <= 3
    assert all(began + wait < deadline for began, wait in waits)
    assert all(sent + timeout <= deadline + SLACK for sent, timeout in timed.attempts)
    assert len(timed.attempts) == len(waits) + 1


async def test_iteration_deadline_bounds_every_page(timed: Timed, waits: Waits) -> None:
    """iter_calls(deadline=) ends a stalled iteration in TransportError; no attempt outlives it."""
    loop = asyncio.get_running_loop()
    # Long enough for pages 1 to 3 to be read on a busy machine: the stall is page 4.
    deadline = 1.5
    policy = RetryPolicy(max_attempts=10, backoff=0.0, max_backoff=0.0, sleep=waits.sleep)
    async with FakeVBotServer(count=60) as server:
        server.inject(*[Fault(hang=True)] * 10, page=4)
        client = VBotClient(
            server.token, base_url=server.base_url, timeout=60.0, retry=policy, transport=timed
        )
        calls = client.iter_calls(page_size=10, concurrency=2, deadline=deadline)
        async with client, calls:
            with pytest.raises(TransportError) as info:
                await asyncio.wait_for(drain(calls), GUARD)
        first_sent = timed.attempts[0][0]
        assert info.value.page == 4
        end = first_sent + deadline
        assert all(sent + timeout <= end + SLACK for sent, timeout in timed.attempts)
        assert all(began + wait < first_sent + deadline for began, wait in waits)
        assert loop.time() - first_sent < 10 * deadline
        # The attempt at page 4 timed out at the deadline: no time was left for a retry.
        assert [r.params.get("page") for r in server.requests].count("4") == 1


async def test_waiting_for_the_rate_limiter_counts_against_the_deadline(
    timed: Timed,
) -> None:
    """A call queued behind the rate limiter past its deadline fails without being sent."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def count(client: VBotClient) -> int:
        starts.append(loop.time())
        return await client.count_calls()

    async with FakeVBotServer(count=5) as server:
        client = VBotClient(
            server.token,
            base_url=server.base_url,
            rate_limit=5.0,
            deadline=0.3,
            timeout=60.0,
            transport=timed,
        )
        async with client:
            results = await asyncio.wait_for(
                asyncio.gather(*(count(client) for _ in range(4)), return_exceptions=True),
                GUARD,
            )
    # The limiter lets one request through per 0.2 s: the third and fourth cannot go before
    # 0.4 s, past the 0.3 s deadline of calls that all started at once.
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, TransportError) for f in failures), failures
    assert len(failures) >= 2
    assert len(timed.attempts) == server.count("countAll") <= 2
    latest_deadline = max(starts) + 0.3
    assert all(sent + timeout <= latest_deadline + SLACK for sent, timeout in timed.attempts)


async def test_deadline_errors_are_vbot_errors_with_the_endpoint(
    timed: Timed,
) -> None:
    """A call refused by its deadline names its endpoint and page like any other failure."""
    async with raw_server(silent) as server:
        client = VBotClient("tok", base_url=server.url, deadline=0.2, retry=TWO_ATTEMPTS)
        async with client:
            with pytest.raises(VBotError) as info:
                await asyncio.wait_for(client.get_calls(page=7), GUARD)
    assert (info.value.endpoint, info.value.page) == ("getAll", 7)
