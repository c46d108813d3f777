"""The run's time zone: ``--tz``, else ``$VBOT_CDR_TZ``, else VBot's own, ``Asia/Ho_Chi_Minh``.

Dates given without an offset (``--start-date 2025-12-01``) are read in it, and the times a
run shows (JSON Lines, CSV, xlsx, log lines, ``--summary``) are in it. Never the machine's
zone: VBot's console and its legacy date strings are Vietnam time, and a default taken from
the machine would make a cron job on a UTC server split every Vietnamese day in two.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from typing import Final

from .._table import DEFAULT_TZ, zone
from ._status import UsageError

__all__ = ["ENV_TZ", "apply_zone", "run_zone"]

#: The run's zone, unless ``--tz`` is given.
ENV_TZ: Final = "VBOT_CDR_TZ"


def run_zone(given: str | None, environ: Mapping[str, str]) -> dt.tzinfo:
    """The zone ``--tz`` names (``given``), else `ENV_TZ`, else `DEFAULT_TZ`.

    Raises:
        UsageError: The name is no IANA zone.
    """
    name = given or environ.get(ENV_TZ, "").strip() or DEFAULT_TZ
    try:
        return zone(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def apply_zone(namespace: argparse.Namespace, environ: Mapping[str, str]) -> dt.tzinfo:
    """The run's zone (`run_zone` of ``--tz``), after reading in it every date option of
    ``namespace`` given without an offset (a naive datetime, as `parse_date` returns it): the
    wall time it names there.

    Raises:
        UsageError: The zone's name is no IANA zone.
    """
    tz = run_zone(getattr(namespace, "tz", None), environ)
    for name, value in vars(namespace).items():
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            setattr(namespace, name, value.replace(tzinfo=tz))
    return tz
