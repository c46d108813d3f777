"""``vbot-cdr sync --to URL``: load the calls new since the last run into a database table,
each call exactly once, the state kept in the same database (`open_database_sync`); with
``--conversations``, then their conversations' turns (`sync_conversations_to_database`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from .._errors import StateError
from .._sinks import (
    DatabaseSync,
    open_database_sync,
    parse_database_url,
    sync_conversations_to_database,
)
from ._options import DatabaseSyncOptions
from ._progress import progress_lines
from ._settings import open_client
from ._status import Context, UsageError

__all__ = ["run_database_sync"]


async def run_database_sync(options: DatabaseSyncOptions, context: Context) -> int:
    """Sync into a database; the one line on stderr says how many calls went where. A refused
    run (exit 2) leaves no new database file behind."""
    with _removed_if_refused(options.to):
        return await _load(options, context)


@contextlib.contextmanager
def _removed_if_refused(url: str) -> Iterator[None]:
    """Remove the database file of ``url`` (and its journals) if the run made it and is
    refused: opening a SQLite or DuckDB file creates it, before the state can be checked."""
    try:
        target = parse_database_url(url)
    except ValueError:
        target = None  # open_database_sync says what is wrong with it
    new: list[Path] = []
    if target is not None and target.backend != "postgresql":
        path = Path(target.target)
        files = [path, *(Path(f"{path}{end}") for end in ("-journal", "-wal", ".wal"))]
        new = [file for file in files if not file.exists()]
    try:
        yield
    except UsageError:
        for file in new:
            file.unlink(missing_ok=True)
        raise


async def _load(options: DatabaseSyncOptions, context: Context) -> int:
    summary = context.summary
    started = time.monotonic()
    load: DatabaseSync | None = None
    async with open_client(options.connection, context, options.paging) as client:
        try:
            async with (
                progress_lines(context, quiet=options.quiet),
                open_database_sync(
                    client, options.to, options.filter, table=options.table, **options.settings()
                ) as load,
            ):
                summary.stats = load.stats
                done = await load.run()
            turns = (
                await sync_conversations_to_database(
                    client, options.to, options.filter, **options.settings()
                )
                if options.conversations
                else None
            )
        except StateError as exc:  # before any request: the state or the filters must change
            raise UsageError(f"{exc} (see --reset and --start-date)") from None
        except ValueError as exc:  # a bad URL or bad options, before anything is opened
            raise UsageError(str(exc)) from None
        finally:
            # The calls read so far: the summary of a run that fails or is stopped says it.
            summary.records = load.stats.yielded if load is not None else 0
    summary.records = done.loaded
    summary.tables.append(f"{done.database} {done.table}")
    summary.without_trans_id = done.without_trans_id
    if done.without_trans_id:
        context.log.say(f"warning: {done.without_trans_id} calls without trans_id were not loaded")
    if not options.quiet:
        elapsed = time.monotonic() - started
        context.log.say(
            f"synced {done.loaded} calls into {done.table} in {done.database} in {elapsed:.1f}s "
            f"({done.windows} windows, each committed with the state)"
        )
    if turns is not None:
        summary.tables.append(f"{turns.database} {turns.table}")
        if turns.without_trans_id:
            context.log.say(
                f"warning: {turns.without_trans_id} calls without trans_id: no conversation loaded"
            )
        if not options.quiet:
            context.log.say(
                f"synced the conversations of {turns.calls} calls ({turns.turns} rows, "
                f"{turns.without_conversation} calls without one) into {turns.table} in "
                f"{turns.database} ({turns.windows} windows, each committed with its state)"
            )
    return 0
