"""The pagination engine: concurrent, bounded, ordered or not, exactly-once by ``trans_id``.

The engine knows nothing about HTTP. It asks its `CallsPort` for the count once, then
fetches pages through it, passing ``gate``, an async context manager that the port enters
around every *attempt* (so a page waiting out a backoff holds no slot). One iteration runs
these stages, top to bottom, in `Paginator.pages`:

1. concurrent pages (`Paginator._paged`), at most ``concurrency`` in flight;
2. exactly-once (`_Seen`): records whose ``trans_id`` was handed out already are dropped;
3. verify and repair (`_reconcile.Reconciler`), only when the pages fell short of the count;
4. the `Ledger` of what was handed out;
5. the limit, in the public iterators (`CallIterator`, `CallPageIterator`), which hand
   over records one by one from the page at hand, or pages.

Offsets move when calls are written while we page, and servers page in their own ways, so
the paging stage

- follows the data past the counted pages while the last page comes back full *and brings
  new records* (a page of records already handed out ends the following);
- re-plans with the size the server really answers when a short page is followed by more
  records (a silent size cap), re-reading from the first offset not handed out;
- stops asking for pages when one brings more records than asked (the server ignores
  ``size``: every page would repeat it).

Bound: a paging stage sends at most ``ceil(count / size) + 1`` page requests per plan, plus
one per followed page that brought a new record; a size cap adds one plan per smaller size
seen. The repair's cost is stated in `_reconcile`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._errors import RateLimitError
from ._models import CallFilter, CallRecord
from ._reconcile import CallsPort, Gate, Ledger, Reconciler

__all__ = [
    "AdaptiveWindow",
    "CallIterator",
    "CallPageIterator",
    "CallsPort",
    "Gate",
    "IterationStats",
    "PageSource",
    "Paginator",
]


@attrs.define
class IterationStats:
    """Counters of one iteration, updated as it runs; each stage writes its own.

    Attributes:
        requests: HTTP requests sent (every attempt, the count included).
        retries: Attempts that were retries of a failed one.
        pages: Pages fetched successfully by the paging stage.
        extra_pages: Pages fetched beyond the count because the last one came back full.
        duplicates: Records dropped because their ``trans_id`` had already been yielded.
        vanished: Records counted at the start that a re-count no longer finds.
        yielded: Records handed to the consumer.
        max_shift: The largest offset shift observed between two fetches, in records.
        windows: Time windows planned (0 when the iteration is not sliced by time).
        windows_done: Time windows whose records have all been handed to the consumer.
        replans: Times the paging stage started over with a smaller page size, because the
            server answered fewer records per page than asked.
        recounts: ``countAll`` requests sent to verify and repair (0 on a complete read).
        repair_pages: ``getAll`` requests sent to verify and repair.
        repaired: Records the repair found that the pages had missed.

    .. versionadded:: Unreleased ``replans``, ``recounts``, ``repair_pages``, ``repaired``.
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
    replans: int = 0
    recounts: int = 0
    repair_pages: int = 0
    repaired: int = 0


#: The fewest ``trans_id``\s an iteration remembers: a burst of new calls up to this many,
#: landing between two page fetches, repeats no record even before any shift has been seen.
MIN_REMEMBERED_IDS = 10_000


