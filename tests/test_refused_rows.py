"""A call the database cannot store (U+0000 in PostgreSQL's text or jsonb, a constraint) fails
alone: the receiver still commits and acknowledges the calls of its group, answers the bad
one 422 (so that its sender stops, instead of retrying it into every group it joins), and the
pull stops at a `DatabaseError` naming the call and the column, never the value.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests import test_sinks
from tests.test_sinks import query
from tests.test_webhooks import AUTH, LOG, calls, pull, receiving
from vbot_cdr import CallEvent, CallRecord, DatabaseError, WebhookSink, parse_webhook
from vbot_cdr.testing import FakeVBotServer

database = test_sinks.database
postgres_database = test_sinks.postgres_database
postgres_server = test_sinks.postgres_server

#: A value PostgreSQL's text cannot hold; the tests check that no message quotes it.
NUL_NAME = "Lan\x00SECRET-VALUE"


def body(trans_id: str, **fields: Any) -> bytes:
    """An ``AUTO_CALL_COMPLETE`` body of the call ``trans_id`` (``fields`` replacing LOG's)."""
    return orjson.dumps({"autoCallLog": {**LOG, "transId": trans_id, **fields}})


def record(trans_id: str, **fields: Any) -> CallRecord:
    event = parse_webhook(body(trans_id, **fields))
    assert isinstance(event, CallEvent)
    return event.record


def stored(url: str) -> list[str]:
    return sorted(key for (key,) in query(url, "SELECT trans_id FROM vbot_calls"))


async def test_the_calls_refused_fail_alone_not_their_group(database: str) -> None:
    """One group of five calls (stored at once, before the writer runs), one with U+0000 in a
    text column, one against a constraint of the table: the others are committed once, each
    call refused gets its own `DatabaseError` (``refused``), nothing else is written. Only
    PostgreSQL refuses the U+0000; SQLite and DuckDB store it as it is."""
    query(
        database,
        "CREATE TABLE vbot_calls (trans_id text PRIMARY KEY, phone text CHECK (phone <> '000'))",
    )
    sink = WebhookSink(database)
    await sink.open()
    group = [
        record("T0"),
        record("T1", memberName=NUL_NAME),
        record("T2"),
        record("T3", phone="000"),
        record("T4"),
    ]
    try:
        results = await asyncio.gather(*map(sink.store, group), return_exceptions=True)
    finally:
        await sink.close()
    constraint = results[3]
    assert isinstance(constraint, DatabaseError)
    assert constraint.refused
    committed = ["T0", "T2", "T4"]
    if database.startswith("postgresql"):
        nul = results[1]
        assert isinstance(nul, DatabaseError)
        assert (nul.refused, nul.trans_id, nul.column) == (True, "T1", "member_name")
        assert "U+0000" in str(nul)
        assert "SECRET-VALUE" not in str(nul)
    else:
        committed.insert(1, "T1")
        assert query(database, "SELECT member_name FROM vbot_calls WHERE trans_id = 'T1'") == [
            (NUL_NAME,)
        ]
    assert [results[int(key[1])] for key in committed] == [False] * len(committed)
    assert stored(database) == committed
    assert (sink.stats.stored, sink.stats.duplicates) == (len(committed), 0)
    # The group's transaction failed: its calls were committed apart, the refused ones alone.
    assert sink.commits > 1


async def test_over_http_the_refused_call_is_422_and_the_others_200(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """32 concurrent posts, one whose metaData holds U+0000: 31 are 200 and stored once, the
    bad one 422 naming its trans_id and column but not the value, logged as an error and
    counted as ``unstorable``; sent again it is 422 again, and nothing of it is ever written.
    A good call sent again is a 200 duplicate."""
    url = postgres_database
    sink = WebhookSink(url)
    await sink.open()
    bodies = [body(f"T{i}") for i in range(32)]
    bodies[7] = body("T7", metaData='{"ref": "SECRET-VALUE\\u0000"}')
    async with receiving(sink) as base, aiohttp.ClientSession(headers=AUTH) as session:

        async def send(data: bytes) -> tuple[int, str]:
            async with session.post(base + "/", data=data) as answer:
                return answer.status, await answer.text()

        with caplog.at_level(logging.ERROR, logger="vbot_cdr"):
            answers = await asyncio.gather(*map(send, bodies))
            again = await send(bodies[7])
        assert [status for status, _ in answers] == [422 if i == 7 else 200 for i in range(32)]
        for status, text in (answers[7], again):
            assert status == 422
            assert "T7" in text
            assert "meta_data" in text
            assert "SECRET-VALUE" not in text
            assert "postgresql" not in text  # nor the database's address
        assert await send(bodies[0]) == (200, "duplicate\n")
    assert stored(url) == sorted(f"T{i}" for i in range(32) if i != 7)
    assert (sink.stats.stored, sink.stats.duplicates) == (31, 1)
    assert dict(sink.stats.refused) == {"unstorable": 2}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("T7" in line and "meta_data" in line for line in errors)
    assert not any("SECRET-VALUE" in line for line in errors)


@pytest.mark.parametrize("column", ["name", "call_collected_data"])
async def test_a_pull_of_a_call_with_nul_is_a_typed_error_in_postgresql_only(
    database: str, column: str
) -> None:
    """The pull of a call with U+0000 in a text column, or in a string of a JSON one:
    PostgreSQL refuses it with a `DatabaseError` naming the call and the column (not the
    value), committing nothing of its window; SQLite and DuckDB store it as it is."""
    served = calls(3)
    bad = served[1]
    if column == "name":
        bad["name"] = NUL_NAME
    else:
        bad["call_collected_data"] = [
            {"cfkey": "k", "cfname": "n", "cfvalue": NUL_NAME, "description": "d"}
        ]
    async with FakeVBotServer(records=served) as fake:
        if not database.startswith("postgresql"):
            assert await pull(fake, database) == 3
            (found,) = query(
                database, f"SELECT {column} FROM vbot_calls WHERE trans_id = '{bad['trans_id']}'"
            )
            value = found[0] if column == "name" else orjson.loads(found[0])[0]["cfvalue"]
            assert value == NUL_NAME
            return
        with pytest.raises(DatabaseError) as info:
            await pull(fake, database)
    error = info.value
    assert (error.refused, error.trans_id, error.column) == (True, bad["trans_id"], column)
    assert "SECRET-VALUE" not in str(error)
    assert f"cannot load call {bad['trans_id']}" in str(error)
    assert stored(database) == []


async def test_an_other_error_in_a_part_fails_only_the_calls_not_yet_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused group is committed in parts; one part fails with an error that is not a
    `DatabaseError` (a driver's AttributeError, injected into the upsert): its calls get that
    error, the calls of the parts committed before it stay committed and get their answer,
    the refused one its `DatabaseError`. The next call opens the database again."""
    url = f"sqlite:///{tmp_path}/calls.db"
    query(
        url,
        "CREATE TABLE vbot_calls (trans_id text PRIMARY KEY, phone text CHECK (phone <> '000'))",
    )
    sink = WebhookSink(url)
    await sink.open()
    backend = type(sink._database)
    upsert = backend.upsert
    broken = {"T0", "T1", "T2"}

    def failing(self: Any, columns: Any, records: Any, *, pushed: bool = False) -> None:
        if {r.trans_id for r in records} == broken:
            raise AttributeError("'NoneType' object has no attribute 'execute'")
        upsert(self, columns, records, pushed=pushed)

    monkeypatch.setattr(backend, "upsert", failing)
    # One group (stored at once, before the writer runs), refused for T4: its parts are
    # committed apart, and the part holding T0-T2 alone fails otherwise (the last one tried).
    group = [record(f"T{i}", **({"phone": "000"} if i == 4 else {})) for i in range(6)]
    try:
        results = await asyncio.gather(*map(sink.store, group), return_exceptions=True)
        assert [type(result).__name__ for result in results] == [
            "AttributeError", "AttributeError", "AttributeError", "bool", "DatabaseError", "bool"
        ]  # fmt: skip
        refused = results[4]
        assert isinstance(refused, DatabaseError)
        assert refused.refused
        assert (results[3], results[5]) == (False, False)
        assert stored(url) == ["T3", "T5"]
        assert (sink.stats.stored, sink.stats.duplicates) == (2, 0)
        # The failed calls, sent again (alone), are stored: not duplicates of anything.
        assert await sink.store(group[0]) is False
        assert await sink.store(group[3]) is True
    finally:
        await sink.close()
    assert stored(url) == ["T0", "T3", "T5"]
    assert (sink.stats.stored, sink.stats.duplicates) == (3, 1)
