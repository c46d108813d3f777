"""The paging engine: concurrent pages of one range, under an adaptive in-flight limit.

The engine knows nothing about HTTP. Given a range and its count, it fetches the range's
pages through a `CallsPort`, passing ``in_flight`` (the `InFlightLimit`), an async context
manager that the port enters around every *attempt* (so a page waiting out a backoff holds
no slot). Each page goes through the exactly-once stage (``keep_new``) as it is handed over,
which tells the engine whether the page brought anything new.

Offsets move when calls are written while we page, and servers page in their own ways, so
the engine

- follows the data past the counted pages while the last page comes back full *and brings
  new records* (a page of records already handed out ends the following);
- re-plans with the size the server really answers when a short page is followed by more
  records (a silent size cap), re-reading from the first offset not handed out; the size
  it learns holds for the rest of the iteration;
- stops asking for pages when one brings more records than asked (the server ignores
  ``size``: every page would repeat it);
- stops asking for pages after an empty one: the data ends there, whatever the count says.

Bound: a range sends at most ``ceil(count / size) + 1`` page requests per plan, plus one per
followed page that brought a new record; a size cap adds one plan per smaller size seen. An
empty page caps a plan at the pages before it plus ``concurrency`` (those already in flight),
so a count far above the data costs no more requests than the data does.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Protocol

from ._decoding import CallRow
from ._errors import RateLimitError
from ._models import CallFilter
from ._port import CallsPort
from ._stats import IterationStats

__all__ = ["InFlightLimit", "KeepNew", "Paginator"]


class KeepNew(Protocol):
    """The exactly-once stage as the engine sees it (`ExactlyOnce.keep_new`): a page, where
    it starts and the size it was asked with in; its records not handed out yet out."""

    def __call__(
        self, records: list[CallRow], *, offset: int | None = ..., page_size: int = ...
    ) -> list[CallRow]: ...


class InFlightLimit:
    """The in-flight limit of one iteration: at most `limit` attempts at once.

    It starts at ``ceiling`` (the iteration's concurrency). An attempt answered with 429
    halves `limit` (not below 1); each run of `limit` successful attempts adds one back, up to
    ``ceiling``: additive increase, multiplicative decrease, as TCP does. All pages of an
    iteration share one limit, so they slow down together when the server says it is
    overloaded. Fetchers enter it around each *attempt*, so a page waiting out a backoff
    holds no slot.

    Args:
        ceiling: The most attempts at once, and where the limit starts.
        stats: Written here: ``in_flight_limit`` (the limit now), ``in_flight_cuts``.
    """

    def __init__(self, ceiling: int, stats: IterationStats | None = None):
        self.ceiling = ceiling
        self.limit = ceiling
        self._stats = IterationStats() if stats is None else stats
        self._stats.in_flight_limit = ceiling
        self.in_flight = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, RateLimitError):
            self.limit = self._stats.in_flight_limit = max(1, self.limit // 2)
            self._stats.in_flight_cuts += 1
            self._successes = 0
        elif exc is None:
            self._successes += 1
            if self._successes >= self.limit:
                self.limit = self._stats.in_flight_limit = min(self.ceiling, self.limit + 1)
                self._successes = 0
        self._release()

    def _release(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1  # handed over directly, so no newcomer can jump the queue
                waiter.set_result(None)


class Paginator:
    """The paging stage of one iteration: the pages of each range it is given, concurrently.

    Args:
        port: Fetches pages (``getAll``).
        first_page: The number of the first page (0 or 1, as the server counts).
        page_size: Records per page asked (smaller once the server is seen to cap it).
        concurrency: Most pages fetched ahead of the consumer; pages held in memory never
            exceed ``concurrency + 1``.
        ordered: Hand pages over in page order (else as they arrive).
        in_flight: The in-flight limit every request of the iteration enters.
        stats: Written here: ``pages``, ``extra_pages``, ``replans``.
    """

    def __init__(
        self,
        *,
        port: CallsPort,
        first_page: int,
        page_size: int,
        concurrency: int,
        ordered: bool,
        in_flight: InFlightLimit,
        stats: IterationStats,
    ):
        self._port = port
        self._first_page = first_page
        self.page_size = page_size
        self._concurrency = concurrency
        self._ordered = ordered
        self._in_flight = in_flight
        self._stats = stats

    async def _fetch(self, filter: CallFilter, page: int, size: int) -> list[CallRow]:
        records = await self._port.fetch(filter, page, size, self._in_flight)
        self._stats.pages += 1
        return records

    def _ready(self, tasks: dict[int, asyncio.Task[list[CallRow]]]) -> int | None:
        """The page to hand over next, if it has arrived."""
        if self._ordered:
            head = min(tasks)
            return head if tasks[head].done() else None
        done = [page for page, task in tasks.items() if task.done()]
        return min(done) if done else None

    async def pages(
        self, filter: CallFilter, total: int, *, wanted: int | None, keep_new: KeepNew
    ) -> AsyncGenerator[list[CallRow], None]:
        """Yield the new records of each page of ``filter``'s range, whose count is ``total``.

        Args:
            filter: The range.
            total: Its count.
            wanted: The most records the consumer can still take (``None``: all), to plan
                no page past them; the limit itself is applied downstream.
            keep_new: The exactly-once stage.

        Raises:
            VBotError: A page failed after its retries (the others are cancelled first).
        """
        stats, first = self._stats, self._first_page
        planned = total if wanted is None else min(wanted, total)
        if planned == 0:
            return
        tasks: dict[int, asyncio.Task[list[CallRow]]] = {}
        handed = 0

        def plan(size: int, offset: int) -> tuple[int, int, int]:
            """The next page to ask, the last page planned, and the last page counted."""
            last = first + math.ceil(planned / size) - 1
            counted_last = first + math.ceil(total / size) - 1
            if planned == total and total % size == 0:
                # A full last page is always followed by one more, in case calls written
                # since the count pushed records past it: ask for that page with the others,
                # not a round of latency later.
                last += 1
                stats.extra_pages += 1
            return first + offset // size, last, counted_last

        size = self.page_size
        following, last, counted_last = plan(size, 0)
        short: tuple[int, int] | None = None  # (offset, length) of the first short page
        try:
            while True:
                while following <= last and len(tasks) < self._concurrency:
                    tasks[following] = asyncio.create_task(self._fetch(filter, following, size))
                    following += 1
                if not tasks:
                    break
                page = self._ready(tasks)
                if page is None:
                    for task in tasks.values():
                        if task.done():
                            task.result()  # a failed page ends the iteration here
                    # Wait on the pages still in flight only: finished ones waiting for their
                    # turn would end the wait at once, and the loop would spin.
                    pending = [task for task in tasks.values() if not task.done()]
                    del task  # it may hold a finished page: do not keep it alive
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    del pending
                    continue
                records = tasks.pop(page).result()
                offset = (page - first) * size
                if records and short is not None and offset > short[0]:
                    # A short page with records after it: the server answers at most
                    # ``short[1]`` records per page. Set this page aside (it would come out of
                    # order) and start over at that size from the first offset not handed
                    # out; the exactly-once stage drops what is read twice.
                    restart = min([short[0] + short[1]] + [(p - first) * size for p in tasks])
                    await _cancel(tasks)
                    tasks.clear()
                    size = self.page_size = short[1]
                    following, last, counted_last = plan(size, restart)
                    short = None
                    stats.replans += 1
                    continue
                if not records and page < last:
                    # An empty page: the data ends before it, whatever the count said (a
                    # count of 10**12 over 250 calls would be paged to its end). Ask for no
                    # page after it; verification re-counts and reads what is missing.
                    later = {p: task for p, task in tasks.items() if p > page}
                    await _cancel(later)
                    for p in later:
                        del tasks[p]
                    last = page
                    del later
                fresh = keep_new(records, offset=offset, page_size=size)
                handed += len(fresh)
                if 0 < len(records) < size and (short is None or offset < short[0]):
                    short = (offset, len(records))
                elif page == last and fresh and (wanted is None or handed < wanted):
                    # The data may have shifted past the count: follow it while the full
                    # last page brings new records (one that brings none ends it).
                    last += 1
                    stats.extra_pages += last > counted_last
                if len(records) > size:
                    # More than asked: the server ignores ``size``, and further pages can
                    # only repeat this one. Stop asking; verification checks the rest.
                    await _cancel(tasks)
                    tasks.clear()
                    following = last + 1
                if fresh:
                    yield fresh
                del records, fresh
        finally:
            await _cancel(tasks)


async def _cancel(tasks: dict[int, asyncio.Task[list[CallRow]]]) -> None:
    """Cancel ``tasks`` and wait until they are gone, retrieving their exceptions."""
    for task in tasks.values():
        task.cancel()
    if tasks:
        await asyncio.wait(tasks.values())
        for task in tasks.values():
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not warn about it
