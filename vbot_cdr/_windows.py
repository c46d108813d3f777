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
import itertools
import re
from collections.abc import Mapping
from typing import Final

import attrs

from ._models import TimeUnit

__all__ = ["Checkpoint", "parse_duration", "plan_windows", "to_units"]


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
