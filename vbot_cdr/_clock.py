"""Epochs as text in a zone, exactly as `datetime` writes them, without a datetime per value.

The line-based exports write three times per call. Through `datetime` (``fromtimestamp`` in
the zone, then ``isoformat``) that costs about 2 us a time, as much as everything else done
for the call. The text of a time is its local date, its clock and its zone's offset. No zone
of the tz database changes its offset twice within an hour, so an hour whose first and last
seconds have the same offset has it throughout: that offset is found once per hour through
`datetime` and kept, the text of each minute once per minute, and the rest is arithmetic
and a table of text.

What the fast path does not cover goes through `datetime` as before, so the text is the same
for every value: epochs outside ``(0, 2**32)`` seconds (before 1970 or after 2106: also
where a float of milliseconds could round differently), offsets that are not whole minutes
(local mean times before 1900), and an hour in which the offset changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Final

from ._models import MILLISECONDS_THRESHOLD, epoch_to_datetime

__all__ = ["iso_times"]

_HOUR: Final = 3600
#: Past this many seconds the fast path is not taken (see the module's docstring).
_LAST_FAST: Final = 2**32
#: The hours and minutes kept per function before its tables start afresh (flat memory).
_KEPT_HOURS: Final = 65_536
_KEPT_MINUTES: Final = 8_192
#: ``HH:MM:`` for each minute of a day, and ``SS`` for each second of a minute.
_MINUTES: Final = tuple(f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
_SECONDS: Final = tuple(f"{second:02d}" for second in range(60))
_A_MINUTE: Final = dt.timedelta(minutes=1)
_EPOCH_DAY: Final = dt.date(1970, 1, 1).toordinal()


def iso_times(tz: dt.tzinfo, *, excel: bool = False) -> Callable[[int | None], str | None]:
    """The function turning an epoch (seconds or milliseconds, told apart by magnitude as
    `epoch_to_datetime` does) into its text in ``tz``; ``None`` and 0 give ``None``.

    The text is ``datetime.isoformat()`` of the time in ``tz`` (``2025-12-01T09:30:00+07:00``,
    with ``.123000`` for milliseconds that are not whole seconds), or with ``excel``
    ``f"{time:%Y-%m-%d %H:%M:%S}"`` (no fraction, no offset: what Excel reads as a time).

    The function keeps the offsets of the hours and the text of the minutes it has met
    (bounded tables), so make one per output, not per value.

    Raises (the function made):
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    hours: dict[int, int | None] = {}
    # minute since the epoch -> (its local date and clock to the minute, the offset's text)
    minutes: dict[int, tuple[str, str] | None] = {}
    separator = " " if excel else "T"

    def slow(value: int) -> str | None:
        moment = epoch_to_datetime(value, tz)
        if moment is None:
            return None
        return f"{moment:%Y-%m-%d %H:%M:%S}" if excel else moment.isoformat()

    def offset_of(hour: int) -> int | None:
        """The offset of the hour ``hour`` (since the epoch) in minutes, or ``None`` if it
        changes within the hour or is not whole minutes."""
        if len(hours) >= _KEPT_HOURS:
            hours.clear()
        offset = dt.datetime.fromtimestamp(hour * _HOUR, tz).utcoffset()
        last = dt.datetime.fromtimestamp(hour * _HOUR + _HOUR - 1, tz).utcoffset()
        if offset is None or offset != last or offset % _A_MINUTE:
            hours[hour] = None
            return None
        hours[hour] = ahead = offset // _A_MINUTE
        return ahead

    def minute_of(minute: int) -> tuple[str, str] | None:
        if len(minutes) >= _KEPT_MINUTES:
            minutes.clear()
        hour = minute // 60
        ahead = hours[hour] if hour in hours else offset_of(hour)
        if ahead is None:
            minutes[minute] = None
            return None
        day, of_day = divmod(minute + ahead, 24 * 60)
        date = dt.date.fromordinal(_EPOCH_DAY + day).isoformat()
        zone_text = "" if excel else _offset_text(ahead)
        minutes[minute] = entry = (f"{date}{separator}{_MINUTES[of_day]}", zone_text)
        return entry

    def convert(value: int | None) -> str | None:
        if not value:
            return None
        if value >= MILLISECONDS_THRESHOLD:
            seconds, milliseconds = divmod(value, 1000)
        else:
            seconds, milliseconds = value, 0
        if not 0 < seconds < _LAST_FAST:
            return slow(value)
        minute, second = divmod(seconds, 60)
        entry = minutes[minute] if minute in minutes else minute_of(minute)
        if entry is None:
            return slow(value)
        clock, zone_text = entry
        if milliseconds and not excel:
            return f"{clock}{_SECONDS[second]}.{milliseconds:03d}000{zone_text}"
        return f"{clock}{_SECONDS[second]}{zone_text}"

    return convert


def _offset_text(minutes: int) -> str:
    """An offset of ``minutes`` as `datetime.isoformat` writes it: ``+07:00``, ``-03:30``."""
    sign = "-" if minutes < 0 else "+"
    hours, minute = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minute:02d}"
