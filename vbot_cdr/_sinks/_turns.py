"""``sync_conversations_to_database``: the turns of the calls' bot conversations, loaded
into ``vbot_conversation_turns`` exactly once, with a state of their own.

The load is a `VBotClient.sync` of its own (its state in ``<table>_sync_state``, beside the
calls' state but not shared with it): its calls are read window by window, each call's
conversation is fetched (`conversation_of`, at most the client's concurrency in flight) and
its turns upserted by ``(trans_id, turn)``, and a window's turns are committed with the state
past that window in one transaction, as the calls are. So turning it on after calls were
loaded without it backfills their conversations from ``start_date`` on, and a re-run loads
nothing again.

A call without a conversation (the server has none, or it has no turns) is one row with
``turn`` 0 and null ``role`` and ``content``: the state says its window is done, and the row
says the call was asked.

Why the calls are read from the API again rather than from the calls table: that costs a
page per ``page_size`` calls (about 1 % of the requests, a conversation being one request a
call), and it keeps the turns exactly once on their own. The calls table may be absent,
named otherwise, loaded with other filters, or behind (its state has not passed the window
yet): reading it, a window of turns would be complete only as far as another state says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any, Final

import attrs

from .._client import VBotClient
from .._config import DEFAULT_CONCURRENCY, DEFAULT_LOOKBACK, DEFAULT_SETTLE, DEFAULT_WINDOW
from .._conversations import CallConversation, conversation_of, turn_rows
from .._fanout import fan_out
from .._models import BotConversation, CallFilter, CallRecord
from ._backends import Database, open_database
from ._columns import Column
from ._load import BATCH_ROWS, DatabaseStateStore
from ._url import parse_database_url

__all__ = ["TURNS_KEY", "TURN_TABLE_COLUMNS", "TurnsLoad", "sync_conversations_to_database"]

#: The turns table's columns, in order: those of ``vbot-cdr conversations`` but ``created``
#: (``create_at`` is the call's time, a timestamp with its zone).
TURN_TABLE_COLUMNS: Final = (
    Column("trans_id", "text", "trans_id"),
    Column("turn", "integer", "turn"),
    Column("role", "text", "role"),
    Column("content", "text", "content"),
    Column("create_at", "timestamp", "create_at"),
)
#: The primary key of the turns table.
TURNS_KEY: Final = ("trans_id", "turn")


@attrs.frozen
class TurnsLoad:
    """What `sync_conversations_to_database` did.

    Attributes:
        calls: Calls whose conversation was loaded (their turns written).
        turns: Rows written (inserted or updated), a call without a conversation's one
            included.
        without_conversation: Calls the server has no conversation (or no turn) for.
        without_trans_id: Calls skipped because they have no ``trans_id`` to ask with.
        windows: The windows read.
        table: The turns table.
        database: The database URL, its password masked.

    .. versionadded:: Unreleased
    """

    calls: int
    turns: int
    without_conversation: int
    without_trans_id: int
    windows: int
    table: str
    database: str


class _TurnsLoader:
    """The turns of batches of calls, upserted into the open transaction."""

    def __init__(self, client: VBotClient, database: Database, width: int):
        self._database = database
        self._width = width
        self._fetch = partial(conversation_of, partial(_ask, client))
        self.calls = self.turns = self.without_conversation = 0

    async def load(self, calls: Sequence[CallRecord]) -> None:
        """Fetch the conversations of ``calls`` and upsert their turns (nothing committed).

        Raises:
            CallError: A conversation could not be fetched; nothing of this batch is
                committed.
            DatabaseError: The database refused.
        """
        rows: list[tuple[Any, ...]] = []
        last_turns: list[tuple[str, int]] = []
        async for item in fan_out(_once(calls), self._fetch, width=self._width):
            item_rows = _table_rows(item)
            rows.extend(item_rows)
            last_turns.append((item_rows[0][0], item_rows[-1][1]))
            self.calls += 1
            if item_rows[0][1] == 0:
                self.without_conversation += 1
        await asyncio.to_thread(self._write, rows, last_turns)
        self.turns += len(rows)

    def _write(
        self, rows: Sequence[tuple[Any, ...]], last_turns: Sequence[tuple[str, int]]
    ) -> None:
        database = self._database
        database.replace_rows(TURN_TABLE_COLUMNS, TURNS_KEY, rows)
        # A conversation served shorter than when it was loaded loses the turns past its end.
        database.delete_past(TURN_TABLE_COLUMNS, TURNS_KEY, last_turns)


async def _ask(client: VBotClient, trans_id: str, bot_id: str | None) -> BotConversation:
    return await client.get_bot_conversation(trans_id, bot_id=bot_id)


async def _once(calls: Sequence[CallRecord]) -> AsyncIterator[Sequence[CallRecord]]:
    yield calls


def _table_rows(item: CallConversation) -> list[tuple[Any, ...]]:
    """The driver's values of the turns of ``item`` (turn 0 for a call without one)."""
    return [
        (row["trans_id"], row["turn"] or 0, row["role"], row["content"], row["create_at"])
        for row in turn_rows(item)
    ]


