"""Exactly once: the one stage that knows which ``trans_id``\\s an iteration has handed out.

Every record of an iteration passes `ExactlyOnce.keep_new` before it is handed out: the pages
(whose offsets shift while calls are written), the records a repair re-reads, the calls on
an edge shared by two time windows, and the calls a resumed sync handed out last time (its
boundary). A record whose ``trans_id`` was handed out already is dropped, and counted in
``stats.duplicates`` unless it is one a repair re-read in the window that handed it out
(a repair reads whole ranges on purpose). An empty or missing ``trans_id`` is no id: such a
record is never a duplicate, so it can be told apart from a repeat only while the server's
order holds still: the stage counts such records (``keyless``) and notes when a record with
an id came back at another offset (``order_moved``), for the repair to judge.

What it remembers, and what that costs:

- **This window, by offset** (while paging): the ids of the pages an offset shift can still
  bring back, at least `MIN_REMEMBERED_IDS` (about 1.5 MB), however long the window. A
  record handed out at offset ``o`` can come back only at a later offset, ``max_shift`` on.
- **This window, in full** (the `Ledger`): ``hash(trans_id)`` and ``create_at`` of every
  record of the window's range handed out, 12 bytes a record. The repair counts by it, and
  checks the records it re-reads against it. A read sliced by time holds one window's; an
  unsliced read of more calls than `LEDGER_RECORDS` is read in windows of time planned from
  its data (`_iteration`), so a ledger holds about that many records at most (2.4 MB),
  however many calls the read has (unless more than that share one instant).
- **Across windows**: the ids of the calls handed out at or after the window's end minus
  ``margin`` (0 for an edge; a sync's lookback), kept from one window to the next, and the
  boundary of the read a sync resumes; or, for windows read newest first, those at the
  window's start. Bounded by the calls of that span.
"""

from __future__ import annotations

import contextlib
import math
import operator
import struct
from array import array
from collections.abc import Iterator, Mapping, Sequence

from ._decoding import CallRow
from ._stats import IterationStats

__all__ = [
    "LEDGER_RECORDS",
    "MIN_REMEMBERED_IDS",
    "ExactlyOnce",
    "Ledger",
    "ledger_records",
    "most_ledger_records",
    "remembered_ids",
]

#: The fewest ``trans_id``\s a window's paging remembers: a burst of new calls up to this
#: many, landing between two page fetches, repeats no record even before any shift is seen.
MIN_REMEMBERED_IDS = 10_000

#: The most records a ledger is planned to hold: an unsliced read counting more calls is
#: read in windows of time of about half as many each (`_iteration`).
LEDGER_RECORDS = 200_000

# The `remembered_ids` floors and `ledger_records` bounds in force, innermost last; empty
# outside tests.
_floors: list[int] = []
_ledger_bounds: list[int] = []


