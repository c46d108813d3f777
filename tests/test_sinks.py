"""Database sinks against real PostgreSQL, DuckDB and SQLite: every call exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import sqlite3
import sys
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
import pytest

from tests import _postgres, _sink_worker
from tests._cli import (  # noqa: F401 - clean_environment is an autouse fixture
    PATIENCE,
    SECRET,
    clean_environment,
    one_line,
    python_env,
    run,
    spawn,
)
from tests._sync_worker import START
from vbot_cdr import (
    APIError,
    CallError,
    CallFilter,
    DatabaseError,
    DatabaseSync,
    StateError,
    StateStore,
    VBotClient,
    open_database_sync,
    sync_conversations_to_database,
    sync_to_database,
)
from vbot_cdr._errors import ResponseFormatError
from vbot_cdr._models import TimeUnit, epoch_to_datetime
from vbot_cdr._sinks import DatabaseStateStore, parse_database_url
from vbot_cdr._sinks._backends import Database, _SQLite, open_database
from vbot_cdr._sinks._columns import RECORD_COLUMNS
from vbot_cdr._sinks._turns import TURN_TABLE_COLUMNS, TURNS_KEY
from vbot_cdr._sync import SyncState
from vbot_cdr._table import CALL_COLUMNS, table_row
from vbot_cdr.testing import FakeVBotServer, Fault, make_conversation
from vbot_cdr.testing._data import RecordGenerator

SPACING = 37  # seconds between generated records
LOOKBACK, SETTLE, WINDOW = 600, 120, 3600
UTC = dt.timezone.utc
PASSWORD = "Pw-never-shown-7f3a"


# -- databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server: CI's, else a throwaway cluster of our own."""
    started = _postgres.server()
    if started is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
    with started as url:
        yield url


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A new, empty database on the server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    yield urllib.parse.urlsplit(postgres_server)._replace(path=f"/{name}").geturl()
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


