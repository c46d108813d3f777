"""``vbot-cdr sync --state FILE --out DIR/|FILE``: append the calls new since the last run,
moving the state only past output that is flushed and fsynced, window by window."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from pathlib import Path
from typing import IO

from .._errors import StateError, VBotError
from .._iteration import row_pages
from .._sync import CallSync
from ._options import FileSyncOptions
from ._outputs import (
    APPENDABLE,
    OutputFormat,
    append_file,
    append_output,
    choose_format,
    drop_torn_tail,
    make_durable,
    shown_zone,
)
from ._progress import progress_bar, progress_lines, reporting, show_windows
from ._settings import open_client
from ._status import CommandError, Context, UsageError

__all__ = ["run_file_sync"]

logger = logging.getLogger("vbot_cdr")

_RESUMES = "the state is saved up to the last whole window; the next run resumes there"
_NOTHING_SAVED = "nothing was saved: the next run starts where this one did"


async def run_file_sync(options: FileSyncOptions, context: Context) -> int:
    """Sync to a file; the one line on stderr says how many calls went where."""
    out_format = _sync_format(options, context.tz)
    summary = context.summary
    started = time.monotonic()
    async with open_client(options.connection, context, options.paging) as client:
        try:
            sync = client.sync(options.state, options.filter, **options.settings())
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        summary.stats = sync.stats
        if not sync.windows:
            if not options.quiet:
                context.log.say(f"nothing to sync yet: {options.state} is up to date")
            return 0
        target = _target(options.out, sync, out_format.name, client.time_unit)
        resumed = sync.watermark

        def left_behind() -> str:
            # Only a commit this run made is claimed: a failure before it saved nothing.
            return _NOTHING_SAVED if sync.watermark == resumed else _RESUMES

        with contextlib.ExitStack() as stack:
            stack.enter_context(reporting("sync", context, str(target), left_behind=left_behind))
            stream = stack.enter_context(append_file(target))
            new_file = drop_torn_tail(stream) == 0
            output = append_output(stream, out_format, str(target), new=new_file)
            bar = stack.enter_context(progress_bar("sync", quiet=options.quiet))
            async with progress_lines(context, quiet=options.quiet), sync:
                try:
                    # The pages as decoded (a page never spans two windows), encoded as such.
                    async for page in row_pages(sync):
                        if sync.committable:  # the calls written so far end a window
                            await _commit(sync, stream)
                        output.write(page)
                        summary.records += len(page)
                        bar.update(len(page))
                        show_windows(bar, "sync", sync.stats)
                except VBotError:
                    # The windows written in full before the failure are kept, so that the
                    # next run does not append their calls again.
                    if sync.committable:
                        await _commit(sync, stream)
                    raise
                await _commit(sync, stream)
    if new_file and not summary.records and target != Path(options.out):
        target.unlink()  # a run's file in DIR/ holds its new calls; there were none
    elif summary.records:
        summary.files.append(str(target))
    if not options.quiet:
        elapsed = time.monotonic() - started
        where = f" to {target}" if summary.records else ""
        context.log.say(
            f"synced {summary.records} new calls{where} in {elapsed:.1f}s "
            f"({len(sync.windows)} windows, times in {shown_zone(out_format)}); "
            f"state saved in {options.state}"
        )
    return 0


def _is_directory(out: str) -> bool:
    return out.endswith(("/", os.sep)) or os.path.isdir(out)


def _sync_format(options: FileSyncOptions, tz: dt.tzinfo) -> OutputFormat:
    if _is_directory(options.out):
        # A directory gets a file per run, named for the format: JSON Lines unless told.
        return OutputFormat(options.format or "jsonl", excel=options.excel, tz=tz)
    out_format = choose_format(options.out, options.format, excel=options.excel, tz=tz)
    if out_format.gzip or out_format.name not in APPENDABLE:
        raise UsageError("sync appends uncompressed JSON Lines or CSV; export writes the others")
    return out_format


def _target(out: str, sync: CallSync, out_format: str, time_unit: str) -> Path:
    """``--out`` itself, or in a directory (``DIR/``, made if missing), a file named after what
    this run reads.

    Raises:
        CommandError: The directory cannot be made.
    """
    path = Path(out)
    if not _is_directory(out):
        return path
    # Made here, once the run is sure to write: a cron line's first run finds no DIR/ yet.
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot make the output directory {out}: {exc.strerror}") from None
    scale = 1000 if time_unit == "ms" else 1

    def stamp(epoch: int) -> str:
        moment = dt.datetime.fromtimestamp(epoch / scale, dt.timezone.utc)
        return moment.strftime("%Y%m%dT%H%M%SZ")

    first, last = sync.windows[0][0], sync.windows[-1][1]
    return path / f"calls-{stamp(first)}-{stamp(last)}.{out_format}"


async def _commit(sync: CallSync, stream: IO[bytes]) -> None:
    """Make the output durable, then move the state past it."""
    await asyncio.to_thread(make_durable, stream)
    await sync.commit()
    logger.info(
        "sync: window %d of %d committed; state saved in %s (watermark %s)",
        sync.stats.windows_done,
        len(sync.windows),
        sync.path,
        sync.watermark,
    )
