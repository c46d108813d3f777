"""``vbot-cdr conversations`` and ``vbot-cdr recordings``: a request per matching call.

``conversations`` writes the turns of each call's bot conversation (`vbot_cdr.cli._turns`)
to a file replaced only once complete (as ``export`` does) or to standard output;
``recordings`` downloads each call's recording into a directory with its manifest
(`VBotClient.download_recordings`), resumable by running it again.
"""

from __future__ import annotations

import collections
import contextlib
import time

from .._recordings import MANIFEST
from ._export import open_export
from ._options import ConversationsOptions, RecordingsOptions
from ._outputs import choose_format
from ._progress import progress, reporting
from ._settings import open_client
from ._status import Context, UsageError
from ._turns import TURN_ROWS, turn_rows

__all__ = ["run_conversations", "run_recordings"]


def _check_window(options: ConversationsOptions | RecordingsOptions) -> None:
    if options.window is not None and options.filter.start_date is None:
        raise UsageError("--window needs --start-date, where the first window begins")


async def run_conversations(options: ConversationsOptions, context: Context) -> int:
    """Write every matching call's conversation, a row per turn; one closing line on stderr."""
    output, summary = options.output, context.summary
    out_format = choose_format(output.out, output.format, excel=output.excel)
    _check_window(options)
    started = time.monotonic()
    turns = 0
    async with open_client(options.connection, context, options.paging) as client:
        try:
            items = client.iter_conversations(
                options.filter,
                concurrency=options.paging.concurrency,
                page_size=options.paging.page_size,
                window=options.window,
            )
        except ValueError as exc:  # a filter the dialect lacks, a --window too short
            raise UsageError(str(exc)) from None
        summary.stats = items.stats
        with contextlib.ExitStack() as stack:
            writer = open_export(
                stack, "conversations", context, output.out, out_format, rows=TURN_ROWS
            )
            async with progress(
                "conversations",
                context,
                items,
                quiet=output.quiet,
                windowed=options.window is not None,
            ) as shown:
                async for item in items:
                    shown.step()
                    rows = turn_rows(item)
                    writer.write(rows)
                    turns += sum(1 for row in rows if row["turn"] is not None)
                    shown.advance(1)
    if not output.quiet:
        elapsed = time.monotonic() - started
        context.log.say(
            f"wrote the conversations of {summary.records} calls ({turns} turns) to "
            f"{writer.name} in {elapsed:.1f}s"
        )
    return 0


async def run_recordings(options: RecordingsOptions, context: Context) -> int:
    """Download every matching call's recording; one closing line on stderr."""
    summary = context.summary
    _check_window(options)
    started = time.monotonic()
    outcomes: collections.Counter[str] = collections.Counter()
    directory = options.out
    async with open_client(options.connection, context, options.paging) as client:
        try:
            download = client.download_recordings(
                directory,
                options.filter,
                max_bytes=options.max_bytes,
                concurrency=options.paging.concurrency,
                page_size=options.paging.page_size,
                window=options.window,
            )
        except ValueError as exc:  # a filter the dialect lacks, a --window too short
            raise UsageError(str(exc)) from None
        summary.stats = download.stats
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                reporting(
                    "recordings",
                    context,
                    str(directory),
                    left_behind=lambda: (
                        f"the whole files are listed in {directory / MANIFEST}; "
                        "run it again to resume"
                    ),
                )
            )
            async with progress(
                "recordings",
                context,
                download,
                quiet=options.quiet,
                windowed=options.window is not None,
            ) as shown:
                async for recording in download:
                    shown.step()
                    if recording.reason is not None:
                        outcomes[recording.reason] += 1
                    else:
                        outcomes["already there" if recording.reused else "downloaded"] += 1
                    shown.advance(1)
        summary.files.append(str(directory / MANIFEST))
    if not options.quiet:
        elapsed = time.monotonic() - started
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        context.log.say(
            f"recordings of {summary.records} calls in {directory}: {counts or 'none'} "
            f"in {elapsed:.1f}s"
        )
    return 0
