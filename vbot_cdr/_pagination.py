"""The pagination engine: concurrent, bounded, ordered or not, exactly-once by ``trans_id``.

The engine knows nothing about HTTP. It asks a ``count`` coroutine once, then calls
``fetch(page, gate)`` for each page, where ``gate`` is an async context manager that the
fetcher enters around every *attempt* (so a page waiting out a backoff holds no slot).

Offsets move when calls are written while we page, so the engine

- follows the data past the counted pages while the last page comes back full;
- drops records whose ``trans_id`` it has already handed out, remembering only the pages an
  offset shift can still reach (see `_Seen`);
- warns when the data ends before the count said it would (records vanished).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._errors import RateLimitError
from ._models import CallRecord

__all__ = [
    "AdaptiveWindow",
    "CallIterator",
    "CallPageIterator",
    "FetchPage",
    "Gate",
    "IterationStats",
    "PageSource",
    "Paginator",
]

logger = logging.getLogger("vbot_cdr")

Gate = contextlib.AbstractAsyncContextManager[object]


class FetchPage(Protocol):
    """Fetch one page; enter ``gate`` around each attempt; raise a `VBotError` on failure."""

    def __call__(self, page: int, gate: Gate) -> Awaitable[list[CallRecord]]: ...


@attrs.define
class IterationStats:
    """Counters of one iteration, updated as it runs.

    Attributes:
        requests: HTTP requests sent (every attempt, the count included).
        retries: Attempts that were retries of a failed one.
        pages: Pages fetched successfully.
        extra_pages: Pages fetched beyond the count because the last one came back full.
        duplicates: Records dropped because their ``trans_id`` had already been yielded.
        vanished: Records counted at the start that the pages no longer held.
        yielded: Records handed to the consumer.
        max_shift: The largest offset shift observed between two fetches, in records.
        windows: Time windows planned (0 when the iteration is not sliced by time).
        windows_done: Time windows whose records have all been handed to the consumer.
    """

    requests: int = 0
    retries: int = 0
    pages: int = 0
    extra_pages: int = 0
    duplicates: int = 0
    vanished: int = 0
    yielded: int = 0
    max_shift: int = 0
    windows: int = 0
    windows_done: int = 0


#: The fewest ``trans_id``\s an iteration remembers: a burst of new calls up to this many,
#: landing between two page fetches, repeats no record even before any shift has been seen.
MIN_REMEMBERED_IDS = 10_000


class _Seen:
    """The ``trans_id``\\s of the pages an offset shift can still bring back.

    A record handed out from page ``p`` can reappear only on a later page whose fetch saw more
    calls inserted ahead of it. Pages fetched at about the same time lie within
    ``concurrency`` of each other, and a shift of ``s`` records moves a record at most
    ``ceil(s / page_size)`` pages on. So the ids of a page are kept while it is within
    ``concurrency + 1 + 2 * ceil(max_shift / page_size)`` pages of the newest page handed out:
    twice the largest shift seen so far, so a growing shift is still covered. A shift is only
    seen through a repeated id, so a first burst of new calls must not outrun the memory
    before it is noticed: at least `MIN_REMEMBERED_IDS` ids are kept whatever the shift
    (about 1.5 MB). Memory is the larger of the two, however long the iteration.
    """

    def __init__(self, page_size: int, concurrency: int, stats: IterationStats):
        self._page_size = page_size
        self._concurrency = concurrency
        self._stats = stats
        self._where: dict[str, tuple[int, int]] = {}
        self._pages: dict[int, list[str]] = {}
        self._newest = -1

    def _horizon(self) -> int:
        by_shift = self._concurrency + 1 + 2 * math.ceil(self._stats.max_shift / self._page_size)
        return max(by_shift, math.ceil(MIN_REMEMBERED_IDS / self._page_size))

    def keep_new(self, page: int, records: list[CallRecord]) -> list[CallRecord]:
        """Remember the ids of ``page``; return its records minus those already handed out."""
        where, size, stats = self._where, self._page_size, self._stats
        fresh: list[CallRecord] = []
        ids: list[str] = []
        for index, record in enumerate(records):
            key = record.trans_id
            if key is None:
                fresh.append(record)
                continue
            seen = where.get(key)
            if seen is not None:
                stats.duplicates += 1
                shift = (page - seen[0]) * size + index - seen[1]
                stats.max_shift = max(stats.max_shift, abs(shift))
                continue
            where[key] = (page, index)
            ids.append(key)
            fresh.append(record)
        self._pages[page] = ids
        self._newest = max(self._newest, page)
        oldest_kept = self._newest - self._horizon()
        for old in [p for p in self._pages if p < oldest_kept]:
            for key in self._pages.pop(old):
                del where[key]
        return fresh


class AdaptiveWindow:
    """The in-flight window of one iteration: at most `limit` attempts at once.

    It starts at ``ceiling`` (the iteration's concurrency). An attempt answered with 429
    halves `limit` (not below 1); each run of `limit` successful attempts adds one back, up to
    ``ceiling``: additive increase, multiplicative decrease, as TCP does. All pages of an
    iteration share one window, so they slow down together when the server says it is
    overloaded. Fetchers enter it around each *attempt*, so a page waiting out a backoff
    holds no slot.
    """

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limit = ceiling
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
            self.limit = max(1, self.limit // 2)
            self._successes = 0
        elif exc is None:
            self._successes += 1
            if self._successes >= self.limit:
                self.limit = min(self.ceiling, self.limit + 1)
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
    """Runs one iteration: the count, then concurrent page fetches, handed over as pages.

    Args:
        count: Returns how many records match (``countAll``).
        fetch: Fetches one page (``getAll``).
        first_page: The number of the first page (0 or 1, as the server counts).
        page_size: Records per page.
        concurrency: Most requests in flight at once, and most pages fetched ahead of the
            consumer; pages held in memory never exceed ``concurrency + 1``.
        ordered: Hand pages over in page order (else as they arrive).
        limit: Stop after this many records.
        stats: The counters to update (the fetcher may count requests in them too).
        window: The in-flight window to share with other paginators of one iteration (its
            time windows), so that a slowdown learned from 429s carries over; a new one of
            ``concurrency`` by default.
    """

    def __init__(
        self,
        *,
        count: Callable[[], Awaitable[int]],
        fetch: FetchPage,
        first_page: int,
        page_size: int,
        concurrency: int,
        ordered: bool,
        limit: int | None,
        stats: IterationStats,
        window: AdaptiveWindow | None = None,
    ):
        self._count = count
        self._window = AdaptiveWindow(concurrency) if window is None else window
        self._fetch = fetch
        self._first_page = first_page
        self._page_size = page_size
        self._concurrency = concurrency
        self._ordered = ordered
        self._limit = limit
        self.total: int | None = None
        self.stats = stats

    async def _fetch_counted(self, page: int, gate: Gate) -> list[CallRecord]:
        records = await self._fetch(page, gate)
        self.stats.pages += 1
        return records

    def _ready(self, tasks: dict[int, asyncio.Task[list[CallRecord]]]) -> int | None:
        """The page to hand over next, if it has arrived."""
        if self._ordered:
            head = min(tasks)
            return head if tasks[head].done() else None
        done = [page for page, task in tasks.items() if task.done()]
        return min(done) if done else None

    async def pages(self) -> AsyncGenerator[list[CallRecord], None]:
        """Yield the pages' new records. Raises the first page failure, others cancelled."""
        stats, size = self.stats, self._page_size
        self.total = total = await self._count()
        wanted = total if self._limit is None else min(self._limit, total)
        if wanted == 0:
            return
        last = self._first_page + math.ceil(wanted / size) - 1
        counted_last = self._first_page + math.ceil(total / size) - 1
        if wanted == total and total % size == 0:
            # A full last page is always followed by one more, in case calls written since
            # the count pushed records past it: ask for that page with the others, not a
            # round of latency later.
            last += 1
            stats.extra_pages += 1
        following = self._first_page
        remaining = self._limit
        data_end: int | None = None  # offset where a short page showed the data to end
        seen = _Seen(size, self._concurrency, stats)
        tasks: dict[int, asyncio.Task[list[CallRecord]]] = {}
        try:
            while True:
                while following <= last and len(tasks) < self._concurrency:
                    tasks[following] = asyncio.create_task(
                        self._fetch_counted(following, self._window)
                    )
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
                fresh = seen.keep_new(page, records)
                if len(records) < size:
                    end = (page - self._first_page) * size + len(records)
                    data_end = end if data_end is None else min(data_end, end)
                elif page == last and (remaining is None or remaining > len(fresh)):
                    # The data may have shifted past the count (or, under a limit, this page
                    # repeated records): follow it. Counted after de-duplication, so that a
                    # limit is still reached when the last planned page held duplicates.
                    last += 1
                    stats.extra_pages += last > counted_last
                if remaining is not None:
                    fresh = fresh[:remaining]
                    remaining -= len(fresh)
                if fresh:
                    yield fresh
                # Handed over: drop this frame's references before waiting for the next page,
                # so the page is freed now rather than kept alive one page too long.
                del records, fresh
                if remaining == 0:
                    return
        finally:
            for task in tasks.values():
                task.cancel()
            if tasks:
                await asyncio.wait(tasks.values())
                for task in tasks.values():
                    if not task.cancelled():
                        task.exception()  # retrieved, so asyncio does not warn about it
        if self._limit is None and data_end is not None and data_end < total:
            # += : a chain of paginators over time windows shares one stats object.
            stats.vanished += total - data_end
            logger.warning(
                "countAll said %d records but the pages ended after %d: %d vanished while paging",
                total,
                data_end,
                total - data_end,
            )


_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="_Iteration[Any]")