@pytest.fixture(params=["sqlite", "duckdb", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each kind, in each form a user may write."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/calls.db"  # four slashes: an absolute path
    if request.param == "duckdb":
        return str(tmp_path / "calls.duckdb")
    url: str = request.getfixturevalue("postgres_database")
    return url


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the database of ``url`` with its own driver (our code not involved)."""
    parsed = parse_database_url(url)
    if parsed.backend == "postgresql":
        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.execute(sql.encode())
            return cursor.fetchall() if cursor.description else []
    if parsed.backend == "duckdb":
        with duckdb.connect(parsed.target) as connection:
            return connection.execute(sql).fetchall()
    with contextlib.closing(sqlite3.connect(parsed.target, isolation_level=None)) as connection:
        return connection.execute(sql).fetchall()


def loaded_ids(url: str, table: str = "vbot_calls") -> list[str]:
    return [key for (key,) in query(url, f"SELECT trans_id FROM {table}")]


def saved_state(url: str, table: str = "vbot_calls") -> dict[str, Any]:
    (document,) = query(url, f"SELECT state FROM {table}_sync_state")
    state: dict[str, Any] = orjson.loads(document[0])
    return state


# -- servers and runs --------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __call__(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.seconds, UTC)


def calls_at(prefix: str, created: list[int], **fields: Any) -> list[dict[str, Any]]:
    """Calls created at ``created`` (with ``fields`` added), to write into the fake server."""
    generator = RecordGenerator(seed=11, id_prefix=prefix)
    return [generator.record(i, created=at) | fields for i, at in enumerate(created)]


def served(server: FakeVBotServer, upper: int) -> set[str]:
    """The trans_ids the server holds, created before ``upper``."""
    return {r["trans_id"] for r in server.records if r["create_at"] < upper}


async def load(client: VBotClient, url: str, **options: Any) -> Any:
    options = {"lookback": LOOKBACK, "settle": SETTLE, "window": WINDOW} | options
    options = {k: dt.timedelta(seconds=v) if isinstance(v, int) else v for k, v in options.items()}
    return await sync_to_database(client, url, CallFilter(start_date=START), **options)


@pytest.fixture
async def server() -> AsyncIterator[FakeVBotServer]:
    async with FakeVBotServer(count=400) as fake:
        yield fake


# -- exactly once ------------------------------------------------------------------------------


async def test_runs_with_new_and_late_calls_between_load_each_call_once(
    database: str, server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Run, write new and late calls (inside the lookback), run again: each call once."""
    clock = Clock(START + 400 * SPACING)
    client = make_client(server, clock=clock)
    first = await load(client, database)
    watermark = clock.seconds - SETTLE
    assert first.loaded == len(served(server, watermark)) > 0
    assert saved_state(database)["watermark"] == watermark

    clock.seconds += 2 * WINDOW + 77
    late = calls_at("LATE", [watermark - 1, watermark - 300, watermark - LOOKBACK])
    new = calls_at("NEW", list(range(watermark + 30, clock.seconds - SETTLE, 211)))
    server.add_records(late + new)
    second = await load(client, database)
    assert second.loaded == len(served(server, clock.seconds - SETTLE)) - first.loaded
    ids = loaded_ids(database)
    assert len(ids) == len(set(ids))
    assert set(ids) == served(server, clock.seconds - SETTLE)

    clock.seconds += 60
    assert (await load(client, database)).loaded == 0  # nothing new: the overlap is skipped
    assert sorted(loaded_ids(database)) == sorted(ids)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("point", ["before", "during", "after"])
async def test_killed_at_a_commit_then_rerun_has_each_call_once(
    database: str,
    point: str,
    server: FakeVBotServer,
    make_client: Callable[..., VBotClient],
) -> None:
    """SIGKILL before, during or after the 2nd window's COMMIT: rows match the state; rerun."""
    now = START + 400 * SPACING
    argv = [_sink_worker.__file__, server.base_url, server.token, database, str(now)]
    child = await asyncio.create_subprocess_exec(
        sys.executable, *argv, "--pause", point, "--nth", "2", stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    assert await child.stdout.readline() == b"ready\n"
    os.kill(child.pid, signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL

    # Whatever was committed is whole windows and the state past exactly them.
    watermark = saved_state(database)["watermark"]
    assert watermark == START + (2 if point == "after" else 1) * WINDOW
    assert sorted(loaded_ids(database)) == sorted(served(server, watermark))

    done = await load(make_client(server, clock=Clock(now)), database)
    ids = loaded_ids(database)
    assert len(ids) == len(set(ids))
    assert set(ids) == served(server, now - SETTLE)
    assert done.loaded == len(served(server, now - SETTLE)) - len(served(server, watermark))


async def test_a_call_loaded_again_updates_its_row(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """A reset reloads every call: rows are updated in place, none is added."""
    records = calls_at("C", list(range(START, START + 3 * WINDOW, 600)))
    async with FakeVBotServer(records=records) as first:
        await load(make_client(first, clock=Clock(START + 4 * WINDOW)), database)
    changed = [r | {"disposition": "CHANGED"} for r in records]
    async with FakeVBotServer(records=changed) as second:
        client = make_client(second, clock=Clock(START + 4 * WINDOW))
        assert (await load(client, database, reset=True)).loaded == len(records)
    rows = query(database, "SELECT trans_id, disposition FROM vbot_calls")
    assert sorted(rows) == sorted((r["trans_id"], "CHANGED") for r in records)


# -- columns -----------------------------------------------------------------------------------


async def test_columns_are_typed_with_times_as_timestamps(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """Scalars, member/hotline parts, JSON collected data, times as UTC timestamps."""
    (record,) = calls_at("T", [START + 60])
    async with FakeVBotServer(records=[record]) as fake:
        await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    (row,) = query(
        database,
        "SELECT duration, member_name, hotline_code, call_collected_data, create_at, "
        "is_record FROM vbot_calls",
    )
    duration, member, hotline, collected, created, is_record = row
    assert duration == record["duration"]
    assert member == record["member"]["name"]
    assert hotline == record["hotline"]["code"]
    if isinstance(collected, str):  # SQLite and DuckDB hand JSON back as text
        collected = orjson.loads(collected)
    assert [field["cfkey"] for field in collected] == [
        field["cfkey"] for field in record["call_collected_data"]
    ]
    expected = dt.datetime.fromtimestamp(START + 60, UTC)
    if isinstance(created, str):  # SQLite has no timestamp type: ISO 8601 text
        created = dt.datetime.fromisoformat(created)
    assert created == expected
    assert bool(is_record) == record["is_record"]


#: Epochs the database turns into timestamps: seconds, milliseconds (a fraction of a second,
#: before 1970), the 0 of a time that never came, and the last and first seconds a datetime
#: holds (years 9999 and 1).
EPOCHS = [
    START + 61,
    (START + 61) * 1000 + 7,
    (START + 61) * 1000,
    -100_000_000_500,
    -86_400,
    0,
    None,
    253_402_300_799_000,
    -62_135_596_800,
]


async def test_timestamp_columns_read_epochs_as_the_models_do(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """The database computes ``answer_at`` from the epoch exactly as `epoch_to_datetime`
    does: seconds or milliseconds by magnitude, to the first and last second of years 1 and
    9999, NULL for 0 and null."""
    records = calls_at("E", [START + 60] * len(EPOCHS))
    for record, epoch in zip(records, EPOCHS, strict=True):
        record["answer_at"] = epoch
    async with FakeVBotServer(records=records) as fake:
        await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    epoch_of = {record["trans_id"]: record["answer_at"] for record in records}
    rows = {
        epoch_of[key]: value
        for key, value in query(database, "SELECT trans_id, answer_at FROM vbot_calls")
    }

    def expected(epoch: int | None) -> dt.datetime | None:
        return epoch_to_datetime(epoch)

    def read(value: Any) -> Any:  # SQLite has no timestamp type: ISO 8601 text
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value

    assert {epoch: read(rows[epoch]) for epoch in EPOCHS} == {
        epoch: expected(epoch) for epoch in EPOCHS
    }
    if database.startswith("sqlite"):  # the text is what datetime.isoformat() writes
        assert {rows[epoch] for epoch in EPOCHS[:4]} == {
            value.isoformat() for epoch in EPOCHS[:4] if (value := expected(epoch))
        }


@pytest.mark.parametrize("epoch", [253_402_300_800_000, -62_135_596_801, 2**63 - 1])
async def test_a_time_no_datetime_can_hold_fails_the_load_as_every_output_does(
    database: str, make_client: Callable[..., VBotClient], epoch: int
) -> None:
    """An epoch beyond the years 1-9999 is refused with ResponseFormatError naming it, as the
    file outputs and dlt refuse it, not loaded as NULL; its window is not committed."""
    records = calls_at("R", [START + 60, START + 120])
    records[1]["end_call_at"] = epoch
    async with FakeVBotServer(records=records) as fake:
        with pytest.raises(ResponseFormatError, match=str(epoch)):
            await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    assert loaded_ids(database) == []


async def test_a_new_field_is_kept_in_the_extras_column(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """A field the server starts to send (one the models do not know) is kept, as sent, in
    the JSON column ``extras``; the table's shape does not change, older rows hold NULL."""
    old = calls_at("OLD", [START + 60, START + 120])
    new = calls_at("NEW", [START + WINDOW + 60], mood="positive", mood_score=42)
    async with FakeVBotServer(records=old) as fake:
        await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    async with FakeVBotServer(records=old + new) as fake:
        done = await load(make_client(fake, clock=Clock(START + 2 * WINDOW)), database)
    assert done.loaded == 1
    rows = query(database, "SELECT trans_id, extras FROM vbot_calls ORDER BY create_at")
    as_text = not database.startswith("postgresql")  # psycopg decodes jsonb itself

    def decoded(value: Any) -> Any:
        return orjson.loads(value) if as_text and isinstance(value, str) else value

    values = [(key, *map(decoded, rest)) for key, *rest in rows]
    assert values == [
        (old[0]["trans_id"], None),
        (old[1]["trans_id"], None),
        (new[0]["trans_id"], {"mood": "positive", "mood_score": 42}),
    ]
    assert [name for name, _ in table_columns(database)] == [c.name for c in CALL_COLUMNS]


def table_columns(url: str) -> list[tuple[str, str]]:
    """The calls table's columns and their types, as the database itself reports them."""
    if url.startswith("sqlite"):
        return [(row[1], row[2]) for row in query(url, "PRAGMA table_info(vbot_calls)")]
    rows = query(
        url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'vbot_calls' AND table_schema = current_schema() "
        "ORDER BY ordinal_position",
    )
    return [(name, kind) for name, kind in rows]


#: Each database's name of each kind of column, as it reports them.
REPORTED_TYPES: dict[str, dict[str, str]] = {
    "sqlite": {
        "text": "TEXT",
        "integer": "INTEGER",
        "float": "REAL",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMPTZ",
        "json": "JSON",
    },
    "duckdb": {
        "text": "VARCHAR",
        "integer": "BIGINT",
        "float": "DOUBLE",
        "bool": "BOOLEAN",
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "json": "JSON",
    },
    "postgresql": {
        "text": "text",
        "integer": "bigint",
        "float": "double precision",
        "bool": "boolean",
        "timestamp": "timestamp with time zone",
        "json": "jsonb",
    },
}


async def test_every_database_has_the_one_table_shape(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """The calls table of every database has the columns of CALL_COLUMNS, in order, each of
    its kind's type (codes as text, times as timestamps with a zone)."""
    async with FakeVBotServer(records=calls_at("S", [START + 60])) as fake:
        await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    types = REPORTED_TYPES[parse_database_url(database).backend]
    assert table_columns(database) == [(c.name, types[c.kind]) for c in CALL_COLUMNS]
    kinds = {c.name: c.kind for c in CALL_COLUMNS}
    codes = ["phone", "sip_code", "trans_id", "customer_uid", "hotline_phone_number"]
    assert {name: kinds[name] for name in codes} == dict.fromkeys(codes, "text")
    assert {kinds["create_at"], kinds["answer_at"], kinds["end_call_at"]} == {"timestamp"}
    ((phone,),) = query(database, "SELECT phone FROM vbot_calls")
    assert phone.startswith("0")


def stored_rows(url: str) -> dict[str, dict[str, Any]]:
    """The calls table's rows by trans_id, each value as `table_row` has it: JSON parsed,
    SQLite's ISO 8601 text a datetime and its 0/1 a bool (instants compare across zones)."""
    names = ", ".join(f'"{c.name}"' for c in CALL_COLUMNS)
    rows: dict[str, dict[str, Any]] = {}
    for values in query(url, f"SELECT {names} FROM vbot_calls"):
        row: dict[str, Any] = {}
        for column, value in zip(CALL_COLUMNS, values, strict=True):
            if value is not None and column.kind == "json" and isinstance(value, str):
                value = orjson.loads(value)
            elif value is not None and column.kind == "timestamp" and isinstance(value, str):
                value = dt.datetime.fromisoformat(value)
            elif value is not None and column.kind == "bool":
                value = bool(value)
            row[column.name] = value
        rows[row["trans_id"]] = row
    return rows


async def test_the_rows_loaded_are_the_typed_records_table_rows_in_every_dialect(
    database: str, any_server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """The load encodes each row straight from the decoded page; the table holds, for every
    call of every dialect, what `table_row` makes of the `CallRecord` that `iter_calls` gives
    for it (an independent path through the typed API), including a page the fast decoder
    refuses (a field the models do not know: its calls come as records, with extras)."""
    unit: Any = "s" if any_server.api == "v2" else "ms"
    beside = any_server.records[120]["create_at"]  # in the middle of a page
    odd = RecordGenerator(seed=3, id_prefix="ODD", time_unit=unit).record(0, created=beside)
    any_server.add_records([{**odd, "surprise": {"kept": [1, "two"]}}])
    since = CallFilter(start_date=dt.datetime.fromtimestamp(START, UTC))  # in either unit
    clock = Clock(START + 4 * WINDOW)  # past every call, settled
    done = await sync_to_database(make_client(any_server, clock=clock), database, since)
    async with make_client(any_server).iter_calls(since) as calls:
        typed = {record.trans_id: table_row(record, tz=UTC) async for record in calls}
    assert done.loaded == len(typed) == 251
    stored = stored_rows(database)
    assert stored == typed
    assert stored["ODD3-00000000"]["extras"] == {"surprise": {"kept": [1, "two"]}}
    assert sum(row["extras"] is not None for row in stored.values()) == 1


async def test_a_table_of_epochs_made_before_is_refused(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """A calls table whose times are integers (made by an older version) is refused with a
    message saying what to do, and nothing is loaded into it."""
    query(database, "CREATE TABLE vbot_calls (trans_id TEXT PRIMARY KEY, create_at BIGINT)")
    async with FakeVBotServer(records=calls_at("O", [START + 60])) as fake:
        with pytest.raises(DatabaseError, match=r"create_at as .*before 0\.2.*new table"):
            await load(make_client(fake, clock=Clock(START + WINDOW)), database)
    assert query(database, "SELECT count(*) FROM vbot_calls") == [(0,)]


async def test_a_table_of_fewer_columns_gains_the_missing_ones(
    database: str, server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A calls table with only some columns (an older version's) is completed, not refused."""
    await sync_to_database(
        make_client(server, clock=Clock(START)), database, CallFilter(start_date=START)
    )  # creates the tables; loads nothing
    query(database, "DROP TABLE vbot_calls")
    query(database, "CREATE TABLE vbot_calls (trans_id TEXT PRIMARY KEY, phone TEXT)")
    done = await load(make_client(server, clock=Clock(START + 2 * WINDOW)), database)
    assert done.loaded == len(served(server, START + 2 * WINDOW - SETTLE)) > 0
    ((durations,),) = query(database, "SELECT count(duration) FROM vbot_calls")
    assert durations == done.loaded


async def test_a_call_without_trans_id_is_counted_and_not_loaded(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """No key, no exactly-once: the call is left out, and the result says how many. An empty
    ``trans_id`` is no key either: two such calls are not merged into one row."""
    records = calls_at("K", [START + 60, START + 120, START + 180, START + 240])
    del records[0]["trans_id"]
    records[2]["trans_id"] = records[3]["trans_id"] = ""
    url = str(tmp_path / "calls.sqlite")
    async with FakeVBotServer(records=records) as fake:
        done = await load(make_client(fake, clock=Clock(START + WINDOW)), url)
    assert (done.loaded, done.without_trans_id) == (1, 3)
    assert loaded_ids(url) == [records[1]["trans_id"]]


class SlowSQLite(_SQLite):
    """SQLite whose batch load waits for the test, noting when it ends, closes and finishes."""

    def __init__(self, url: str):
        super().__init__(parse_database_url(url), "vbot_calls")
        self.loading, self.release, self.finishing = (threading.Event() for _ in range(3))
        self.order: list[str] = []

    def load(self, columns: Any, records: Any, *, pushed: bool = False) -> None:
        self.loading.set()
        self.release.wait(PATIENCE)
        self.order.append("load done")
        super().load(columns, records, pushed=pushed)

    def close(self) -> None:
        self.order.append("close")
        super().close()

    def finish(self) -> None:
        self.finishing.set()
        super().finish()


async def test_a_stopped_load_closes_the_connection_only_after_its_thread_is_done(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """Cancelled (by a signal) while a batch loads in a worker thread, the sink waits for
    that thread before closing the connection under it, and the batch is rolled back."""
    url = str(tmp_path / "calls.sqlite")
    database = SlowSQLite(url)
    database.prepare(RECORD_COLUMNS)
    async with FakeVBotServer(records=calls_at("K", [START + 60, START + 120])) as fake:
        client = make_client(fake, clock=Clock(START + WINDOW))
        sync = client.sync(DatabaseStateStore(database), CallFilter(start_date=START))

        async def run_load() -> None:
            async with DatabaseSync(sync, database) as loading:
                await loading.run()

        task = asyncio.create_task(run_load())
        await asyncio.to_thread(database.loading.wait, PATIENCE)
        task.cancel()
        await asyncio.to_thread(database.finishing.wait, PATIENCE)
        database.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert database.order == ["load done", "close"]
    assert loaded_ids(url) == []


async def test_open_database_sync_shows_the_load_as_it_runs(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """The live counters are the sync's own, from before the first request to the end;
    run gives what sync_to_database gives, and the rows are committed window by window."""
    created = [START + 60 + 500 * i for i in range(20)]
    async with FakeVBotServer(records=calls_at("L", created)) as fake:
        client = make_client(fake, clock=Clock(START + 3 * WINDOW))
        seconds = dt.timedelta(seconds=1)
        async with open_database_sync(
            client,
            database,
            CallFilter(start_date=START),
            lookback=LOOKBACK * seconds,
            settle=SETTLE * seconds,
            window=WINDOW * seconds,
        ) as running:
            stats = running.stats
            assert (stats.requests, stats.yielded, len(running.windows)) == (0, 0, 3)
            assert fake.requests == []
            done = await running.run()
            assert running.stats is stats
    assert stats.yielded == done.loaded == running.loaded == 20
    assert stats.windows_done == done.windows == 3
    assert done.table == "vbot_calls"
    assert sorted(loaded_ids(database)) == sorted(r["trans_id"] for r in fake.records)


# -- URLs and failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "backend", "target"),
    [
        ("postgresql://u:pw@db:5432/calls", "postgresql", "postgresql://u:pw@db:5432/calls"),
        ("postgres:///calls", "postgresql", "postgres:///calls"),
        ("duckdb:///calls.duckdb", "duckdb", "calls.duckdb"),
        ("duckdb:////var/calls.duckdb", "duckdb", "/var/calls.duckdb"),
        ("sqlite:///calls.db", "sqlite", "calls.db"),
        ("calls.duckdb", "duckdb", "calls.duckdb"),
        ("calls.db", "sqlite", "calls.db"),
        ("/data/calls.sqlite", "sqlite", "/data/calls.sqlite"),
    ],
    ids=lambda value: str(value),
)
def test_url_forms(url: str, backend: str, target: str) -> None:
    parsed = parse_database_url(url)
    assert (parsed.backend, parsed.target) == (backend, target)


def test_a_db_file_that_is_duckdb_is_read_as_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    duckdb.connect(str(path)).close()
    assert parse_database_url(str(path)).backend == "duckdb"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://etl:{PASSWORD}@db/calls",
        f"postgresql://etl@db/calls?password={PASSWORD}&sslmode=require",
        f"postgresql://etl:{PASSWORD.replace('-', '%2D')}@db/calls",
    ],
)
def test_the_password_is_masked_in_str_and_repr(url: str) -> None:
    parsed = parse_database_url(url)
    for shown in (str(parsed), repr(parsed), parsed.redact(f"failed: {url}")):
        assert PASSWORD not in shown
        assert PASSWORD.replace("-", "%2D") not in shown
        assert "***" in shown


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://etl:{PASSWORD}@db/calls",
        "calls.txt",
        "duckdb://",
        "sqlite:///",
        # Mistyped: urllib sees no password in them, the message still must not show it.
        f"postgresql:/etl:{PASSWORD}@db/calls",
        f"etl:{PASSWORD}@db/calls",
        f"duckdb://etl:{PASSWORD}@db",
    ],
)
async def test_cli_refuses_bad_urls_with_status_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("sync", "--demo", "--to", url, "--start-date", str(START)) == 2
    said = one_line(capsys.readouterr().err)
    assert "error:" in said
    assert PASSWORD not in said


@pytest.mark.parametrize("option", [["--format", "csv"], ["--excel"], ["--out", "calls.jsonl"]])
async def test_cli_refuses_file_options_with_to(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An option for files is an error with ``--to``, not silently ignored."""
    url = str(tmp_path / "calls.db")
    assert await run("sync", "--demo", "--to", url, *option, "--start-date", str(START)) == 2
    assert "--to loads the calls into the database" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "calls.db").exists()


async def test_cli_says_an_unreachable_database_in_one_line_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket_that_refuses() as port:
        urls = [
            f"postgresql://etl:{PASSWORD}@127.0.0.1:{port}/calls",
            str(tmp_path / "no-such-dir" / "calls.duckdb"),
            f"sqlite:///{tmp_path}/no-such-dir/calls.db",
        ]
        for url in urls:
            assert await run("sync", "--demo", "--to", url, "--start-date", str(START)) == 1
            said = one_line(capsys.readouterr().err)
            assert said.startswith("vbot-cdr: sync failed: cannot ")
            assert PASSWORD not in said


async def test_a_refused_password_is_not_shown(postgres_server: str) -> None:
    """The server's refusal is reported; the password the URL held is not."""
    server = psycopg.conninfo.conninfo_to_dict(postgres_server)
    url = f"postgresql://no_such_role:{PASSWORD}@{server['host']}:{server['port']}/postgres"
    async with (
        FakeVBotServer(count=1) as fake,
        VBotClient(fake.token, base_url=fake.base_url) as client,
    ):
        with pytest.raises(DatabaseError) as caught:
            await sync_to_database(client, url, CallFilter(start_date=START))
    assert PASSWORD not in str(caught.value)
    assert "no_such_role" in str(caught.value)


@contextlib.contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A loopback port nothing listens on (held bound, so nothing else takes it)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


async def test_cli_sync_to_a_database_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo synced into SQLite: the second run loads nothing new."""
    url = str(tmp_path / "calls.db")
    argv = ["sync", "--demo", "--demo-records", "300", "--to", url, "--start-date", "2020-01-01"]
    assert await run(*argv, "--window", "30d") == 0
    assert "synced 300 calls into vbot_calls" in one_line(capsys.readouterr().err)
    assert await run(*argv, "--window", "30d") == 0
    assert "synced 0 calls" in one_line(capsys.readouterr().err)
    assert len(set(loaded_ids(url))) == len(loaded_ids(url)) == 300


async def test_cli_sync_to_a_database_writes_the_summary(tmp_path: Path) -> None:
    """``sync --to`` fills ``--summary`` as the other commands do: calls, requests, windows,
    and the table it wrote."""
    url = str(tmp_path / "calls.db")
    summary = tmp_path / "summary.json"
    argv = ["sync", "--demo", "--demo-records", "300", "--to", url, "--start-date", "2020-01-01"]
    assert await run(*argv, "--window", "30d", "--summary", str(summary), "--quiet") == 0
    written = json.loads(summary.read_text())
    assert written["records"] == written["counts"]["written"] == 300
    assert written["requests"] > 0
    assert written["pages"] > 0
    assert written["windows"]["planned"] == written["windows"]["done"] > 0
    assert written["tables"] == [f"{url} vbot_calls"]
    assert written["complete"] is True


# -- conversation turns ------------------------------------------------------------------------

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
    return [
        (key, int(turn))
        for key, turn in query(url, f"SELECT trans_id, turn FROM {TURNS} ORDER BY 1, 2")
    ]


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


async def test_turns_stop_at_a_call_whose_conversation_fails_and_resume_exactly_once(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """One call's conversation answers 500 every time: the load ends in a `CallError` naming
    it, after the retries; the window before it stays committed and nothing of its own
    window is. Once the fault is cleared, a re-run loads the rest, each call's turns once,
    and does not ask again for the conversations already loaded."""
    created = [START + 60, START + 120, START + WINDOW + 600, START + WINDOW + 900]
    created += [START + 2 * WINDOW + 600, START + 2 * WINDOW + 900]
    records = calls_at("F", created, disposition="ANSWERED")
    broken = records[3]["trans_id"]
    now = START + 3 * WINDOW + 2 * SETTLE
    async with FakeVBotServer(records=records) as server:
        server.fail_conversation(broken, Fault(status=500))
        with pytest.raises(CallError) as raised:
            await load_turns(make_client(server, clock=Clock(now)), database)
        assert raised.value.trans_id == broken
        assert isinstance(raised.value.error, APIError)
        assert broken in str(raised.value)
        asked = [r.params.get("trans_id") for r in server.requests]
        assert asked.count(broken) > 1  # the 5xx was retried before giving up
        first_window = expected_rows(server, START + WINDOW)
        assert first_window
        assert set(turn_keys(database)) == first_window

        server.fail_conversation(broken, None)
        server.reset_counters()
        done = await load_turns(make_client(server, clock=Clock(now)), database)
        assert done.calls == 4
        keys = turn_keys(database)
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_rows(server, now)
        again = [r.params.get("trans_id") for r in server.requests]
        assert sorted(t for t in again if t) == sorted(r["trans_id"] for r in records[2:])


def test_duckdb_bulk_turns_write_the_rows_of_the_per_row_statements(tmp_path: Path) -> None:
    """DuckDB's turns go through one ``read_json`` (its ``executemany`` costs ms a row): the
    table it leaves, after a load and a reload with shorter conversations, is row for row
    the one the generic per-row statements leave (quotes, newlines, Vietnamese, NULLs, turn
    0, epochs in seconds and milliseconds, an epoch 0)."""
    first = [
        ("A'1", 1, "bot", 'Xin chào, "anh" ơi\nlượt 1', START + 1),
        ("A'1", 2, "user", "{\"not\": \"json\"}", START + 1),
        ("A'1", 3, None, None, START + 1),
        ("B", 0, None, None, (START + 2) * 1000 + 7),
        ("C", 1, "bot", "", 0),
        ("C", 2, "user", "x" * 5000, None),
    ]
    second = [("A'1", 1, "bot", "shorter", START + 1), ("C", 1, "bot", "again", START + 3)]

    def load(url: str, merge: Any, delete: Any) -> list[tuple[Any, ...]]:
        database = open_database(
            parse_database_url(url), TURNS, TURN_TABLE_COLUMNS, TURNS_KEY
        )
        try:
            for rows in (first, second):
                merge(database, TURN_TABLE_COLUMNS, TURNS_KEY, rows)
                ends = {}
                for trans_id, turn, *_ in rows:
                    ends[trans_id] = max(turn, ends.get(trans_id, 0))
                delete(database, TURN_TABLE_COLUMNS, TURNS_KEY, list(ends.items()))
                database.commit()
        finally:
            database.finish()
        return query(url, f"SELECT * FROM {TURNS} ORDER BY trans_id, turn")

    bulk = load(
        str(tmp_path / "bulk.duckdb"),
        lambda database, *rest: database.replace_rows(*rest),
        lambda database, *rest: database.delete_past(*rest),
    )
    per_row = load(str(tmp_path / "rows.duckdb"), Database.merge_rows, Database.delete_past)
    assert bulk == per_row
    assert [row[:2] for row in bulk] == [("A'1", 1), ("B", 0), ("C", 1)]
    assert bulk[0][2:4] == ("bot", "shorter")
    assert bulk[1][4] == dt.datetime.fromtimestamp(START + 2.007, UTC)
    assert bulk[2][3:] == ("again", dt.datetime.fromtimestamp(START + 3, UTC))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_cli_turns_load_killed_mid_window_then_rerun_has_each_turn_once(
    database: str,
) -> None:
    """``sync --to URL --conversations`` as a real process, killed by SIGKILL while a
    conversation of its third window hangs: the turns table holds exactly the turns of the
    two committed windows and the state stands past them; the re-run asks only the third
    window's conversations, and every turn is then in the table once."""
    hour = 3600
    created = [START + 60 * k for k in range(1, 4)]
    created += [START + hour + 60 * k for k in range(1, 4)]
    created += [START + 2 * hour + 60 * k for k in range(1, 5)]
    records = calls_at("K", created)
    third = {r["trans_id"] for r in records[6:]}
    end = START + 3 * hour
    async with FakeVBotServer(records=records, token=SECRET) as server:
        server.fail_conversation(records[7]["trans_id"], Fault(hang=True))
        env = python_env() | {"VBOT_BASE_URL": server.base_url, "VBOT_TOKEN": SECRET}
        argv = ["sync", "--to", database, "--conversations", "--window", "1h", "-q"]
        argv += ["--start-date", str(START), "--end-date", str(end)]
        child = await spawn(*argv, env=env)
        # Window 3's conversations are asked only once windows 1 and 2 are committed, their
        # turns with the state past them: all ten asked means one hangs, mid-window.
        await asyncio.wait_for(
            server.wait_for_requests(len(records), endpoint="getBotConversation"), PATIENCE
        )
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.communicate(), PATIENCE)
        assert child.returncode == -signal.SIGKILL

        assert saved_state(database, TURNS)["watermark"] == START + 2 * hour
        keys = turn_keys(database)
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_rows(server, START + 2 * hour)
        assert sorted(loaded_ids(database)) == sorted(r["trans_id"] for r in records)

        server.fail_conversation(records[7]["trans_id"], None)
        server.reset_counters()
        rerun = await spawn(*argv, env=env)
        _, stderr = await asyncio.wait_for(rerun.communicate(), PATIENCE)
        assert rerun.returncode == 0, stderr
        asked = [r.params["trans_id"] for r in server.requests if "trans_id" in r.params]
        assert sorted(asked) == sorted(third)
        keys = turn_keys(database)
        assert len(keys) == len(set(keys))
        assert set(keys) == expected_rows(server, end)
        assert saved_state(database, TURNS)["watermark"] == end


async def test_cli_sync_with_conversations_backfills_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --to`` without, then with ``--conversations``: every call's turns, once; again:
    nothing new. ``--conversations`` without ``--to`` is refused."""
    url = str(tmp_path / "calls.db")
    argv = ["sync", "--demo", "--demo-records", "120", "--to", url, "--start-date", "2020-01-01"]
    assert await run(*argv, "--window", "30d") == 0
    assert query(url, "SELECT name FROM sqlite_master WHERE name = 'vbot_conversation_turns'") == []
    capsys.readouterr()
    assert await run(*argv, "--window", "30d", "--conversations") == 0
    calls_line, turns_line = capsys.readouterr().err.splitlines()
    assert "synced 0 calls into vbot_calls" in calls_line
    assert "synced the conversations of 120 calls" in turns_line
    calls = {key for key, _ in turn_keys(url)}
    assert calls == set(loaded_ids(url))
    rows = turn_keys(url)
    assert await run(*argv, "--window", "30d", "--conversations") == 0
    assert "synced the conversations of 0 calls (0 rows" in capsys.readouterr().err
    assert turn_keys(url) == rows

    state = str(tmp_path / "state.json")
    out = str(tmp_path / "out.jsonl")
    refused = ["sync", "--demo", "--state", state, "--out", out, "--conversations"]
    assert await run(*refused, "--start-date", "2020-01-01") == 2
    assert "--conversations loads into the database of --to" in one_line(capsys.readouterr().err)


# -- the state-store seam ----------------------------------------------------------------------


class MemoryStore:
    """A `StateStore` in a list: each save is kept, in order."""

    def __init__(self) -> None:
        self.saved: list[SyncState] = []

    def load(self, *, purpose: Mapping[str, str], now: int) -> SyncState | None:
        return self.saved[-1] if self.saved else None

    def save(self, state: SyncState, *, purpose: Mapping[str, str], time_unit: TimeUnit) -> None:
        self.saved.append(state)


async def test_sync_keeps_its_state_in_any_store(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """client.sync takes a StateStore: saved once per window, read back by the next run."""
    store = MemoryStore()
    assert isinstance(store, StateStore)
    clock = Clock(START + 400 * SPACING)
    client = make_client(server, clock=clock)
    first: list[str] = []
    sync = client.sync(store, CallFilter(start_date=START), settle=dt.timedelta(seconds=SETTLE))
    assert sync.path is None
    async with sync:
        async for record in sync:
            if sync.committable:
                await sync.commit()
            first.append(str(record.trans_id))
    assert [state.watermark for state in store.saved] == [w[1] for w in sync.windows]
    clock.seconds += WINDOW
    again = client.sync(store, CallFilter(start_date=START), settle=dt.timedelta(seconds=SETTLE))
    async with again:
        second = [str(record.trans_id) async for record in again]
    assert set(first) | set(second) == served(server, clock.seconds - SETTLE)
    assert not set(first) & set(second)


async def test_a_first_load_without_a_start_date_is_refused_before_any_request(
    tmp_path: Path, make_client: Callable[..., VBotClient]
) -> None:
    """No saved state and no start_date: StateError on opening, nothing asked of the server,
    the database closed; a bad URL is a ValueError before anything is opened."""
    url = str(tmp_path / "calls.sqlite")
    async with FakeVBotServer(records=calls_at("S", [START + 60])) as fake:
        client = make_client(fake, clock=Clock(START + WINDOW))
        with pytest.raises(StateError, match="give the filter a start_date"):
            async with open_database_sync(client, url):
                pass
        with pytest.raises(ValueError, match="database URL"):
            async with open_database_sync(client, "mysql://db/calls"):
                pass
        assert fake.requests == []
        done = await load(client, url)
    assert done.loaded == 1  # the refused opening left the database usable


async def test_an_int_beyond_64_bits_is_refused_alike_then_a_rerun_loads_each_call_once(
    database: str, make_client: Callable[..., VBotClient]
) -> None:
    """duration 2**64 - 1 in the 2nd window: every sink stops at the same typed error, having
    committed no more than the 1st window; once the server is fixed, the rerun loads every
    call once."""
    records = calls_at("C", list(range(START, START + 3 * WINDOW, 600)))
    bad = next(r for r in records if r["create_at"] >= START + WINDOW)
    clock = Clock(START + 4 * WINDOW)
    async with FakeVBotServer(
        records=[r | {"duration": 2**64 - 1} if r is bad else r for r in records]
    ) as hostile:
        with pytest.raises(ResponseFormatError, match="within 64 bits") as info:
            await load(make_client(hostile, clock=clock), database)
    assert str(info.value.field).endswith(".duration")
    first_window = {r["trans_id"] for r in records if r["create_at"] < START + WINDOW}
    assert set(loaded_ids(database)) <= first_window
    async with FakeVBotServer(records=records) as fixed:
        await load(make_client(fixed, clock=clock), database)
    ids = loaded_ids(database)
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["trans_id"] for r in records}
