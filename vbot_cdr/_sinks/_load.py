"""``sync_to_database``: the calls new since the last run, loaded exactly once.

The sync's state lives in the database (`DatabaseStateStore`), and a window's rows and the
state past that window are committed in one transaction (`DatabaseSync.commit_window`). A
run killed at any instant leaves the database as of its last commit: the rows of whole
windows and the state that covers them exactly. The next run starts at that state, and a
call loaded again (by the lookback, or because its window was rolled back) updates its row
instead of adding one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Final

import attrs

from .._client import VBotClient
from .._config import DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from .._decoding import CallRow
from .._iteration import row_pages
from .._models import CallFilter
from .._stats import IterationStats
from .._sync import CallSync, DocumentStateStore
from ._backends import Database, open_database
from ._columns import RECORD_COLUMNS
from ._url import parse_database_url

__all__ = [
    "DatabaseLoad",
    "DatabaseStateStore",
    "DatabaseSync",
    "open_database_sync",
    "sync_to_database",
]

#: Rows sent to the database at a time, inside a window's transaction (memory stays flat).
BATCH_ROWS: Final = 5_000


class DatabaseStateStore(DocumentStateStore):
    """A `StateStore` in ``<table>_sync_state``: one row per fingerprint of what the state is
    for, holding the document a state file holds.

    Saving the state commits the open transaction, which holds the window's rows: see
    `Database.commit_with_state`.
    """

    def __init__(self, database: Database):
        self.database = database

    def __str__(self) -> str:
        return f"{self.database.state_table} in {self.database.url}"

    def read_document(self, key: str) -> str | None:
        """The state document saved under ``key``, if any."""
        return self.database.read_state(key)

    def write_document(self, key: str, document: bytes) -> None:
        """Commit the rows loaded since the last commit with the state ``document``."""
        self.database.commit_with_state(key, document.decode())


@attrs.frozen
class DatabaseLoad:
    """What `sync_to_database` did.

    Attributes:
        loaded: Calls written (inserted or updated).
        without_trans_id: Calls skipped because they have no ``trans_id`` (or an empty one):
            without a key they cannot be loaded exactly once. They are counted, never
            silently dropped.
        windows: The windows read.
        table: The calls table.
        database: The database URL, its password masked.
    """

    loaded: int
    without_trans_id: int
    windows: int
    table: str
    database: str


class DatabaseSync:
    """A load into a database in progress: what `sync_to_database` runs, to follow it live.

    Usage::

        async with open_database_sync(client, url, campaign_code="C1") as load:
            show(load.stats)            # live counters of the sync, as it runs
            done = await load.run()     # a DatabaseLoad

    `run` loads the calls new since the saved state, each window's rows committed with the
    state past that window (`commit_window`); closing rolls back what is not committed and
    closes the connection (after a load running in a worker thread is done).

    Args:
        sync: The sync, its state kept by a `DatabaseStateStore` of ``database``.
        database: The open database (`open_database_sync` opens it).

    Attributes:
        loaded: Calls written so far (inserted or updated).
        without_trans_id: Calls skipped so far for want of a ``trans_id``.

    .. versionadded:: Unreleased
    """

    def __init__(self, sync: CallSync, database: Database):
        self._sync = sync
        self._database = database
        # The rows of the open transaction not sent yet, by trans_id: one INSERT ... ON
        # CONFLICT may not touch a row twice, and the last read of a call is the one kept.
        self._rows: dict[str | None, CallRow] = {}
        self.loaded = 0
        self.without_trans_id = 0

    @property
    def stats(self) -> IterationStats:
        """The sync's live counters (``stats.yielded``: calls read so far)."""
        return self._sync.stats

    @property
    def windows(self) -> Sequence[tuple[int, int]]:
        """The planned windows (computed as read); ``stats.windows_done`` of them are done."""
        return self._sync.windows

    async def run(self) -> DatabaseLoad:
        """Load every call of the sync, committing each window with its state.

        Raises:
            DatabaseError: The database refuses a load; the window being loaded is rolled
                back (when the load is closed).
            VBotError: As for `VBotClient.sync`; committed windows stay committed.
        """
        sync = self._sync
        # Straight from the decoded pages: each row encoded for the driver as it is, no
        # CallRecord built. A page never spans two windows, so committing between pages
        # commits whole windows, as between records.
        async for page in row_pages(sync):
            if sync.committable:  # the calls before this page end a window
                await self.commit_window()
            self._add(page)
            if len(self._rows) >= BATCH_ROWS:
                await self._flush()
        await self.commit_window()
        database = self._database
        return DatabaseLoad(
            self.loaded, self.without_trans_id, len(sync.windows), database.table, str(database.url)
        )

    async def commit_window(self) -> None:
        """Commit the rows of the windows read in full, and the state past them, in one
        transaction: the rows go into the open transaction, then `CallSync.commit` saves the
        state through the `DatabaseStateStore`, which commits both (a no-op if no window was
        completed since the last commit)."""
        await self._flush()
        await self._sync.commit()

    async def aclose(self) -> None:
        """Stop the sync, roll back what is not committed, and close the connection."""
        try:
            await self._sync.aclose()
        finally:
            await asyncio.to_thread(self._database.finish)

    async def __aenter__(self) -> DatabaseSync:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _add(self, page: Sequence[CallRow]) -> None:
        """Hold the rows of ``page`` for the next `_flush`; count those without a key."""
        keys = [row.trans_id for row in page]
        rows = self._rows
        rows.update(zip(keys, page, strict=True))
        # An empty trans_id is no key either: loaded, it would merge calls.
        for missing in (None, ""):
            if missing in rows:
                del rows[missing]
                self.without_trans_id += keys.count(missing)

    async def _flush(self) -> None:
        """Send the rows held into the open transaction (off the event loop)."""
        rows, self._rows = list(self._rows.values()), {}
        if rows:
            await asyncio.to_thread(self._database.upsert, RECORD_COLUMNS, rows)
            self.loaded += len(rows)