class PageSource(Protocol):
    """What the public iterators consume: pages of new records, a total, and live stats.

    `Paginator` is one; a chain of paginators over time windows is another.
    """

    @property
    def total(self) -> int | None: ...

    @property
    def stats(self) -> IterationStats: ...

    def pages(self) -> AsyncGenerator[list[CallRecord], None]: ...


class _Iteration(Generic[_T]):
    """What both iterators share: the live `total` and `stats`, and a prompt `aclose`."""

    def __init__(self, paginator: PageSource):
        self._paginator = paginator
        self._agen = self._items(paginator.stats)

    def _items(self, stats: IterationStats) -> AsyncGenerator[_T, None]:
        raise NotImplementedError

    @property
    def total(self) -> int | None:
        """The count from ``countAll`` (``None`` before the first step)."""
        return self._paginator.total

    @property
    def stats(self) -> IterationStats:
        """Live counters of this iteration."""
        return self._paginator.stats

    def __aiter__(self: _Self) -> _Self:
        return self

    async def __anext__(self) -> _T:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        await self._agen.aclose()

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class CallIterator(_Iteration[CallRecord]):
    """``async for record in client.iter_calls(...)``: every matching `CallRecord`, once.

    Use it as ``async with client.iter_calls(...) as it:`` (or call `aclose`) so that the
    requests in flight are cancelled as soon as you stop early.
    """

    async def _items(self, stats: IterationStats) -> AsyncGenerator[CallRecord, None]:
        async with contextlib.aclosing(self._paginator.pages()) as pages:
            async for page in pages:
                for record in page:
                    stats.yielded += 1
                    yield record
                del page  # free the page before waiting for the next one


class CallPageIterator(_Iteration[list[CallRecord]]):
    """``async for page in client.iter_call_pages(...)``: the same records, a list per page."""

    async def _items(self, stats: IterationStats) -> AsyncGenerator[list[CallRecord], None]:
        async with contextlib.aclosing(self._paginator.pages()) as pages:
            async for page in pages:
                stats.yielded += len(page)
                yield page