class _Seen:
    """The ``trans_id``\\s of the pages an offset shift can still bring back.

    A record handed out from offset ``o`` can reappear only at a later offset whose fetch saw
    more calls inserted ahead of it. Pages fetched at about the same time lie within
    ``concurrency`` pages of each other, and a shift of ``s`` records moves a record ``s``
    offsets on. So the ids of a page are kept while it starts within
    ``(concurrency + 1 + 2 * ceil(max_shift / page_size)) * page_size`` offsets of the newest
    page handed out: twice the largest shift seen so far, so a growing shift is still
    covered. A shift is only seen through a repeated id, so a first burst of new calls must
    not outrun the memory before it is noticed: at least `MIN_REMEMBERED_IDS` ids are kept
    whatever the shift (about 1.5 MB). Memory is the larger of the two, however long the
    iteration. An empty ``trans_id`` is no id: such records are never dropped.
    """

    def __init__(self, page_size: int, concurrency: int, stats: IterationStats):
        self.page_size = page_size
        self._concurrency = concurrency
        self._stats = stats
        self._where: dict[str, int] = {}
        self._pages: dict[int, list[str]] = {}
        self._newest = -1

    def _horizon(self) -> int:
        size = self.page_size
        pages = self._concurrency + 1 + 2 * math.ceil(self._stats.max_shift / size)
        return max(pages * size, MIN_REMEMBERED_IDS)

    def keep_new(self, offset: int, records: list[CallRecord]) -> list[CallRecord]:
        """Remember the ids of the page at ``offset``; return its records minus those handed out."""
        where, stats = self._where, self._stats
        fresh: list[CallRecord] = []
        ids: list[str] = []
        for index, record in enumerate(records):
            key = record.trans_id
            if not key:
                fresh.append(record)
                continue
            seen = where.get(key)
            if seen is not None:
                stats.duplicates += 1
                stats.max_shift = max(stats.max_shift, abs(offset + index - seen))
                continue
            where[key] = offset + index
            ids.append(key)
            fresh.append(record)
        self._pages.setdefault(offset, []).extend(ids)
        self._newest = max(self._newest, offset)
        oldest_kept = self._newest - self._horizon()
        for old in [o for o in self._pages if o < oldest_kept]:
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
    """Runs one iteration of one range: the count, concurrent pages, verification, the limit.

    Args:
        port: Counts and fetches (``countAll``, ``getAll``).
        filter: The criteria; its dates, when set, must be epoch ints in the records' unit.
        first_page: The number of the first page (0 or 1, as the server counts).
        page_size: Records per page.
        concurrency: Most requests in flight at once, and most pages fetched ahead of the
            consumer; pages held in memory never exceed ``concurrency + 1``.
        ordered: Hand pages over in page order (else as they arrive).
        limit: Stop after this many records.
        stats: The counters to update (the port may count requests in them too).
        window: The in-flight window to share with other paginators of one iteration (its
            time windows), so that a slowdown learned from 429s carries over; a new one of
            ``concurrency`` by default.

    Raises (from `pages`):
        IncompleteError: The range holds records that neither the pages nor the repair
            could hand out (see `_reconcile`).
    """

    def __init__(
        self,
        *,
        port: CallsPort,
        filter: CallFilter,
        first_page: int,
        page_size: int,
        concurrency: int,
        ordered: bool,
        limit: int | None,
        stats: IterationStats,
        window: AdaptiveWindow | None = None,
    ):
        self._port = port
        self._filter = filter
        self._window = AdaptiveWindow(concurrency) if window is None else window
        self._first_page = first_page
        self._page_size = page_size
        self._concurrency = concurrency
        self._ordered = ordered
        self._limit = limit
        self.total: int | None = None
        self.stats = stats

    async def _fetch(self, page: int, size: int) -> list[CallRecord]:
        records = await self._port.fetch(self._filter, page, size, self._window)
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
        """Yield the pages' new records, then the repair's. Raises the first failure.

        ``limit`` only plans the pages (the iterator cuts the records to it): the pages end
        once they hold ``limit`` records, and are verified only if they end short of it.

        Raises:
            VBotError: A page failed after its retries (the others are cancelled).
            IncompleteError: Records of the range could not be handed out.
        """
        self.total = total = await self._port.count(self._filter)
        ledger = Ledger()
        async with contextlib.aclosing(self._verified(total, ledger)) as verified:
            async for page in verified:
                ledger.add(page)
                yield page
                # Handed over: drop this frame's reference before waiting for the next page,
                # so the page is freed now rather than kept alive one page too long.
                del page

    async def _verified(
        self, total: int, ledger: Ledger
    ) -> AsyncGenerator[list[CallRecord], None]:
        async with contextlib.aclosing(self._paged(total)) as paged:
            async for page in paged:
                yield page
        reconciler = Reconciler(
            self._port,
            self._filter,
            first_page=self._first_page,
            page_size=self._page_size,
            gate=self._window,
            stats=self.stats,
        )
        async with contextlib.aclosing(reconciler.repair(total, ledger, self._limit)) as found:
            async for page in found:
                yield page

    async def _paged(self, total: int) -> AsyncGenerator[list[CallRecord], None]:
        """The concurrent paging stage: pages of records not handed out yet, deduplicated."""
        stats, first = self.stats, self._first_page
        wanted = total if self._limit is None else min(self._limit, total)
        if wanted == 0:
            return
        seen = _Seen(self._page_size, self._concurrency, stats)
        tasks: dict[int, asyncio.Task[list[CallRecord]]] = {}
        handed = 0

        def plan(size: int, offset: int) -> tuple[int, int, int]:
            """The next page to ask, the last page planned, and the last page counted."""
            last = first + math.ceil(wanted / size) - 1
            counted_last = first + math.ceil(total / size) - 1
            if wanted == total and total % size == 0:
                # A full last page is always followed by one more, in case calls written
                # since the count pushed records past it: ask for that page with the others,
                # not a round of latency later.
                last += 1
                stats.extra_pages += 1
            return first + offset // size, last, counted_last

        size = self._page_size
        following, last, counted_last = plan(size, 0)
        short: tuple[int, int] | None = None  # (offset, length) of the first short page
        try:
            while True:
                while following <= last and len(tasks) < self._concurrency:
                    tasks[following] = asyncio.create_task(self._fetch(following, size))
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
                    # out; `seen` drops what is read twice.
                    restart = min([short[0] + short[1]] + [(p - first) * size for p in tasks])
                    await _cancel(tasks)
                    tasks.clear()
                    size = seen.page_size = self._page_size = short[1]
                    following, last, counted_last = plan(size, restart)
                    short = None
                    stats.replans += 1
                    continue
                fresh = seen.keep_new(offset, records)
                handed += len(fresh)
                if 0 < len(records) < size and (short is None or offset < short[0]):
                    short = (offset, len(records))
                elif page == last and fresh and (self._limit is None or handed < self._limit):
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


