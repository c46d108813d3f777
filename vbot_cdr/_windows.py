"""Time windows: slicing a date range into consecutive windows, and where a windowed read stands.

Offset paging over a years-long history asks for deep pages, which is where servers slow down
or cap. ``iter_calls(window=...)`` and `CallSync` split the date range into consecutive
windows and page each one separately (``countAll``, then its pages), oldest window first, so
that no offset is deeper than one window's records (`_iteration` runs them).

Edges. The API document does not say whether ``end_date`` is inclusive (the fake says it is).
Each inner edge ``b`` is therefore sent twice, as one window's ``end_date`` and as the next
window's ``start_date``, so that a call created at ``b`` is found whichever way the server
reads it; the exactly-once stage remembers the ``trans_id`` of every call handed out whose
``create_at`` is at or after ``b - margin`` and drops those calls when they come again. The
outer edges are sent as the caller gave them, so the windows together select exactly what the
unsliced filter selects. This relies on the date filters bounding ``create_at`` in the client's
``time_unit`` (as the fake does); a record without a ``trans_id`` cannot be recognised and is
never dropped.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Final, overload

import attrs

from ._models import TimeUnit

__all__ = ["Checkpoint", "Windows", "parse_duration", "plan_windows", "to_units"]


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


_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?)([smhdw]?)")


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``10m``, ``6h``, ``1d``, ``2w``, or a number of seconds (a window, a lookback).

    Raises:
        ValueError: Neither, or too long a duration.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use 90s, 10m, 6h, 1d or 2w)")
    number, unit = match.groups()
    try:
        return dt.timedelta(seconds=float(number) * _DURATION_UNITS[unit or "s"])
    except OverflowError:
        raise ValueError(f"too long a duration: {text!r}") from None


class Windows(Sequence[tuple[int, int]]):
    """Consecutive windows ``(a, b)`` from ``start`` to ``end``, each ``width`` wide but the
    last, computed when asked: memory is independent of their number (a one-second window
    over years is 10**8 windows, none of them held).

    Each window's ``b`` is the next one's ``a``. ``start == end`` gives the one window
    ``(start, end)``; ``end < start`` gives none. ``reach`` moves the first window's start
    back (a sync's lookback).

    Raises:
        ValueError: ``width`` < 1.
    """

    def __init__(self, start: int, end: int, width: int, *, reach: int | None = None):
        if width < 1:
            raise ValueError(f"a window must be at least one time unit wide, got {width}")
        self._start, self._end, self._width = start, end, width
        self._reach = start if reach is None else reach
        self._len = 0 if end < start else max(1, -(-(end - start) // width))

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, int]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, int] | list[tuple[int, int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        position = index + self._len if index < 0 else index
        if not 0 <= position < self._len:
            raise IndexError(f"window {index} of {self._len}")
        a = self._start + position * self._width
        return (self._reach if position == 0 else a, min(a + self._width, self._end))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(map(operator.eq, self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Windows({self._start}, {self._end}, {self._width}, reach={self._reach})"


def plan_windows(start: int, end: int, width: int) -> Windows:
    """The windows from ``start`` to ``end``, each ``width`` wide but the last (`Windows`).

    Raises:
        ValueError: ``width`` < 1.
    """
    return Windows(start, end, width)


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