async def sync_conversations_to_database(
    client: VBotClient,
    url: str,
    filter: CallFilter | None = None,
    *,
    table: str = "vbot_conversation_turns",
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    settle: dt.timedelta = DEFAULT_SETTLE,
    window: dt.timedelta = DEFAULT_WINDOW,
    reset: bool = False,
    page_size: int | None = None,
    concurrency: int | None = None,
    deadline: float | None = None,
    **filters: Any,
) -> TurnsLoad:
    """Load the conversation turns of the calls new since the last such run, each once.

    Usage::

        async with VBotClient(token) as client:
            await sync_to_database(client, url, start_date=start)                # the calls
            await sync_conversations_to_database(client, url, start_date=start)  # their turns

    A `VBotClient.sync` with its own state, in ``<table>_sync_state`` (so a first run
    backfills the calls from ``start_date`` on, whether or not they are loaded already); each
    call's ``getBotConversation`` is asked, at most ``concurrency`` at a time, and its turns
    upserted into ``table`` (created if missing) by ``(trans_id, turn)``; a window's turns
    are committed with the state past it. See the module for a call without a conversation.

    Args:
        client, url, filter, lookback, settle, window, reset, page_size, deadline, filters:
            As for `sync_to_database`.
        table: The turns table.
        concurrency: Most conversation requests in flight (``DEFAULT_CONCURRENCY``, 8, if
            ``None``).

    Returns:
        What was loaded.

    Raises:
        ValueError: ``url`` is not a database URL, or ``concurrency`` < 1 (before
            anything is opened).
        DatabaseError: As for `sync_to_database`; the window being loaded is rolled back.
        CallError: A call's conversation could not be fetched (not a 404) after the
            retries; committed windows stay committed.
        StateError, VBotError: As for `VBotClient.sync`.

    .. versionadded:: Unreleased
    """
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
    target = parse_database_url(url)
    database = await asyncio.to_thread(open_database, target, table, TURN_TABLE_COLUMNS, TURNS_KEY)
    try:
        sync = client.sync(
            DatabaseStateStore(database),
            filter,
            lookback=lookback,
            settle=settle,
            window=window,
            reset=reset,
            page_size=page_size,
            deadline=deadline,
            **filters,
        )
        try:
            loader = _TurnsLoader(client, database, concurrency)
            without_trans_id = 0
            calls: list[CallRecord] = []
            async for record in sync:
                if sync.committable:  # the calls before this one end a window
                    await loader.load(calls)
                    calls = []
                    await sync.commit()  # its turns and the state past it, together
                if not record.trans_id:
                    without_trans_id += 1
                    continue
                calls.append(record)
                if len(calls) >= BATCH_ROWS:  # into the open transaction: memory stays flat
                    await loader.load(calls)
                    calls = []
            await loader.load(calls)
            await sync.commit()
        finally:
            await sync.aclose()
    finally:
        await asyncio.to_thread(database.finish)
    return TurnsLoad(
        loader.calls,
        loader.turns,
        loader.without_conversation,
        without_trans_id,
        len(sync.windows),
        table,
        str(target),
    )