async def _cancel(tasks: dict[int, asyncio.Task[list[CallRecord]]]) -> None:
    """Cancel ``tasks`` and wait until they are gone, retrieving their exceptions."""
    for task in tasks.values():
        task.cancel()
    if tasks:
        await asyncio.wait(tasks.values())
        for task in tasks.values():
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not warn about it


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
    """What both iterators share: the limit stage, live `total` and `stats`, a prompt `aclose`.

    The pages come from the source already de-duplicated and verified; the limit is applied
    here, once, as they are handed over.
    """

    def __init__(self, source: PageSource, *, limit: int | None = None):
        self._source = source
        self._pages = source.pages()
        self._remaining = limit

    async def _next_page(self) -> list[CallRecord]:
        """The next page, cut to the limit; `StopAsyncIteration` after the last one."""
        if self._remaining == 0:
            await self.aclose()  # the limit is reached: cancel what is still in flight
            raise StopAsyncIteration
        page = await self._pages.__anext__()
        if self._remaining is not None:
            page = page[: self._remaining]
            self._remaining -= len(page)
        return page

    @property
    def total(self) -> int | None:
        """The count from ``countAll`` (``None`` before the first step)."""
        return self._source.total

    @property
    def stats(self) -> IterationStats:
        """Live counters of this iteration."""
        return self._source.stats

    def __aiter__(self: _Self) -> _Self:
        return self

    async def __anext__(self) -> _T:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        await self._pages.aclose()

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
    requests in flight are cancelled as soon as you stop early. Each step hands over the next
    record of the page at hand, and waits on the pipeline only when that page is used up.
    """

    def __init__(self, source: PageSource, *, limit: int | None = None):
        super().__init__(source, limit=limit)
        self._page: list[CallRecord] = []
        self._index = 0

    async def __anext__(self) -> CallRecord:
        index = self._index
        if index >= len(self._page):
            self._page = []  # free the page before waiting for the next one
            self._page = await self._next_page()
            index = 0
        self._index = index + 1
        self._source.stats.yielded += 1
        return self._page[index]

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        self._page, self._index = [], 0
        await super().aclose()


class CallPageIterator(_Iteration[list[CallRecord]]):
    """``async for page in client.iter_call_pages(...)``: the same records, a list per page."""

    async def __anext__(self) -> list[CallRecord]:
        page = await self._next_page()
        self._source.stats.yielded += len(page)
        return page
