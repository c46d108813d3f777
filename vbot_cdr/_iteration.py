r"""The iteration pipeline: every record of a range, exactly once, verified, as records or pages.

One iteration runs these stages, top to bottom (`Iteration._windows_pages`, then
`Iteration.next_rows`, then the iterators):

1. **time windows** (`_windows`): the range's slices, oldest first; a plain ``iter_calls``
   is one window, the filter's own dates, unless it holds more calls than a ledger should
   (`most_ledger_records`): it is then read in windows planned from its data, newest first
   (`Iteration._parts_pages`), or whole if the server's date filter cannot be trusted.
   Each window is counted once (``countAll``), for each of the filter's
   `CallFilter.variants` (a criterion given several values is read one value at a time,
   each a range of its own, counted, paged and verified); the empty windows after an
   empty one are skipped by counting spans of them;
2. **concurrent pages** (`_pagination.Paginator`): the window's pages, at most
   ``concurrency`` requests in flight under one `InFlightLimit` that the whole iteration
   shares, so a slowdown learned from 429s carries from one window to the next;
3. **exactly once** (`_exactly_once.ExactlyOnce`): every record passes it, whichever stage
   read it (a page, the repair, the next window, the read a sync resumes);
4. **verify and repair** (`_reconcile.Reconciler`): only when the window's records fall short
   of its count; complete, or `IncompleteError`;
5. **limit** (`Iteration.next_rows`): pages cut to ``limit`` records, in this one place
   (the paging stage is told how many records are still wanted so it plans no page past
   them). Until then, and after, a page is `CallRow`\ s: the twins msgspec decoded it into,
   which the garbage collector does not track, so the pages fetched ahead cost it nothing;
6. **records, pages or rows**: `CallIterator` hands over the records of the page at hand
   one by one, built (`build_records`) a few at a time so that the records alive at once
   stay few; `CallPageIterator` whole pages of records; `row_pages` the pages as decoded,
   for the bulk outputs, which encode rows without building records; `CallSync` (in
   `_sync`) adds ``commit``.

The client hands the pipeline a `CallsPort` (count a range, fetch a page), which holds the
iteration's deadline and counts its requests; nothing here climbs back into the client.
Each stage writes its own counters in `IterationStats` and steers by none of them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import attrs

from ._decoding import CallRow, build_records
from ._errors import IncompleteError
from ._exactly_once import ExactlyOnce, most_ledger_records
from ._models import CallFilter, CallRecord
from ._pagination import InFlightLimit, Paginator
from ._port import CallsPort
from ._reconcile import Reconciler
from ._stats import IterationStats
from ._windows import Checkpoint

__all__ = [
    "CallIterator",
    "CallPageIterator",
    "Iteration",
    "IteratorBase",
    "OpenIteration",
    "RowPageIterator",
    "row_pages",
]


class Iteration:
    """One iteration, assembled: the stages of the module docstring over ``windows``.

    Args:
        port: Counts and fetches (``countAll``, ``getAll``).
        filter: The criteria; its dates, when set, must be epoch ints in the records' unit;
            criteria of several values are read one `CallFilter.variants` at a time.
        windows: The time windows ``(start, end)``, oldest first, a `Windows` or any
            sequence: read by index, never copied. ``None``: the iteration is not sliced by
            time; the filter's own dates are one range, read in windows planned from its
            data, newest first, when it counts more calls than a ledger should hold (see
            `_parts_pages`).
        first_page: The number of the first page (0 or 1, as the server counts).
        page_size: Records per page.
        concurrency: Most requests in flight at once, and most pages fetched ahead of the
            consumer; pages held in memory never exceed ``concurrency + 1``.
        ordered: Hand pages over in page order (else as they arrive).
        limit: Hand out at most this many records.
        stats: The counters; each stage writes its own (the port counts requests in them).
        boundary: ``trans_id`` → ``create_at`` of the calls handed out by an earlier read,
            not to be handed out again (a sync's state).
        margin: How far before a window's end, in the records' time unit, the ids handed out
            are kept for the next window and the checkpoint (a sync's lookback).
        in_flight: The in-flight limit (a new one of ``concurrency`` by default).

    Raises (from `next_rows`):
        VBotError: A request failed after its retries.
        IncompleteError: A window holds records that neither the pages nor the repair could
            hand out (see `_reconcile`).
    """

    def __init__(
        self,
        port: CallsPort,
        filter: CallFilter,
        *,
        windows: Sequence[tuple[int, int]] | None = None,
        first_page: int,
        page_size: int,
        concurrency: int,
        ordered: bool,
        limit: int | None = None,
        stats: IterationStats,
        boundary: Mapping[str, int] | None = None,
        margin: int = 0,
        in_flight: InFlightLimit | None = None,
    ):
        self._port = port
        self._filter = filter
        self._first_page = first_page
        # A `Windows` is computed as it is read: never copied, so memory is independent of
        # how many windows there are.
        self.windows: Sequence[tuple[int, int]] = () if windows is None else windows
        self._spans: Sequence[tuple[int | None, int | None]] = (
            _own_dates(filter) if windows is None else self.windows
        )
        self._variants = filter.variants()
        self._sliced = windows is not None
        self.stats = stats
        stats.windows = len(self.windows)
        self._in_flight = InFlightLimit(concurrency, stats) if in_flight is None else in_flight
        self._paging = Paginator(
            port=port,
            first_page=first_page,
            page_size=page_size,
            concurrency=concurrency,
            ordered=ordered,
            in_flight=self._in_flight,
            stats=stats,
        )
        self._once = ExactlyOnce(stats, concurrency=concurrency, boundary=boundary, margin=margin)
        self._remaining = limit
        #: The sum of the counts of the windows begun so far (``None`` before the first).
        self.total: int | None = None
        #: Where the read stands after its last window handed out in full (sliced only).
        self.checkpoint: Checkpoint | None = None
        self._stages = self._windows_pages()

    async def next_rows(self) -> list[CallRow]:
        """The limit stage: the pipeline's next page, cut to the limit, as it was decoded
        (twins, or records where a page needed the readers; never empty). The iterators
        build records of it (`CallIterator`, `CallPageIterator`) or hand it over as it is
        (`row_pages`, for the bulk outputs, which encode rows straight from it).

        Raises:
            StopAsyncIteration: After the last page, or once the limit is reached (the
                requests in flight are then cancelled).
        """
        if self._remaining == 0:
            await self.aclose()
            raise StopAsyncIteration
        page = await self._stages.__anext__()
        if self._remaining is not None:
            page = page[: self._remaining]
            self._remaining -= len(page)
        return page

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        await self._stages.aclose()

    async def _windows_pages(self) -> AsyncGenerator[list[CallRow], None]:
        """Stages 1 to 4: each window's new records, from its pages, then from its repair;
        within a window, for each of the filter's `CallFilter.variants` in turn. After an
        empty window, the empty ones that follow are skipped (`_next_with_calls`)."""
        spans, index = self._spans, 0
        while index < len(spans):
            start, end = spans[index]
            before = self.total or 0
            for variant in self._variants:
                window_filter = attrs.evolve(variant, start_date=start, end_date=end)
                pages = self._range_pages(window_filter, end)
                async with contextlib.aclosing(pages):
                    async for page in pages:
                        yield page
                        del page
            index += 1
            # Only now has the consumer asked past the window's last record.
            self._close_windows(index)
            if self._sliced and self.total == before and index < len(spans):
                following = await self._next_with_calls(index)
                if following > index:
                    self._once.open_window(spans[following - 1][1])
                    self._close_windows(following, skipped=following - index)
                    index = following

    def _close_windows(self, done: int, skipped: int = 1) -> None:
        """The windows before ``done`` are handed out: the checkpoint moves to their end.

        Only after every variant: the ids kept past the window are those of all of them (a
        sync's boundary holds each variant's calls of the lookback).
        """
        kept = self._once.close_window()
        end = self._spans[done - 1][1]
        if self._sliced and end is not None:
            self.checkpoint = Checkpoint(end, kept)
            self.stats.windows_done += skipped

    async def _next_with_calls(self, index: int) -> int:
        """The first window from ``index`` on that holds calls (``len(windows)`` if none).

        A sparse history sliced finely (one-second windows over years) would cost a count
        per window. Count spans of the following windows twice as wide each time until one
        holds calls, then halve it down to its first window that does: about ``2 log2(n)``
        counts to cross ``n`` empty windows, and one count more than reading them one by one
        after a lone empty window.
        """
        spans = self._spans
        low, step = index, 1  # the windows before ``low`` are empty
        while low < len(spans):
            high = min(len(spans), low + step)
            if await self._holds_calls(spans[low][0], spans[high - 1][1]):
                while high - low > 1:
                    middle = (low + high) // 2
                    if await self._holds_calls(spans[low][0], spans[middle - 1][1]):
                        high = middle
                    else:
                        low = middle
                return low
            low, step = high, step * 2
        return low

    async def _holds_calls(self, start: int | None, end: int | None) -> bool:
        """Whether ``[start, end]`` holds a call of any variant."""
        for variant in self._variants:
            if await self._port.count(attrs.evolve(variant, start_date=start, end_date=end)):
                return True
        return False

    def _scope(self, variant: CallFilter) -> str:
        """The values that tell ``variant`` from the filter's other variants (none if one)."""
        return ", ".join(f"{name} {getattr(variant, name)}" for name in self._filter.several())

    async def _range_pages(
        self, window_filter: CallFilter, end: int | None
    ) -> AsyncGenerator[list[CallRow], None]:
        """One range (a window of one variant): counted, paged and verified on its own; in
        parts (`_parts_pages`) when unsliced and longer than a ledger should be."""
        self._once.open_window(end)
        count = await self._port.count(window_filter)
        self.total = (self.total or 0) + count
        most = most_ledger_records()
        wanted = count if self._remaining is None else min(count, self._remaining)
        if self._sliced or wanted <= most:
            pages = self._counted_pages(window_filter, count)
        else:
            pages = self._parts_pages(window_filter, count, most)
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page
                del page

    async def _parts_pages(
        self, range_filter: CallFilter, count: int, most: int
    ) -> AsyncGenerator[list[CallRow], None]:
        """An unsliced range of ``count`` calls, more than a ledger of ``most`` records: read in
        windows of time planned from its data, newest first (the server's order), each
        counted, paged and verified on its own with a ledger of its own.

        The data's span comes from its newest and oldest record (two requests of one record);
        it is cut into windows of about ``most // 2`` calls if the calls were spread evenly,
        and a window that counts more than ``most`` is halved until it does not (or is one
        time unit wide). The windows share their edges, as `_windows` does, and together
        cover the range (the outer ones keep its own dates), so nothing depends on the span
        being right. Every window is counted, and its newest record read, before any call
        is handed out (`_plan`); the range is read whole, as one window, when they show the
        server's date filter cannot be trusted. Each record is checked against its window's
        dates as it is read (`_planned_pages`).

        Raises:
            IncompleteError: The records of a window show the date filter broken once calls
                are handed out (see `_planned_pages`).
        """
        port, first = self._port, self._first_page
        ends = await port.fetch(range_filter, first, 1, self._in_flight)
        ends += await port.fetch(range_filter, first + count - 1, 1, self._in_flight)
        times = [row.create_at for row in ends if row.create_at is not None]
        del ends
        oldest, newest = (min(times), max(times)) if times else (0, 0)
        parts = math.ceil(count / max(1, most // 2))
        width = (newest - oldest) / parts
        cuts = sorted({oldest + round(width * i) for i in range(1, parts)} - {oldest, newest})
        [(start, end)] = _own_dates(range_filter)
        # The windows still to plan, oldest first (so the newest is popped first).
        windows = list(zip([start, *cuts], [*cuts, end], strict=True))
        planned = None
        if len(windows) > 1:
            planned = await self._plan(range_filter, count, windows, most, (oldest, newest))
        if planned is None:
            pages = self._counted_pages(range_filter, count)
        else:
            pages = self._planned_pages(*planned)
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page
                del page

    async def _plan(
        self,
        range_filter: CallFilter,
        count: int,
        windows: list[tuple[int | None, int | None]],
        most: int,
        span: tuple[int, int],
    ) -> tuple[list[_Planned], int] | None:
        """`_parts_pages`' windows counted, newest first, each of at most ``most`` calls
        (halved while it counts more), and the range's count as of the newest window's;
        ``None`` if the range must be read whole.

        The range is read whole when the server's date filter shows itself broken, which the
        old single read did not depend on: the newest window counts the whole range (the
        dates are ignored); a window's newest record is past its end (``end_date`` ignored);
        a window counts more calls than the range has left once the newer windows' are
        taken off; or the windows count fewer calls than the range (a bound kept exclusive,
        calls without ``create_at`` left out of every window: calls would be lost). Windows
        share edges, so the calls at an edge (counted, one instant) are taken off once.
        Calls written meanwhile land in the newest window: the shortfall is checked against
        the count taken before it, the excess against one taken after it. Nothing is handed
        out yet, so reading whole costs a ledger as large as the range, but loses and
        repeats nothing.
        """
        port = self._port
        plan: list[_Planned] = []
        total = count
        planned = 0  # the calls of the windows planned so far, those at shared edges once
        while windows:
            lo, hi = windows.pop()
            part = attrs.evolve(range_filter, start_date=lo, end_date=hi)
            part_count = await port.count(part)
            if not plan and part_count >= count:
                return None
            if part_count and hi is not None:
                newest = await port.fetch(part, self._first_page, 1, self._in_flight)
                if newest and not _within(newest[0].create_at, lo, hi):
                    return None
            low = span[0] if lo is None else lo
            high = span[1] if hi is None else hi
            if part_count > most and high - low >= 2:
                # Halved strictly (both halves narrower), so this ends.
                middle = low + (high - low) // 2
                windows += [(lo, middle), (middle, hi)]
                continue
            if not plan:
                total = max(count, await port.count(range_filter))
                edge = 0
            else:
                edge = await port.count(attrs.evolve(range_filter, start_date=hi, end_date=hi))
            if part_count - edge > total - planned:
                return None
            planned += part_count - edge
            plan.append(_Planned(lo, hi, part, part_count))
        if planned < count:
            return None
        return plan, total

    async def _planned_pages(
        self, plan: list[_Planned], count: int
    ) -> AsyncGenerator[list[CallRow], None]:
        """The windows of ``plan`` (of a range of ``count`` calls), newest first, each
        through a ledger of its own.

        `_plan` found the date filter sound from the counts and each window's newest record;
        every record is checked as it is read too (a server may change its answers, or
        misplace a call below its newest). Once calls are handed out the range can no
        longer be read whole without repeating them, so a record outside its window's dates
        is an `IncompleteError` (a server honouring one bound only would hand out a newer
        window's calls again).
        """
        once = self._once
        handed = 0
        for lo, hi, part, part_count in plan:
            once.open_window(lo, newest_first=True)
            pages = self._counted_pages(part, part_count)
            async with contextlib.aclosing(pages):
                async for page in pages:
                    for row in page:
                        if not _within(row.create_at, lo, hi):
                            raise _broken_dates(
                                f"the window [{lo}, {hi}] holds a call of create_at "
                                f"{row.create_at}",
                                count,
                                handed,
                            )
                    handed += len(page)
                    yield page
                    del page
            once.close_window()

    async def _counted_pages(
        self, window_filter: CallFilter, count: int
    ) -> AsyncGenerator[list[CallRow], None]:
        """One counted range: its pages, then its repair, through the window open now."""
        once = self._once
        pages = self._paging.pages(
            window_filter, count, wanted=self._remaining, keep_new=once.keep_new
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page
                # Handed over: drop this frame's reference before waiting for the next
                # page, so the page is freed now rather than kept alive one page too long.
                del page
        repair = Reconciler(
            self._port,
            window_filter,
            first_page=self._first_page,
            page_size=self._paging.page_size,
            in_flight=self._in_flight,
            stats=self.stats,
            scope=self._scope(window_filter),
        ).repair(count, once)
        async with contextlib.aclosing(repair):
            async for page in repair:
                yield page
                del page


class _Planned(NamedTuple):
    """A window ``[lo, hi]`` of an unsliced range planned by `Iteration._plan`: its filter
    and how many calls it counts."""

    lo: int | None
    hi: int | None
    filter: CallFilter
    calls: int


def _within(at: int | None, lo: int | None, hi: int | None) -> bool:
    """Whether a call of ``create_at`` ``at`` belongs in the window ``[lo, hi]`` (a call
    without ``create_at`` only in a window open at one end, where a server may keep it)."""
    if at is None:
        return lo is None or hi is None
    return (lo is None or lo <= at) and (hi is None or at <= hi)


def _broken_dates(why: str, count: int, handed: int) -> IncompleteError:
    """The error of a date filter found broken once calls of the range are handed out."""
    return IncompleteError(
        f"the server's date filter cannot be trusted ({why}); the range of {count} calls "
        "cannot be read in windows, and no longer whole without repeating calls",
        expected=count,
        yielded=handed,
    )


def _own_dates(filter: CallFilter) -> list[tuple[int | None, int | None]]:
    """The one window of an iteration not sliced by time: the filter's own dates.

    Raises:
        TypeError: A date is not an epoch int (the client converts them before).
    """
    start, end = filter.start_date, filter.end_date
    if isinstance(start, dt.datetime) or isinstance(end, dt.datetime):
        raise TypeError(f"the iteration's dates must be epoch ints, got {start!r}, {end!r}")
    return [(start, end)]


class OpenIteration(Protocol):
    """Builds an iteration of the client's filter and paging options over ``windows``."""

    def __call__(
        self,
        *,
        windows: Sequence[tuple[int, int]] | None,
        limit: int | None = None,
        boundary: Mapping[str, int] | None = None,
        margin: int = 0,
    ) -> Iteration: ...


_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="IteratorBase[Any]")


class _Counts(Protocol):
    """What reports an iteration's progress: an `Iteration`, or an iterator over one."""

    @property
    def total(self) -> int | None: ...

    @property
    def stats(self) -> IterationStats: ...


class IteratorBase(ABC, Generic[_T]):
    """What every public iterator over the calls shares: live `total` and `stats` (those of
    the calls' iteration), ``async for``, and `aclose` on leaving ``async with``.

    Subclasses give `__anext__` and `aclose`.
    """

    def __init__(self, counts: _Counts):
        self._counts = counts

    @property
    def total(self) -> int | None:
        """The count from ``countAll`` (``None`` before the first step); with time windows,
        the sum of the counts of the windows begun so far."""
        return self._counts.total

    @property
    def stats(self) -> IterationStats:
        """Live counters of the calls' iteration (``requests`` counts every request made
        for it, those for conversations or recordings too)."""
        return self._counts.stats

    def __aiter__(self: _Self) -> _Self:
        return self

    @abstractmethod
    async def __anext__(self) -> _T: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Iterator(IteratorBase[_T]):
    """What both iterators of one iteration share: the iteration, and closing it."""

    def __init__(self, iteration: Iteration):
        super().__init__(iteration)
        self._iteration = iteration

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        await self._iteration.aclose()


#: How many rows of a page `CallIterator` builds into records at once. Few enough that a
#: consumer dropping each record keeps the garbage collector's young generation below its
#: threshold (700 net allocations; a record is two: itself and its ``__dict__``), so records
#: are not collected over and over while the rest of their page waits; many enough that the
#: build's loop is entered rarely.
_CHUNK = 64


class CallIterator(_Iterator[CallRecord]):
    """``async for record in client.iter_calls(...)``: every matching `CallRecord`, once.

    Use it as ``async with client.iter_calls(...) as it:`` (or call `aclose`) so that the
    requests in flight are cancelled as soon as you stop early. Each step hands over the next
    record of the page at hand, and waits on the pipeline only when that page is used up.
    `pages` gives the same records a list at a time.
    """

    def __init__(self, iteration: Iteration):
        super().__init__(iteration)
        self._stats = iteration.stats
        self._records: Iterator[CallRecord] = iter(())  # built, not handed out yet
        self._rows: list[CallRow] = []  # the page at hand, as the pipeline hands it over
        self._built = 0  # how many of its rows are built

    async def __anext__(self) -> CallRecord:
        record = next(self._records, None)
        if record is None:
            record = await self._next_chunk()
        self._stats.yielded += 1
        return record

    async def _next_chunk(self) -> CallRecord:
        """Build the next `_CHUNK` rows of the page at hand (of the next page, once it is used
        up); return the first record of them, the rest wait in ``_records``."""
        while True:
            self._records = iter(())
            if self._built >= len(self._rows):
                self._rows, self._built = [], 0  # free the page before waiting for the next
                self._rows = await self._iteration.next_rows()
            start = self._built
            self._built = start + _CHUNK
            self._records = iter(build_records(self._rows[start : start + _CHUNK]))
            record = next(self._records, None)
            if record is not None:
                return record

    def pages(self) -> CallPageIterator:
        """The records not handed out yet, a ``list[CallRecord]`` per page (for batch loads).

        The rest of the page at hand comes first. Both iterators share one iteration: what
        one hands out, the other does not, and closing either closes both.

        .. versionadded:: Unreleased
        """
        return CallPageIterator(self._iteration, first=self._rest())

    def _rest(self) -> list[CallRow]:
        """The rest of the page at hand (the records built first, then the rows not built
        yet), which this iterator then forgets: another one hands it out."""
        rest = [*self._records, *self._rows[self._built :]]
        self._forget()
        return rest

    def _forget(self) -> None:
        """Drop the page at hand: nothing of it is handed out by this iterator any more."""
        self._records, self._rows, self._built = iter(()), [], 0

    async def aclose(self) -> None:
        """Stop: cancel every request in flight and wait until they are gone. Idempotent."""
        self._forget()
        await super().aclose()


class RowPageIterator(_Iterator[list[CallRow]]):
    """`row_pages`: the pages as decoded, each a list of `CallRow`."""

    def __init__(self, iteration: Iteration, *, first: Sequence[CallRow] = ()):
        super().__init__(iteration)
        self._first: list[CallRow] = list(first)

    async def __anext__(self) -> list[CallRow]:
        page, self._first = self._first, []
        if not page:
            page = await self._iteration.next_rows()
        self._iteration.stats.yielded += len(page)
        return page


class CallPageIterator(_Iterator[list[CallRecord]]):
    """``async for page in client.iter_call_pages(...)``: the same records, a list per page."""

    def __init__(self, iteration: Iteration, *, first: Sequence[CallRow] = ()):
        super().__init__(iteration)
        self._rows = RowPageIterator(iteration, first=first)

    async def __anext__(self) -> list[CallRecord]:
        return build_records(await self._rows.__anext__())


def row_pages(calls: CallIterator) -> RowPageIterator:
    """The calls ``calls`` has not handed out yet, a page at a time, as decoded
    (`Iteration.next_rows`): for the bulk outputs, which encode each row straight from it,
    without a `CallRecord`. Shares the iteration as `CallIterator.pages` does: what one
    hands out, the other does not, and closing either closes both."""
    return RowPageIterator(calls._iteration, first=calls._rest())
