"""``vbot-cdr``'s entry point: parse, run the command, and map every outcome to its exit
status (`vbot_cdr.cli._status`) and one line on stderr, in one place (`_run`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from .._errors import VBotError
from ._commands import COMMANDS, TABLE
from ._options import RunOptions, build
from ._parser import BadOptions, build_parser
from ._runlog import ENV_LOG, LOG_LEVELS, RunLog, RunSummary
from ._status import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    STOP_SIGNALS,
    CommandError,
    Context,
    Interrupted,
    UsageError,
    stop_name,
    stopped_status,
)
from ._summary import summarize_bad_options, write_summary
from ._timezone import apply_zone

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vbot-cdr`` with ``argv`` (default: the process's arguments); return the exit status.

    Raises:
        SystemExit: The options do not parse (status 2, after the usage and reason), or
            ``--help``/``--version`` (status 0), or standard output's reader went away
            (status 1).
    """
    try:
        namespace = build_parser().parse_args(argv)
    except BadOptions as exc:
        summarize_bad_options(sys.argv[1:] if argv is None else argv, exc.message, COMMANDS)
        raise
    options = build(RunOptions, vars(namespace))
    context = Context(
        os.environ,
        log=RunLog(json=options.log_format == "json"),
        summary=RunSummary(namespace.command),
    )
    status = EXIT_FAILED
    try:
        level = _log_level(options, os.environ)
        context.tz = context.log.tz = context.summary.tz = apply_zone(namespace, os.environ)
    except UsageError as exc:
        context.log.say(f"error: {exc}", level="error")
        return EXIT_USAGE
    try:
        with context.log.capturing(level):
            status = asyncio.run(_run(namespace, context))
    except KeyboardInterrupt as exc:
        context.error = exc
        context.log.say("interrupted", level="error")
        status = EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
    finally:
        write_summary(options.summary, context, status)
    return status


async def _run(namespace: argparse.Namespace, context: Context) -> int:
    """Run the command; map its outcome to the exit status, and report it in one line."""
    task = asyncio.current_task()
    assert task is not None
    log = context.log
    with _signals_cancel(task, context):
        try:
            return await TABLE[namespace.command](namespace, context)
        except UsageError as exc:
            context.error = exc
            log.say(f"error: {exc}", level="error")
            return EXIT_USAGE
        except Interrupted as exc:
            context.error = exc
            log.say(str(exc), level="error")
            return stopped_status(context)
        except CommandError as exc:
            context.error = exc
            log.say(str(exc), level="error")
            return EXIT_FAILED
        except VBotError as exc:
            context.error = exc
            log.say(f"{namespace.command} failed: {exc}", level="error")
            return EXIT_FAILED
        except asyncio.CancelledError:
            if context.stopped_by is None:
                raise
            context.error = Interrupted(stop_name(context.stopped_by))
            log.say(stop_name(context.stopped_by), level="error")
            return stopped_status(context)


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Task[Any], context: Context) -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and SIGHUP into cancelling ``task``: it stops at an ``await``,
    never mid-write, and the command's cleanup (closing files, cancelling requests) runs."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if context.stopped_by is None:
            context.stopped_by = signum
            task.cancel()

    installed = []
    try:
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    except (NotImplementedError, RuntimeError, ValueError):
        # No loop signal handlers here (Windows, or not the main thread): Ctrl-C stays a
        # KeyboardInterrupt, which main() reports.
        pass
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _log_level(options: RunOptions, environ: Mapping[str, str]) -> int:
    """``-v`` (info), else ``$VBOT_CDR_LOG``, else warning."""
    if options.verbose:
        return logging.INFO
    name = environ.get(ENV_LOG, "").strip().lower()
    if name and name not in LOG_LEVELS:
        raise UsageError(f"{ENV_LOG} must be one of {', '.join(LOG_LEVELS)}, got {name!r}")
    return LOG_LEVELS.get(name, logging.WARNING)


def _silence_stdout() -> NoReturn:
    # The reader of our output went away (``vbot-cdr export | head``): stop quietly, and keep
    # Python from failing again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_FAILED)
