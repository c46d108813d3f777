"""Time windows: slicing a date range, and a page source that pages each slice on its own.

Offset paging over a years-long history asks for deep pages, which is where servers slow down
or cap. ``iter_calls(window=...)`` and `CallSync` split the date range into consecutive
windows and page each one separately (``countAll``, then its pages), oldest window first, so
that no offset is deeper than one window's records.

Edges. The API document does not say whether ``end_date`` is inclusive (the fake says it is).
Each inner edge ``b`` is therefore sent twice, as one window's ``end_date`` and as the next
window's ``start_date``, so that a call created at ``b`` is found whichever way the server
reads it; `WindowedSource` remembers the ``trans_id`` of every call it handed out whose
``create_at`` is at or after ``b - margin`` and drops those calls when they come again. The
outer edges are sent as the caller gave them, so the windows together select exactly what the
unsliced filter selects. This relies on the date filters bounding ``create_at`` in the client's
``time_unit`` (as the fake does); a record without a ``trans_id`` cannot be recognised and is
never dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Protocol

import attrs

from ._models import CallFilter, CallRecord, TimeUnit
from ._pagination import IterationStats, PageSource

__all__ = ["Checkpoint", "OpenWindow", "WindowedSource", "plan_windows", "to_units"]

class OpenWindow(Protocol):
    """Builds the page source of one window: its filter, and the most records it need yield."""

    def __call__(self, *, filter: CallFilter, limit: int | None) -> PageSource: ...

_UNIT = {"s": dt.timedelta(seconds=1), "ms": dt.timedelta(milliseconds=1)}


def to_units(delta: dt.timedelta, time_unit: TimeUnit) -> int:
    """``delta`` as a whole number of ``time_unit`` (rounded down).

    Raises:
        TypeError: ``delta`` is not a `datetime.timedelta`.
        ValueError: ``delta`` is negative.
    """
    if not isinstance(delta, dt.timedelta):
        raise TypeError(f"expected a datetime.timedelta, got {type(delta).__name__}")
    if delta < dt.timedelta(0):
        raise ValueError(f"expected a duration >= 0, got {delta}")
    return delta // _UNIT[time_unit]


def plan_windows(start: int, end: int, width: int) -> list[tuple[int, int]]:
    """Consecutive windows ``(a, b)`` from ``start`` to ``end``, each ``width`` wide but the last.

    Each window's ``b`` is the next one's ``a``. ``start == end`` gives the one window
    ``(start, end)``; ``end < start`` gives none.

    Raises:
        ValueError: ``width`` < 1.
    """
    if width < 1:
        raise ValueError(f"a window must be at least one time unit wide, got {width}")
    if end == start:
        return [(start, end)]
    edges = [*range(start, end, width), end]
    return list(itertools.pairwise(edges))


@attrs.frozen
class Checkpoint:
    """Where a windowed read stands after its last fully handed-out window.

    Attributes:
        watermark: The end of that window.
        seen: ``trans_id`` → ``create_at`` of the calls handed out with ``create_at`` at or
            after ``watermark - margin``: those a read starting there may meet again.
    """

    watermark: int
    seen: Mapping[str, int]


class WindowedSource:
    """A `PageSource` that chains one page source per time window, oldest window first.

    Within a window, records come in the order of the window's source; a record whose
    ``trans_id`` was handed out already (in an earlier window, or in ``seen``) is dropped and
    counted in ``stats.duplicates``. ``stats.windows`` is the number of windows planned and
    ``stats.windows_done`` those handed out in full.

    Args:
        open_window: Builds the source of one window; every source must share ``stats``.
        filter: The criteria; each window's copy gets the window's ``start_date``/``end_date``.
        windows: The windows ``(start, end)``, in the client's ``time_unit``, oldest first.
        stats: The counters shared by all the windows.
        limit: Plan each window for at most this many more records (the public iterator
            cuts the records to the limit).
        seen: ``trans_id`` → ``create_at`` of calls already handed out (by an earlier read),
            not to be handed out again.
        margin: How far before a window's end, in ``time_unit``, the ids of the calls handed
            out are remembered: 0 covers the shared edge; a sync keeps its lookback.
    """

    def __init__(
        self,
        open_window: OpenWindow,
        filter: CallFilter,
        windows: Sequence[tuple[int, int]],
        *,
        stats: IterationStats,
        limit: int | None = None,
        seen: Mapping[str, int] | None = None,
        margin: int = 0,
    ):
        self._open = open_window
        self._filter = filter
        self.windows = tuple(windows)
        self._stats = stats
        stats.windows = len(self.windows)
        self._limit = limit
        self._seen: dict[str, int] = dict(seen or {})
        self._margin = margin
        self._counted: int | None = None
        self._current: PageSource | None = None
        self.checkpoint: Checkpoint | None = None

    @property
    def total(self) -> int | None:
        """The sum of the counts of the windows begun so far (``None`` before the first).

        It grows window by window; the grand total is known only once the last window has
        been counted.
        """
        current = None if self._current is None else self._current.total
        if current is None:
            return self._counted
        return (self._counted or 0) + current

    @property
    def stats(self) -> IterationStats:
        """The counters shared by every window."""
        return self._stats

    def _drop_seen(self, page: list[CallRecord], keep_from: int) -> list[CallRecord]:
        seen, fresh = self._seen, []
        for record in page:
            key, created = record.trans_id, record.create_at
            if key is not None and key in seen:
                self._stats.duplicates += 1
                continue
            fresh.append(record)
            if key is not None and created is not None and created >= keep_from:
                seen[key] = created
        return fresh

    async def pages(self) -> AsyncGenerator[list[CallRecord], None]:
        """Yield each window's pages of new records, the windows oldest first."""
        remaining = self._limit
        for start, end in self.windows:
            keep_from = end - self._margin
            window_filter = attrs.evolve(self._filter, start_date=start, end_date=end)
            # Ids in ``seen`` may be dropped, so the window may need that many more records.
            wanted = None if remaining is None else remaining + len(self._seen)
            self._current = source = self._open(filter=window_filter, limit=wanted)
            async with contextlib.aclosing(source.pages()) as pages:
                async for page in pages:
                    fresh = self._drop_seen(page, keep_from)
                    if remaining is not None:
                        remaining = max(0, remaining - len(fresh))
                    if fresh:
                        yield fresh
            # Only now has the consumer asked past the window's last record.
            self._counted = (self._counted or 0) + (source.total or 0)
            self._current = None
            self._seen = {key: at for key, at in self._seen.items() if at >= keep_from}
            self.checkpoint = Checkpoint(end, dict(self._seen))
            self._stats.windows_done += 1
