"""How option values are read: each function takes the text given and returns the value, or
raises `argparse.ArgumentTypeError` with a reason that never quotes a value that may be secret
(the values read here are numbers, dates, durations and fault names, never credentials).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._models import CallFilter
from .._windows import parse_duration

if TYPE_CHECKING:
    from vbot_cdr.testing import FaultMix, PushHabits

__all__ = [
    "FILTERS",
    "count",
    "duration",
    "fault_mix",
    "parse_date",
    "positive_int",
    "push_habits",
    "seconds",
    "timeout",
    "window",
]


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int: Final = _int_at_least(1)
count: Final = _int_at_least(0)


def seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def timeout(text: str) -> float:
    """A number of seconds, more than 0."""
    value = seconds(text)
    if not value:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def duration(text: str) -> dt.timedelta:
    """``90s``, ``10m``, ``6h``, ``1d``, ``2w``, or a number of seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def window(text: str) -> dt.timedelta:
    """A duration longer than 0: the width of a time window."""
    value = duration(text)
    if not value:
        raise argparse.ArgumentTypeError("a window must be longer than 0")
    return value


def _status(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_date(text: str) -> int | dt.datetime:
    """Read a ``--start-date``/``--end-date`` value.

    Digits are a Unix epoch, sent as given. Anything else is an ISO 8601 date or date-time
    (``2025-12-01``, ``2025-12-01T08:30``, ``2025-12-01T08:30+07:00``, ``...Z``); one
    without an offset is a naive datetime, which the run reads in its zone (``--tz``, see
    `vbot_cdr.cli._timezone`), and a date alone is its midnight.

    Raises:
        argparse.ArgumentTypeError: Neither.
    """
    if text.isdigit():
        return int(text)
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix.
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (use 2025-12-01, 2025-12-01T08:30+07:00 or a Unix epoch)"
        ) from None
    return value


#: How each `CallFilter` criterion is read from its option; the rest are plain text.
_FILTER_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "start_date": parse_date,
    "end_date": parse_date,
    "status": _status,
    "min_postage": float,
    "max_postage": float,
}
#: The filter options, in `CallFilter`'s order, as (name, parser, metavar, help, several):
#: derived from the fields' metadata, so a criterion added to `CallFilter` becomes an option
#: by itself; ``several``: the option may be repeated (a criterion of several values).
FILTERS: Final = tuple(
    (
        field.name,
        _FILTER_PARSERS.get(field.name, str),
        field.metadata["metavar"],
        field.metadata["help"],
        bool(field.metadata.get("several")),
    )
    for field in attrs.fields(CallFilter)
)


def fault_mix(text: str) -> FaultMix:
    """A `FaultMix` from ``name=value`` pairs of its number and text fields."""
    # Imported here: the fake server is for serve-fake only, not for every run.
    from vbot_cdr.testing import FaultMix

    mix: FaultMix = _from_pairs(FaultMix, text, "fault", skip=frozenset({"endpoints"}))
    return mix


def push_habits(text: str) -> PushHabits:
    """`PushHabits` from ``name=value`` pairs of its fields."""
    from vbot_cdr.testing import PushHabits

    habits: PushHabits = _from_pairs(PushHabits, text, "habit")
    return habits


def _from_pairs(cls: type, text: str, what: str, skip: frozenset[str] = frozenset()) -> Any:
    """An instance of the attrs class ``cls`` from ``name=value`` pairs of its number and
    text fields (each read as its default's type); an unknown ``what`` is refused."""
    fields = {f.name: f for f in attrs.fields(cls) if f.name not in skip}
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        field = fields.get(name.strip())
        if field is None:
            raise argparse.ArgumentTypeError(f"unknown {what} {name!r}; known: {sorted(fields)}")
        kind = type(field.default) if field.default is not None else str
        try:
            options[field.name] = kind(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad value for {name}: {value!r}") from None
    try:
        return cls(**options)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