@contextlib.contextmanager
def _in_force(stack: list[int], value: int, name: str, least: int) -> Iterator[None]:
    """Push ``value`` on ``stack`` for the block (the innermost block's value applies).

    Raises:
        ValueError: ``value`` is not an int of at least ``least``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    stack.append(value)
    try:
        yield
    finally:
        stack.pop()


@contextlib.contextmanager
def remembered_ids(floor: int) -> Iterator[None]:
    """Within the block, iterations made remember at least ``floor`` ids while paging, not
    `MIN_REMEMBERED_IDS` (for tests).

    With the floor at 0 the paging remembers only what the offset shifts it has seen call
    for, so a test's few hundred records exercise how that memory is pruned; with a small
    floor, a burst of new calls longer than it repeats records (the documented bound).
    Blocks nest; the innermost applies. An iteration keeps the floor it was made with.

    Raises:
        ValueError: ``floor`` is negative.

    .. versionadded:: Unreleased
    """
    with _in_force(_floors, floor, "floor", 0):
        yield


@contextlib.contextmanager
def ledger_records(most: int) -> Iterator[None]:
    """Within the block, iterations plan their ledgers to hold at most ``most`` records, not
    `LEDGER_RECORDS` (for tests: an unsliced read of a few hundred calls is then read in
    windows planned from its data, as one of millions is).

    Blocks nest; the innermost applies, to the iterations that begin a range within it.

    Raises:
        ValueError: ``most`` is below 2.

    .. versionadded:: Unreleased
    """
    with _in_force(_ledger_bounds, most, "most", 2):
        yield


def most_ledger_records() -> int:
    """The bound in force: `LEDGER_RECORDS`, or that of the innermost `ledger_records` block."""
    return _ledger_bounds[-1] if _ledger_bounds else LEDGER_RECORDS


#: ``hash()`` never returns -1 (CPython reserves it), so it marks a record without an id.
_NO_KEY = -1

# A record without a time, in the ledger's times while they are int32 (and once int64): the
# lowest value, which no time noted takes (one that would widens the array; see `Ledger`).
_NO_TIME = {"i": -(2**31), "q": -(2**63)}

_trans_id = operator.attrgetter("trans_id")
_create_at = operator.attrgetter("create_at")


def _extend(values: array[int], more: list[int]) -> None:
    """``values.extend(more)``, packed in one call: an array converts each item through
    argument parsing, which costs about as much as the rest of the ledger's work.

    Raises:
        struct.error: An item does not fit the array's type (nothing is added then).
    """
    values.frombytes(struct.pack(f"{len(more)}{values.typecode}", *more))


class Ledger:
    """A window's records handed out, 12 bytes each: ``hash(trans_id)`` and ``create_at``.

    Enough to tell, on the repair path, how many records of a time range were handed out
    and whether a record re-read there is new, without keeping the records. The times are
    kept relative to the first one noted, in an int32 array (68 years of seconds, 24 days of
    milliseconds either side of it); the first time that does not fit turns the array into
    int64 of the times themselves for the rest of the window, so no time is ever clipped
    (its mark of no time is -2**63, which no call was made at).
    """

    def __init__(self) -> None:
        self._keys = array("q")
        self._times = array("i")
        self._base: int | None = None  # the first time noted: the times are kept minus it

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, records: Sequence[CallRow]) -> None:
        """Note ``records`` as handed out."""
        _extend(self._keys, [hash(r.trans_id) if r.trans_id else _NO_KEY for r in records])
        self._add_times([r.create_at for r in records])

    def add_keyed(self, keys: list[str], times: list[int | None]) -> None:
        """Note records by their ids (none empty) and times, as `add` does, in bulk."""
        _extend(self._keys, list(map(hash, keys)))
        self._add_times(times)

    def _add_times(self, times: list[int | None]) -> None:
        if self._times.typecode == "q":
            _extend(self._times, [_NO_TIME["q"] if t is None else t for t in times])
            return
        base = self._base
        if base is None:
            base = self._base = next((t for t in times if t is not None), None)
            if base is None:  # no time yet: nothing to be relative to
                self._times.extend([_NO_TIME["i"]] * len(times))
                return
        none = _NO_TIME["i"]
        relative = [none if t is None else t - base for t in times]
        # A time at the mark of none, or past int32, takes the wide array.
        if relative.count(none) == times.count(None):
            length = len(self._times)
            try:
                _extend(self._times, relative)
                return
            except struct.error:  # past int32
                del self._times[length:]
        self._times = array("q", [_NO_TIME["q"] if t == none else t + base for t in self._times])
        self._add_times(times)

    def ids(self) -> set[int]:
        """The ``hash(trans_id)`` of every record noted with an id."""
        return set(self._keys) - {_NO_KEY}

    def times(self, since: int = 0) -> list[int]:
        """The ``create_at`` of the records noted from the ``since``-th on, sorted."""
        none = _NO_TIME[self._times.typecode]
        base = (self._base or 0) if self._times.typecode == "i" else 0
        return sorted([t + base for t in self._times[since:] if t != none])


class ExactlyOnce:
    """Hands out each ``trans_id`` once over a whole iteration; see the module docstring.

    Args:
        stats: Written here: ``duplicates``, ``max_shift``.
        concurrency: Pages fetched at about the same time, which bounds how far apart the
            offsets of one record can be read without a shift.
        boundary: ``trans_id`` → ``create_at`` of calls handed out by an earlier read.
        margin: How far before a window's end, in the records' time unit, the ids handed out
            are kept for the next window (0 covers the shared edge; a sync keeps its lookback).
        min_remembered: The fewest ids the paging remembers (`MIN_REMEMBERED_IDS`, or the
            floor of the `remembered_ids` block in force, by default).
    """

    def __init__(
        self,
        stats: IterationStats,
        *,
        concurrency: int,
        boundary: Mapping[str, int] | None = None,
        margin: int = 0,
        min_remembered: int | None = None,
    ):
        if min_remembered is None:
            min_remembered = _floors[-1] if _floors else MIN_REMEMBERED_IDS
        self._min_remembered = min_remembered
        self._stats = stats
        self._concurrency = concurrency
        self._margin = margin
        self._kept: dict[str, int] = dict(boundary or {})
        self._keep: tuple[int, int] | None = None  # the times whose ids are kept, inclusive
        self.max_shift = 0
        self.ledger = Ledger()
        self._recent: dict[str, int] = {}  # trans_id -> offset, this window's paging
        self._pages: dict[int, list[str]] = {}  # offset -> the ids first read there
        self._newest = -1
        self._ids: set[int] | None = None  # the ledger's ids, once records come without offsets
        #: This window's records without a ``trans_id``, handed out (repeats included).
        self.keyless = 0
        #: Whether a record of this window came back at another offset while paging.
        self.order_moved = False

    def open_window(self, end: int | None, *, newest_first: bool = False) -> None:
        """Start a window ending at ``end`` (``None``: open, and the last), or the next of its
        ranges when the filter has several variants: each has its own ledger, and the ids
        kept past the window are filtered once, by `close_window`, after the last.

        With ``newest_first``, ``end`` is the window's *start* instead, where the next window,
        an older one, ends: the ids kept are those of the calls at or before it (the margin
        does not apply; ``None``: no older window follows).
        """
        self._note_peak()
        self.ledger = Ledger()
        self._recent, self._pages, self._newest, self._ids = {}, {}, -1, None
        self.keyless, self.order_moved = 0, False
        if end is None:
            self._keep = None
        elif newest_first:
            self._keep = (_NO_TIME["q"], end)
        else:
            self._keep = (end - self._margin, -_NO_TIME["q"])

    def close_window(self) -> dict[str, int]:
        """End the window; return ``trans_id`` → ``create_at`` of the ids kept past it."""
        self._note_peak()
        keep = self._keep
        if keep is not None:
            low, high = keep
            self._kept = {key: at for key, at in self._kept.items() if low <= at <= high}
        return dict(self._kept)

    def _note_peak(self) -> None:
        """``stats.ledger_peak``: the most records a ledger of this iteration has held."""
        self._stats.ledger_peak = max(self._stats.ledger_peak, len(self.ledger))

    def knows(self, record: CallRow) -> bool:
        """Whether ``record`` was handed out already (never, without a ``trans_id``)."""
        key = record.trans_id
        if not key:
            return False
        ids = self._ids if self._ids is not None else self.ledger.ids()
        return key in self._kept or key in self._recent or hash(key) in ids

    def keep_new(
        self, records: list[CallRow], *, offset: int | None = None, page_size: int = 0
    ) -> list[CallRow]:
        """``records`` minus those handed out already; the rest are noted as handed out.

        Args:
            records: A page, or records a repair re-read.
            offset: Where the page starts in the window's paging (``None``: not paged, so
                checked against every record of the window).
            page_size: The size the page was asked with (with ``offset``).
        """
        if offset is not None:
            keys = self._note_if_all_new(records, offset)
            if keys is not None:
                self._forget_far_pages(offset, page_size, keys)
                return records
        return self._keep_new_one_by_one(records, offset, page_size)

    def _note_if_all_new(self, records: list[CallRow], offset: int) -> list[str] | None:
        """The common case, in bulk: a page whose records all have ids, none handed out yet,
        and no two the same. Note them as handed out from ``offset`` on, and return their
        ids; or change nothing and return ``None``."""
        keys: list[str] = list(map(_trans_id, records))
        recent, kept = self._recent, self._kept
        if not all(keys) or not recent.keys().isdisjoint(keys):
            return None
        if kept and not kept.keys().isdisjoint(keys):
            return None
        known = len(recent)
        recent.update(zip(keys, range(offset, offset + len(keys)), strict=True))
        if len(recent) - known != len(keys):  # an id twice in the page
            for key in keys:
                recent.pop(key, None)
            return None
        times: list[int | None] = list(map(_create_at, records))
        if self._keep is not None:
            low, high = self._keep
            pairs = zip(keys, times, strict=True)
            kept.update((key, at) for key, at in pairs if at is not None and low <= at <= high)
        self.ledger.add_keyed(keys, times)
        return keys

    def _keep_new_one_by_one(
        self, records: list[CallRow], offset: int | None, page_size: int
    ) -> list[CallRow]:
        stats, kept, keep = self._stats, self._kept, self._keep
        recent, ids = self._recent, self._ids
        if offset is None and ids is None:
            ids = self._ids = self.ledger.ids()
        fresh: list[CallRow] = []
        met_again: list[CallRow] = []  # handed out by an earlier window or read
        first_read: list[str] = []
        for index, record in enumerate(records):
            key = record.trans_id
            if not key:
                self.keyless += 1
                fresh.append(record)
                continue
            if offset is not None:
                position = offset + index
                earlier = recent.get(key)
                if earlier is not None:
                    self.order_moved = True
                    stats.duplicates += 1
                    self.max_shift = max(self.max_shift, abs(position - earlier))
                    continue
                recent[key] = position
                first_read.append(key)
            else:
                assert ids is not None
                hashed = hash(key)
                if hashed in ids:
                    continue  # re-read on purpose by a repair: not the server repeating itself
                ids.add(hashed)
            if kept and key in kept:
                stats.duplicates += 1
                met_again.append(record)
                continue
            fresh.append(record)
            if keep is not None:
                created = record.create_at
                if created is not None and keep[0] <= created <= keep[1]:
                    kept[key] = created
        # The window's ledger: what it handed out, and what its range met that was handed
        # out before (so the repair does not look for those again).
        self.ledger.add(fresh)
        if met_again:
            self.ledger.add(met_again)
        stats.max_shift = self.max_shift
        if offset is not None:
            self._forget_far_pages(offset, page_size, first_read)
        return fresh

    def _forget_far_pages(self, offset: int, size: int, first_read: list[str]) -> None:
        """Keep the ids of the pages within reach of a shift: twice the largest seen so far
        (so a growing shift is still covered), and at least ``min_remembered``."""
        self._pages.setdefault(offset, []).extend(first_read)
        self._newest = max(self._newest, offset)
        reach = (self._concurrency + 1 + 2 * math.ceil(self.max_shift / size)) * size
        oldest_kept = self._newest - max(reach, self._min_remembered)
        recent = self._recent
        for old in [o for o in self._pages if o < oldest_kept]:
            for key in self._pages.pop(old):
                del recent[key]
