"""``sync_to_database``: the calls new since the last run, loaded exactly once.

The sync's state lives in the database (`DatabaseStateStore`), and a window's rows and the
state past that window are committed in one transaction. A run killed at any instant leaves
the database as of its last commit: the rows of whole windows and the state that covers them
exactly. The next run starts at that state, and a call loaded again (by the lookback, or
because its window was rolled back) updates its row instead of adding one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from .._client import VBotClient
from .._config import DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from .._models import CallFilter, CallRecord, TimeUnit
from .._sync import CallSync, SyncState, decode_state, encode_state, fingerprint
from ._backends import Database, open_database
from ._columns import RECORD_COLUMNS
from ._url import parse_database_url

__all__ = ["DatabaseLoad", "DatabaseStateStore", "sync_to_database"]

#: Rows sent to the database at a time, inside a window's transaction (memory stays flat).
BATCH_ROWS: Final = 5_000


@attrs.frozen
class DatabaseStateStore:
    """A `StateStore` in ``<table>_sync_state``: one row per fingerprint of `made_for`.

    `save` writes the row and commits the transaction that already holds the window's rows.
    """

    database: Database

    def __str__(self) -> str:
        return f"{self.database.state_table} in {self.database.url}"

    def load(self, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
        """The state saved for ``purpose``, checked as a state file is."""
        document = self.database.read_state(fingerprint(purpose))
        if document is None:
            return None
        return decode_state(document, where=str(self), purpose=purpose, now=now)

    def save(self, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> None:
        """Save ``state`` and commit it with the rows loaded since the last save."""
        document = encode_state(state, purpose=purpose, time_unit=time_unit).decode()
        self.database.save_state(fingerprint(purpose), document)


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


class _Loader:
    """Rows in batches into the database's open transaction, off the event loop."""

    def __init__(self, database: Database):
        self._database = database
        self._records: list[CallRecord] = []
        self.loaded = 0
        self.without_trans_id = 0

    async def add(self, record: CallRecord) -> None:
        if not record.trans_id:  # an empty one is no key either: it would merge calls
            self.without_trans_id += 1
            return
        self._records.append(record)
        if len(self._records) >= BATCH_ROWS:
            await self.flush()

    async def flush(self) -> None:
        # Keyed by trans_id: one INSERT ... ON CONFLICT may not touch a row twice.
        records = list({record.trans_id: record for record in self._records}.values())
        self._records = []
        if records:
            await asyncio.to_thread(self._database.upsert, RECORD_COLUMNS, records)
            self.loaded += len(records)


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
    watch: Callable[[CallSync], object] | None = None,
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
    database"); a call
    loaded again updates its row; a field the table lacks becomes a new nullable column.
    A call without ``trans_id`` is skipped and counted in the result.

    Args:
        client: An open client.
        url: ``postgresql://...``, ``duckdb:///PATH``, ``sqlite:///PATH``, or a path ending
            in ``.duckdb``, ``.db`` or ``.sqlite``.
        filter, lookback, settle, window, reset, page_size, concurrency, deadline, filters:
            As for `VBotClient.sync`; ``reset`` ignores the state saved in the database.
        table: The calls table.
        watch: Called with the `CallSync` once it is made, before its first request, to
            follow the load as it runs (its ``stats`` and ``windows``).

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
        if watch is not None:
            watch(sync)
        loader = _Loader(database)
        try:
            async for record in sync:
                if sync.committable:  # the rows so far end a window: commit them with the state
                    await loader.flush()
                    await sync.commit()
                await loader.add(record)
            await loader.flush()
            await sync.commit()
        finally:
            await sync.aclose()
    finally:
        await asyncio.to_thread(database.finish)  # rolls back what is not committed
    return DatabaseLoad(
        loader.loaded, loader.without_trans_id, len(sync.windows), table, str(target)
    )
