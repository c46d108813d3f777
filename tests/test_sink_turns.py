"""Conversation turns into the databases: ``sync_conversations_to_database`` and
``vbot-cdr sync --to URL --conversations``, on SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import orjson

from tests.test_sinks import (  # noqa: F401 - fixtures
    LOOKBACK,
    SETTLE,
    WINDOW,
    Clock,
    calls_at,
    database,
    load,
    loaded_ids,
    postgres_database,
    postgres_server,
    query,
    served,
)
from tests._sync_worker import START
from vbot_cdr import CallFilter, VBotClient, sync_conversations_to_database
from vbot_cdr.testing import FakeVBotServer, make_conversation

TURNS = "vbot_conversation_turns"


async def load_turns(client: VBotClient, url: str, **options: Any) -> Any:
    timing = {"lookback": LOOKBACK, "settle": SETTLE, "window": WINDOW}
    timing = {name: dt.timedelta(seconds=value) for name, value in timing.items()}
    return await sync_conversations_to_database(
        client, url, CallFilter(start_date=START), **(timing | options)
    )


def expected_rows(server: FakeVBotServer, upper: int) -> set[tuple[str, int]]:
    """(trans_id, turn) of every call created before ``upper``: turn 0 for one without."""
    rows = set()
    for record in server.records:
        if record["create_at"] < upper:
            count = len(orjson.loads(make_conversation(record)))
            turns = range(1, count + 1) if count else [0]
            rows |= {(record["trans_id"], turn) for turn in turns}
    return rows


def turn_keys(url: str) -> list[tuple[str, int]]:
    return [(key, int(turn)) for key, turn in query(url, f"SELECT trans_id, turn FROM {TURNS} ORDER BY 1, 2")]


async def test_turns_backfill_the_calls_loaded_before_and_a_rerun_changes_nothing(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """Calls loaded without conversations; then turns: every call's, once; then again: none."""
    async with FakeVBotServer(count=150) as server:
        now = START + 150 * 37
        client = make_client(server, clock=Clock(now))
        await load(client, database)
        upper = now - SETTLE

        done = await load_turns(client, database)
        keys = turn_keys(database)
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_rows(server, upper)
        assert done.calls == len(served(server, upper)) == len(loaded_ids(database))
        assert done.turns == len(keys)
        assert done.without_conversation == sum(1 for _, turn in keys if turn == 0) > 0
        assert len(query(database, f"SELECT state FROM {TURNS}_sync_state")) == 1
        assert len(query(database, "SELECT state FROM vbot_calls_sync_state")) == 1

        again = await load_turns(make_client(server, clock=Clock(now)), database)
        assert (again.calls, again.turns) == (0, 0)
        assert sorted(turn_keys(database)) == sorted(keys)

        later = now + 2 * WINDOW  # the calls new since: theirs only, the lookback skipped
        newer = await load_turns(make_client(server, clock=Clock(later)), database)
        assert newer.calls == len(served(server, later - SETTLE)) - done.calls > 0
        keys = turn_keys(database)
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_rows(server, later - SETTLE)


async def test_turn_rows_hold_role_content_and_the_calls_time_and_follow_a_shorter_reload(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """The conversations command's columns, create_at a UTC timestamp; a reset reload of a
    conversation served shorter updates its turns and drops those past its end."""
    (record,) = calls_at("T", [START + 60], disposition="ANSWERED")
    turns = orjson.loads(make_conversation(record))
    assert len(turns) > 2
    async with FakeVBotServer(records=[record]) as fake:
        await load_turns(make_client(fake, clock=Clock(START + WINDOW)), database)
    rows = query(database, f"SELECT turn, role, content, create_at FROM {TURNS} ORDER BY turn")
    assert [(turn, role, content) for turn, role, content, _ in rows] == [
        (number, turn["speaker"], turn["text"]) for number, turn in enumerate(turns, start=1)
    ]
    for *_, created in rows:
        if isinstance(created, str):  # SQLite has no timestamp type: ISO 8601 text
            created = dt.datetime.fromisoformat(created)
        assert created == dt.datetime.fromtimestamp(START + 60, dt.timezone.utc)

    shorter = record | {"call_collected_data": []}
    async with FakeVBotServer(records=[shorter]) as fake:
        client = make_client(fake, clock=Clock(START + WINDOW))
        done = await load_turns(client, database, reset=True)
    expected = orjson.loads(make_conversation(shorter))
    assert done.turns == len(expected) < len(turns)
    assert turn_keys(database) == [(record["trans_id"], n) for n in range(1, len(expected) + 1)]
