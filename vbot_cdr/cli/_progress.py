"""How far a run got, as it goes: the progress bar on a terminal, progress lines in a
scheduler's log, and the one line that says where a failed or stopped run left its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
from tqdm import tqdm

from .._errors import VBotError
from .._iteration import IteratorBase
from .._stats import IterationStats
from ._runlog import RunSummary, progress_interval
from ._status import CommandError, Context, Interrupted, stop_name

__all__ = [
    "Progress",
    "progress",
    "progress_bar",
    "progress_lines",
    "reporting",
    "show_windows",
]


def progress_bar(label: str, *, quiet: bool) -> tqdm[Any]:
    """A bar of calls on stderr, shown only on a terminal and without ``--quiet``."""
    return tqdm(
        desc=label,
        unit=" calls",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=quiet or not sys.stderr.isatty(),
    )


def show_windows(bar: tqdm[Any], label: str, stats: IterationStats) -> None:
    """Name the time window being read in the bar's label: ``sync window 3/7``."""
    current = min(stats.windows_done + 1, stats.windows)
    bar.set_description_str(f"{label} window {current}/{stats.windows}", refresh=False)


@attrs.define
class Progress:
    """The progress of one command's iteration (`progress`): call `step` before handling an
    item, `advance` once its calls are written."""

    _bar: tqdm[Any]
    _label: str
    _summary: RunSummary
    _items: IteratorBase[Any]
    _windowed: bool
    _limit: int | None

    def step(self) -> None:
        """Before a step's calls are counted: with time windows, name the window being read
        (`show_windows`); without, once ``countAll`` is known, set the calls the run expects,
        in the summary and the bar (at most the limit)."""
        if self._windowed:
            show_windows(self._bar, self._label, self._items.stats)
        elif self._summary.expected is None and (total := self._items.total) is not None:
            expected = total if self._limit is None else min(total, self._limit)
            self._summary.expected = self._bar.total = expected

    def advance(self, calls: int) -> None:
        """Count ``calls`` more calls written, in the summary and the bar."""
        self._summary.records += calls
        self._bar.update(calls)


@contextlib.asynccontextmanager
async def progress(
    label: str,
    context: Context,
    items: IteratorBase[Any],
    *,
    quiet: bool,
    windowed: bool,
    limit: int | None = None,
) -> AsyncIterator[Progress]:
    """Show how far ``items`` got while the block runs: the bar (`progress_bar`), the log's
    progress lines (`progress_lines`); ``items`` is closed when the block ends."""
    with progress_bar(label, quiet=quiet) as bar:
        async with progress_lines(context, quiet=quiet), items:
            yield Progress(bar, label, context.summary, items, windowed, limit)


@contextlib.asynccontextmanager
async def progress_lines(context: Context, *, quiet: bool) -> AsyncIterator[None]:
    """Log a progress line every interval while the block runs, when stderr is no terminal.

    A scheduler's log (cron mail, Airflow, Kubernetes) shows no progress bar: these lines
    show that a long run is alive, and how far it got.
    """
    if quiet or sys.stderr.isatty():
        yield
        return
    interval = progress_interval(context.environ)

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            text, numbers = context.summary.progress()
            context.log.event(text, event="progress", **numbers)

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


@contextlib.contextmanager
def reporting(
    command: str, context: Context, name: str, *, left_behind: Callable[[], str]
) -> Iterator[None]:
    """Turn what stops a command midway into its one-line message.

    ``left_behind`` says what a failure (an API error or a signal) leaves in the output
    ``name``; it is asked once the output has been closed.

    Raises:
        CommandError: An API error, or the output cannot be written.
        Interrupted: A signal stopped the command.
    """
    written = context.summary
    try:
        yield
    except VBotError as exc:
        raise CommandError(
            f"{command} failed after {written.records} calls ({left_behind()}): {exc}"
        ) from exc
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise CommandError(f"cannot write {name}: {exc.strerror or exc}") from None
    except asyncio.CancelledError:
        if context.stopped_by is not None:
            raise Interrupted(
                f"{stop_name(context.stopped_by)} after {written.records} calls ({left_behind()})"
            ) from None
        raise
