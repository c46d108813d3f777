"""How a command ends: the exit statuses, the errors that pick them, and the run's context.

Exit status (`EXIT_STATUSES`): 0 success; 1 the command failed, with one line on stderr saying
what failed; 2 bad options or configuration; 128 + the signal's number when SIGINT (130),
SIGTERM (143) or SIGHUP (129) stopped it, after which the output holds only whole lines.
`vbot_cdr.cli._main` maps every outcome to one of them, in one place.
"""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Mapping
from typing import Final

import attrs

from .._table import DEFAULT_TZ, zone
from ._runlog import RunLog, RunSummary

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_STATUSES",
    "EXIT_USAGE",
    "STOP_SIGNALS",
    "CommandError",
    "Context",
    "Interrupted",
    "UsageError",
    "stop_name",
    "stopped_status",
]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: The exit statuses, as ``vbot-cdr --help`` lists them.
EXIT_STATUSES: Final = (
    (0, "done (export: the file is complete and in place)"),
    (EXIT_FAILED, "the command failed (API refused, network, output); one line says what"),
    (EXIT_USAGE, "bad options or configuration, before any request"),
    (129, "stopped by SIGHUP: whole lines only, sync state at the last whole window"),
    (EXIT_INTERRUPTED, "interrupted by Ctrl-C (SIGINT): the same"),
    (143, "stopped by SIGTERM (cron timeout, Airflow, Kubernetes): the same"),
)

#: The signals that stop a run the way Ctrl-C does; the exit status is 128 + the number.
STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class UsageError(Exception):
    """Options or configuration that cannot work; exit status 2."""


class CommandError(Exception):
    """A command that failed for an expected reason; its message is the one line shown."""


class Interrupted(CommandError):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) stopped a command; exit status 128 + its number."""


@attrs.define
class Context:
    """What a command gets besides its options.

    Attributes:
        environ: The environment variables.
        log: Its stderr.
        summary: What it did so far (for ``--summary`` and the progress lines).
        tz: The run's zone (``--tz``): of dates without an offset, and of the times shown.
        stopped_by: The signal that stopped it, if one did.
        error: What ended it, if it failed.
    """

    environ: Mapping[str, str]
    log: RunLog
    summary: RunSummary
    tz: dt.tzinfo = attrs.field(factory=lambda: zone(DEFAULT_TZ))
    stopped_by: int | None = None
    error: BaseException | None = None


def stop_name(signum: int) -> str:
    """How the one line names a stop by ``signum``: ``interrupted`` or ``stopped by SIGTERM``."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def stopped_status(context: Context) -> int:
    """The exit status of a run a signal stopped: 128 + its number."""
    return 128 + (context.stopped_by or signal.SIGINT)
