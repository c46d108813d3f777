"""``vbot-cdr export``: every matching call to a file, replaced only once complete, or to
standard output."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path

from .._iteration import row_pages
from ._options import ExportOptions
from ._outputs import (
    ExportFile,
    Output,
    OutputFormat,
    Rows,
    choose_format,
    export_file,
    shown_zone,
    stream_output,
)
from ._progress import progress, reporting
from ._runlog import RunSummary
from ._settings import open_client
from ._status import Context, UsageError

__all__ = ["open_export", "run_export"]


async def run_export(options: ExportOptions, context: Context) -> int:
    """Export; the one line on stderr says how many calls went where."""
    output, summary = options.output, context.summary
    out_format = choose_format(output.out, output.format, excel=output.excel, tz=context.tz)
    started = time.monotonic()
    async with open_client(options.connection, context, options.paging) as client:
        if options.window is not None and options.filter.start_date is None:
            raise UsageError("--window needs --start-date, where the first window begins")
        try:
            calls = client.iter_calls(
                options.filter,
                limit=options.limit,
                page_size=options.paging.page_size,
                concurrency=options.paging.concurrency,
                window=options.window,
            )
        except ValueError as exc:  # a --window shorter than --time-unit
            raise UsageError(str(exc)) from None
        # The pages as decoded: every output encodes its rows straight from them.
        pages = row_pages(calls)
        summary.stats = pages.stats
        with contextlib.ExitStack() as stack:
            writer = open_export(stack, "export", context, output.out, out_format)
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


def open_export(
    stack: contextlib.ExitStack,
    command: str,
    context: Context,
    out: str | None,
    out_format: OutputFormat,
    *,
    rows: Rows | None = None,
) -> Output:
    """Open in ``stack`` what an export-like ``command`` writes: the file ``out``, replaced
    only once complete (`export_file`), or standard output for ``None`` or ``-``.

    Also entered: the command's one-line message for a failure or a signal (`reporting`),
    and, once the output is closed, the file named in the run summary.

    Returns:
        The output, for the calls (or ``rows``).
    """
    result = ExportFile(Path(out or "-"))
    left_behind = functools.partial(_left_behind_by, result)
    stack.enter_context(reporting(command, context, str(result.target), left_behind=left_behind))
    # Runs once the file is closed, renamed or kept as partial, whatever the outcome.
    stack.callback(_record_file, context.summary, result)
    return stack.enter_context(
        export_file(result.target, out_format, result, rows=rows)
        if out not in (None, "-")
        else stream_output(sys.stdout.buffer, out_format, rows=rows)
    )


def _left_behind_by(result: ExportFile) -> str:
    """What an export that did not complete leaves, for its message."""
    if result.target == Path("-"):
        return "standard output holds them, whole lines only"
    kept = "nothing was written"
    if result.partial is not None:
        kept = f"{result.partial} holds them, whole lines only"
    return f"{kept}; {result.target} was not touched"


def _record_file(summary: RunSummary, result: ExportFile) -> None:
    """Name in ``summary`` the file an export completed, or the partial file it kept."""
    if result.complete:
        summary.files.append(str(result.target))
    elif result.partial is not None:
        summary.partial_files.append(str(result.partial))
