"""The run summary: the one JSON object ``--summary FILE`` receives when a run ends, whatever
the outcome, even when the options do not parse (`RunSummary` says what it holds)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path

from ._runlog import RunSummary
from ._status import EXIT_USAGE, Context, UsageError

__all__ = ["summarize_bad_options", "write_summary"]


def write_summary(path: Path | None, context: Context, status: int) -> None:
    """Write the summary of the run ``context`` describes to ``path``, if one is given.

    The secrets the run was given are redacted from it; a summary that cannot be written is
    one line on stderr, and does not change the exit status.
    """
    if path is None:
        return
    context.summary.finish(status, context.error, context.log.secrets)
    try:
        context.summary.write(path)
    except OSError as exc:
        context.log.say(f"cannot write the summary {path}: {exc.strerror or exc}", level="error")


def summarize_bad_options(argv: Sequence[str], message: str, commands: Sequence[str]) -> None:
    """Write ``--summary``, if ``argv`` names one, for options that did not parse.

    Only a command's name (one of ``commands``) is taken from ``argv``: any other word may be
    the value of a secret option.
    """
    finder = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    finder.add_argument("--summary", type=Path)
    with contextlib.suppress(SystemExit):
        args, _ = finder.parse_known_args(argv)
        if args.summary is not None:
            command = next((arg for arg in argv if arg in commands), "?")
            summary = RunSummary(command)
            summary.finish(EXIT_USAGE, UsageError(message), ())
            with contextlib.suppress(OSError):
                summary.write(args.summary)
