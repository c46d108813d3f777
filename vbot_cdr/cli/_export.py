"""``vbot-cdr export``: every matching call to a file, replaced only once complete, or to
standard output."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path

from ._options import ExportOptions
from ._outputs import ExportFile, choose_format, export_file, shown_zone, stream_output
from ._progress import progress, reporting
from ._runlog import RunSummary
from ._settings import open_client
from ._status import Context, UsageError

__all__ = ["left_behind_by", "record_file", "run_export"]


async def run_export(options: ExportOptions, context: Context) -> int:
    """Export; the one line on stderr says how many calls went where."""
    output, summary = options.output, context.summary
    out_format = choose_format(output.out, output.format, excel=output.excel, tz=context.tz)
    started = time.monotonic()
    async with open_client(options.connection, context, options.paging) as client:
        if options.window is not None and options.filter.start_date is None:
            raise UsageError("--window needs --start-date, where the first window begins")
        try:
            pages = client.iter_call_pages(
                options.filter,
                limit=options.limit,
                page_size=options.paging.page_size,
                concurrency=options.paging.concurrency,
                window=options.window,
            )
        except ValueError as exc:  # a --window shorter than --time-unit
            raise UsageError(str(exc)) from None
        summary.stats = pages.stats
        to_file = output.out not in (None, "-")
        result = ExportFile(Path(output.out or "-"))
        with contextlib.ExitStack() as stack:
            left_behind = functools.partial(left_behind_by, result)
            stack.enter_context(
                reporting("export", context, str(result.target), left_behind=left_behind)
            )
            # Runs once the file is closed, renamed or kept as partial, whatever the outcome.
            stack.callback(record_file, summary, result)
            writer = stack.enter_context(
                export_file(result.target, out_format, result)
                if to_file
                else stream_output(sys.stdout.buffer, out_format)
            )
            async with progress(
                "export",
                context,
                pages,
                quiet=output.quiet,
                windowed=options.window is not None,
                limit=options.limit,
            ) as shown:
                async for page in pages:
                    shown.step()
                    writer.write(page)
                    shown.advance(len(page))
    if not output.quiet:
        elapsed = time.monotonic() - started
        context.log.say(
            f"exported {summary.records} calls to {writer.name} in {elapsed:.1f}s "
            f"(times in {shown_zone(out_format)})"
        )
    return 0


def left_behind_by(result: ExportFile) -> str:
    """What an export that did not complete leaves, for its message."""
    if result.target == Path("-"):
        return "standard output holds them, whole lines only"
    kept = "nothing was written"
    if result.partial is not None:
        kept = f"{result.partial} holds them, whole lines only"
    return f"{kept}; {result.target} was not touched"


def record_file(summary: RunSummary, result: ExportFile) -> None:
    """Name in ``summary`` the file an export completed, or the partial file it kept."""
    if result.complete:
        summary.files.append(str(result.target))
    elif result.partial is not None:
        summary.partial_files.append(str(result.partial))