@contextlib.asynccontextmanager
async def open_database_sync(
    client: VBotClient,
    url: str,
    filter: CallFilter | None = None,
    *,
    table: str = "vbot_calls",
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    settle: dt.timedelta = DEFAULT_SETTLE,
    window: dt.timedelta = DEFAULT_WINDOW,
    reset: bool = False,
    page_size: int | None = None,
    concurrency: int | None = None,
    deadline: float | None = None,
    **filters: Any,
) -> AsyncIterator[DatabaseSync]:
    """Open the database and the sync (the state read, the windows planned; no request is
    sent yet), as a `DatabaseSync` to `~DatabaseSync.run`; closed on leaving the block.

    The arguments and errors are those of `sync_to_database`.

    .. versionadded:: Unreleased
    """
    target = parse_database_url(url)
    database = await asyncio.to_thread(open_database, target, table, RECORD_COLUMNS)
    try:
        sync = client.sync(
            DatabaseStateStore(database),
            filter,
            lookback=lookback,
            settle=settle,
            window=window,
            reset=reset,
            page_size=page_size,
            concurrency=concurrency,
            deadline=deadline,
            **filters,
        )
    except BaseException:
        await asyncio.to_thread(database.finish)
        raise
    async with DatabaseSync(sync, database) as load:
        yield load


async def sync_to_database(
    client: VBotClient,
    url: str,
    filter: CallFilter | None = None,
    *,
    table: str = "vbot_calls",
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    settle: dt.timedelta = DEFAULT_SETTLE,
    window: dt.timedelta = DEFAULT_WINDOW,
    reset: bool = False,
    page_size: int | None = None,
    concurrency: int | None = None,
    deadline: float | None = None,
    **filters: Any,
) -> DatabaseLoad:
    """Load the calls new since the last run into a table of ``url``, each exactly once.

    Usage::

        async with VBotClient(token) as client:
            done = await sync_to_database(client, "postgresql://etl@db/calls", campaign_code="C1")

    The run is `VBotClient.sync` with its state in the table ``<table>_sync_state`` of the
    same database (one row per set of criteria), and each window's rows committed in the
    transaction that moves the state past it. The calls table (created if missing) has
    ``trans_id`` as primary key and typed columns (see the README, "Loading into a
    database"); a call loaded again updates its row; a field the table lacks becomes a new
    nullable column. A call without ``trans_id`` is skipped and counted in the result.
    To follow the load as it runs, use `open_database_sync` instead.

    Args:
        client: An open client.
        url: ``postgresql://...``, ``duckdb:///PATH``, ``sqlite:///PATH``, or a path ending
            in ``.duckdb``, ``.db`` or ``.sqlite``.
        filter, lookback, settle, window, reset, page_size, concurrency, deadline, filters:
            As for `VBotClient.sync`; ``reset`` ignores the state saved in the database.
        table: The calls table.

    Returns:
        What was loaded.

    Raises:
        ValueError: ``url`` is not a database URL (before anything is opened).
        DatabaseError: The driver is missing (``pip install 'vbot_cdr[db]'``), or the
            database cannot be reached or refuses a load; the window being loaded is rolled
            back.
        StateError, VBotError: As for `VBotClient.sync`; committed windows stay committed.

    .. versionadded:: 0.1
    """
    async with open_database_sync(
        client,
        url,
        filter,
        table=table,
        lookback=lookback,
        settle=settle,
        window=window,
        reset=reset,
        page_size=page_size,
        concurrency=concurrency,
        deadline=deadline,
        **filters,
    ) as load:
        return await load.run()
