"""Cancellation from outside, at any point, leaves no task, no connection and no warning.

The fake server runs in a thread of its own, with its own event loop, so that the test's loop
holds only the client's tasks: ``asyncio.all_tasks()`` before and after compares exactly what
the client started. Each scenario stops the client at one precise point (found by waiting on
the server's request counters or on an event, never on time), cancels it one of three ways
(``asyncio.wait_for`` timing out, ``Task.cancel``, ``asyncio.timeout``), and then checks:

- the caller sees `asyncio.CancelledError` (or `TimeoutError` from the timeout helpers);
- no task the client started is left;
- the server sees every request given up (``in_flight`` back to 0);
- ``aclose`` closes the client's session and connector;
- no warning (pytest turns them into errors) and no asyncio error log ("Task was destroyed
  but it is pending", "exception was never retrieved").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from vbot_cdr import PasswordAuth, RetryPolicy, VBotClient
from vbot_cdr.testing import FakeVBotServer, Fault

T = TypeVar("T")
GUARD = 30.0
RETRY = RetryPolicy(max_attempts=3, backoff=0.0, max_backoff=0.0)


class RemoteServer:
    """A `FakeVBotServer` running in its own thread and event loop."""

    def __init__(self, **options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.fake = FakeVBotServer(**options)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` in the server's loop, from the test's loop."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return await asyncio.wrap_future(future)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``function`` in the server's loop (faults and counters are not thread-safe)."""

        async def inside() -> T:
            return function(*args, **kwargs)

        return await self.run(inside())

    async def __aenter__(self) -> RemoteServer:
        self._thread.start()
        await self.run(self.fake.start())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.run(self.fake.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()


@pytest.fixture
async def remote() -> AsyncIterator[RemoteServer]:
    """300 records served from another thread, with a little latency."""
    async with RemoteServer(count=300, latency=0.005) as server:
        yield server


async def cancel_with(how: str, work: Coroutine[Any, Any, Any], ready: Awaitable[Any]) -> None:
    """Start ``work``, wait for ``ready``, then cancel ``work`` the way ``how`` names."""
    loop = asyncio.get_running_loop()
    scopes: list[Any] = []

    async def under_timeout() -> Any:
        async with asyncio.timeout(None) as scope:  # type: ignore[attr-defined]
            scopes.append(scope)
            return await work

    task = asyncio.ensure_future(under_timeout() if how == "timeout" else work)
    ready_task = asyncio.ensure_future(ready)
    done, _ = await asyncio.wait(
        {task, ready_task}, timeout=GUARD, return_when=asyncio.FIRST_COMPLETED
    )
    assert ready_task in done, f"never reached the point to cancel at; work: {task}"
    await ready_task
    assert not task.done(), task
    if how == "cancel":
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif how == "wait_for":
        # A wait_for whose time is up: it cancels the work and waits for it to end.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, 0)
    else:
        # An asyncio.timeout scope around the work, expiring now.
        scopes[0].reschedule(loop.time())
        with pytest.raises(TimeoutError):
            await task
    assert task.done()


HOWS = [
    "cancel",
    "wait_for",
    pytest.param(
        "timeout",
        marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is 3.11+"),
    ),
]


@asynccontextmanager
async def leaves_nothing(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, **options: Any
) -> AsyncIterator[VBotClient]:
    """A client; on exit, check that it left no task, connection, warning or error log."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    before = asyncio.all_tasks()
    options.setdefault("retry", RETRY)
    credential = options.pop("credential", remote.fake.token)
    client = VBotClient(credential, base_url=remote.fake.base_url, **options)
    async with client:
        yield client
        assert asyncio.all_tasks() - before == set()
        await asyncio.wait_for(remote.run(remote.fake.wait_idle()), GUARD)
        session = client._transport.session  # type: ignore[attr-defined]
    assert asyncio.all_tasks() - before == set()
    assert session is None or session.closed
    if session is not None:
        connector = session.connector
        assert connector is None or connector.closed
    gc.collect()  # an unclosed transport or a never-awaited coroutine warns here
    assert [r for r in caplog.records if r.name == "asyncio"] == []


async def consume(calls: Any, each: Callable[[Any], Awaitable[None]] | None = None) -> int:
    """Drain an iterator inside ``async with``, awaiting ``each`` per item."""
    seen = 0
    async with calls:
        async for item in calls:
            seen += 1
            if each is not None:
                await each(item)
    return seen


# -- the points at which to cancel ------------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_during_the_count(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled while countAll is unanswered: nothing is left."""
    await remote.call(remote.fake.inject, Fault(hang=True), endpoint="countAll")
    async with leaves_nothing(remote, caplog) as client:
        ready = remote.run(remote.fake.wait_for_requests(1, endpoint="countAll"))
        await cancel_with(how, consume(client.iter_calls(page_size=10)), ready)
    assert remote.fake.count("getAll") == 0


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_with_pages_in_flight(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled with pages on the wire (one hanging, others answering): nothing is left."""
    await remote.call(remote.fake.inject, Fault(hang=True), page=3)
    async with leaves_nothing(remote, caplog) as client:
        ready = remote.run(remote.fake.wait_for_requests(6, endpoint="getAll"))
        await cancel_with(how, consume(client.iter_calls(page_size=10, concurrency=4)), ready)
        arrived = remote.fake.count("getAll")
    assert remote.fake.count("getAll") == arrived  # no request started after the cancel


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_while_reading_a_body(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled while a body stalls halfway: nothing is left."""
    await remote.call(remote.fake.inject, Fault(truncate=True, hang=True), page=2)
    async with leaves_nothing(remote, caplog) as client:
        ready = remote.run(remote.fake.wait_for_requests(2, endpoint="getAll"))
        await cancel_with(how, consume(client.iter_call_pages(page_size=25, concurrency=2)), ready)


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_during_a_backoff(
    remote: RemoteServer,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """Cancelled while a page waits out Retry-After: nothing is left."""
    backing_off = asyncio.Event()

    async def observed_sleep(delay: float) -> None:
        backing_off.set()
        await asyncio.sleep(delay)

    await remote.call(remote.fake.inject, Fault(status=429, retry_after="30"), page=2)
    retry = RetryPolicy(max_attempts=3, backoff=0.0, max_backoff=0.0, sleep=observed_sleep)
    async with leaves_nothing(remote, caplog, retry=retry) as client:
        calls = client.iter_calls(page_size=10, concurrency=3)
        await cancel_with(how, consume(calls), backing_off.wait())


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_during_consumer_work(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled while the loop body awaits its own work, pages fetched ahead: nothing is left."""
    working = asyncio.Event()

    async def slow_work(_: object) -> None:
        working.set()
        await asyncio.Event().wait()  # work that never ends

    await remote.call(remote.fake.inject, Fault(hang=True), page=4)  # pending meanwhile
    async with leaves_nothing(remote, caplog) as client:
        calls = client.iter_calls(page_size=5, concurrency=4)
        await cancel_with(how, consume(calls, slow_work), working.wait())


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_a_plain_async_for_waiting_for_a_page(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Without async with, cancelling the loop while it waits for a page still leaves nothing."""
    await remote.call(remote.fake.inject, Fault(hang=True), page=1)

    async def plain_loop(calls: Any) -> None:
        async for _ in calls:
            pass

    async with leaves_nothing(remote, caplog) as client:
        ready = remote.run(remote.fake.wait_for_requests(3, endpoint="getAll"))
        await cancel_with(how, plain_loop(client.iter_calls(page_size=5, concurrency=3)), ready)


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_while_queued_for_the_rate_limiter(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled while pages queue for the rate limiter: nothing is left."""
    async with leaves_nothing(remote, caplog, rate_limit=20.0) as client:
        ready = remote.run(remote.fake.wait_for_requests(3))
        await cancel_with(how, consume(client.iter_calls(page_size=10, concurrency=8)), ready)


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_during_a_login(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled while POST /token is unanswered: nothing is left."""
    remote.fake.token_endpoint.users["alice"] = "pw"
    await remote.call(remote.fake.inject, Fault(hang=True), endpoint="token")
    auth = PasswordAuth("alice", "pw")
    async with leaves_nothing(remote, caplog, credential=auth) as client:
        ready = remote.run(remote.fake.wait_for_requests(1, endpoint="token"))
        await cancel_with(how, client.count_calls(), ready)


@pytest.mark.parametrize("how", HOWS)
async def test_cancel_single_calls(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Cancelled count, page and conversation calls, all at once: nothing is left."""
    for endpoint in ("countAll", "getAll", "getBotConversation"):
        await remote.call(remote.fake.inject, Fault(hang=True), endpoint=endpoint)
    async with leaves_nothing(remote, caplog) as client:

        async def all_three() -> None:
            await asyncio.gather(
                client.count_calls(),
                client.get_calls(page=1),
                client.get_bot_conversation("T1"),
            )

        await cancel_with(how, all_three(), remote.run(remote.fake.wait_for_requests(3)))


async def test_client_still_works_after_a_cancelled_iteration(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After a cancelled iteration the same client pages everything again, exactly once."""
    await remote.call(remote.fake.inject, Fault(hang=True), page=2)
    async with leaves_nothing(remote, caplog) as client:
        ready = remote.run(remote.fake.wait_for_requests(2, endpoint="getAll"))
        await cancel_with("cancel", consume(client.iter_calls(page_size=50)), ready)
        async with client.iter_calls(page_size=50) as calls:
            ids = [c.trans_id async for c in calls]
        assert len(ids) == len(set(ids)) == 300


async def test_aclose_of_the_client_with_an_iteration_open(
    remote: RemoteServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the iterator then the client mid-iteration leaves nothing behind."""
    async with leaves_nothing(remote, caplog) as client:
        calls = client.iter_calls(page_size=5, concurrency=4)
        first = await asyncio.wait_for(calls.__anext__(), GUARD)
        assert first.trans_id is not None
        await calls.aclose()
        with pytest.raises(StopAsyncIteration):
            await calls.__anext__()
