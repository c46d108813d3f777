"""The dlt source: a real dlt pipeline into DuckDB against the fake server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests._sync_worker import START
from vbot_cdr import VBotClient
from vbot_cdr._dialects import Api
from vbot_cdr._models import epoch_to_datetime
from vbot_cdr._table import CALL_COLUMNS, table_row
from vbot_cdr.dlt import vbot_source
from vbot_cdr.testing import FakeVBotServer, Fault
from vbot_cdr.testing._data import RecordGenerator

SPACING = 37  # seconds between generated records


@pytest.fixture
def dlt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """dlt's data and pipelines under the test's directory; no telemetry."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt"))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    return tmp_path


def credential(server: FakeVBotServer) -> dict[str, Any]:
    """The credential of the server's dialect, as `vbot_source` takes it."""
    if server.api == "v2":
        return {"token": server.token}
    return {"token": None, "api_key": server.api_key, "api": server.api}


def run_pipeline(home: Path, server: FakeVBotServer, **options: Any) -> None:
    """One run of a dlt pipeline into DuckDB (in a worker thread: dlt runs its own loop)."""
    pipeline = dlt.pipeline(
        pipeline_name="vbot_tenant_test",
        pipelines_dir=str(home / "pipelines"),
        destination=dlt.destinations.duckdb(str(home / "calls.duckdb")),
        dataset_name="vbot",
    )
    source = vbot_source(
        base_url=server.base_url,
        start_date=dt.datetime.fromtimestamp(START, dt.timezone.utc),
        **credential(server),
        window=dt.timedelta(hours=6),
        **{"client_options": {"first_page": server.first_page}, **options},
    )
    pipeline.run(source)


def loaded(home: Path, table: str = "calls") -> list[str]:
    with duckdb.connect(str(home / "calls.duckdb")) as connection:
        rows = connection.execute(f"SELECT trans_id FROM vbot.{table}").fetchall()
    return [key for (key,) in rows]


@pytest.mark.parametrize("api", ["v2", "v3", "v3-legacy"])
async def test_two_runs_with_new_and_late_calls_hold_each_call_once(
    dlt_home: Path, api: Api
) -> None:
    """Run, add new calls and a late one inside the lag, run again: every call is there once,
    in every dialect (v3's times are in milliseconds, and so is its lag)."""
    async with FakeVBotServer(count=300, api=api) as server:
        await asyncio.to_thread(run_pipeline, dlt_home, server)
        first = loaded(dlt_home)
        assert sorted(first) == sorted(r["trans_id"] for r in server.records)

        last = max(r["create_at"] for r in server.records)
        unit = "s" if api == "v2" else "ms"
        scale = 1 if unit == "s" else 1000
        generator = RecordGenerator(seed=3, id_prefix="NEW", time_unit=unit)
        server.add_records(
            [generator.record(i, created=last + 60 * scale * (i + 1)) for i in range(20)]
            # late, inside the 10-minute lag
            + [generator.record(99, created=last - 120 * scale)]
        )
        await asyncio.to_thread(run_pipeline, dlt_home, server)
        ids = loaded(dlt_home)
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(r["trans_id"] for r in server.records)


async def test_conversations_transformer_loads_one_per_call(dlt_home: Path) -> None:
    """With conversations, each call's conversation is loaded once, keyed by trans_id."""
    async with FakeVBotServer(count=30) as server:
        await asyncio.to_thread(run_pipeline, dlt_home, server, conversations=True)
        conversations = loaded(dlt_home, "conversations")
        assert sorted(conversations) == sorted(r["trans_id"] for r in server.records)


async def test_conversations_are_bounded_by_the_client_concurrency(dlt_home: Path) -> None:
    """At most the client's concurrency of conversation requests are in flight, plus the page
    of calls they are read from and the calls resource's own pages; a 404 is a null row."""
    async with FakeVBotServer(count=400, latency=0.01) as server:
        server.inject(Fault(status=404), endpoint="getBotConversation")
        options = {"first_page": server.first_page, "concurrency": 3}
        await asyncio.to_thread(
            run_pipeline, dlt_home, server, conversations=True, client_options=options
        )
        assert sorted(loaded(dlt_home, "conversations")) == sorted(
            r["trans_id"] for r in server.records
        )
        assert server.peak_in_flight <= 3 + 1 + 3
    with duckdb.connect(str(dlt_home / "calls.duckdb")) as connection:
        empty = connection.execute("SELECT count(*) FROM vbot.conversations WHERE raw IS NULL")
        assert empty.fetchone() == (1,)


async def test_conversations_turned_on_later_backfill_the_calls_loaded_before(
    dlt_home: Path,
) -> None:
    """A pipeline that loaded calls without conversations, run again with them, loads the
    conversations of every call, the earlier ones included, each once."""
    async with FakeVBotServer(count=40) as server:
        await asyncio.to_thread(run_pipeline, dlt_home, server)
        assert not conversations_table_exists(dlt_home)
        await asyncio.to_thread(run_pipeline, dlt_home, server, conversations=True)
        conversations = loaded(dlt_home, "conversations")
        assert sorted(conversations) == sorted(r["trans_id"] for r in server.records)
        await asyncio.to_thread(run_pipeline, dlt_home, server, conversations=True)
        assert sorted(loaded(dlt_home, "conversations")) == sorted(conversations)


def conversations_table_exists(home: Path) -> bool:
    with duckdb.connect(str(home / "calls.duckdb")) as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'vbot' AND table_name = 'conversations'"
        ).fetchone()
    return found == (1,)


async def test_calls_without_a_trans_id_fail_the_load_instead_of_merging(dlt_home: Path) -> None:
    """Two calls with an empty ``trans_id`` are not merged into one row: the load fails."""
    generator = RecordGenerator(seed=5, id_prefix="K")
    records = [generator.record(i, created=START + 60 * (i + 1)) for i in range(4)]
    records[1]["trans_id"] = records[2]["trans_id"] = ""
    async with FakeVBotServer(records=records) as server:
        with pytest.raises(PipelineStepFailed, match="trans_id"):
            await asyncio.to_thread(run_pipeline, dlt_home, server)


#: DuckDB's name of each kind of column, as dlt creates them.
DUCKDB_TYPES = {
    "text": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "json": "JSON",
}


@pytest.mark.parametrize("api", ["v2", "v3"])
async def test_calls_table_has_the_one_table_shape(
    dlt_home: Path, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """dlt's calls table has the columns of CALL_COLUMNS, typed from the schema (times as
    UTC timestamps, codes as text, JSON columns, no child table), then dlt's own columns,
    which start with ``_``; from v2 and v3 alike, and no column is left for dlt to infer
    (v2 sends none of v3's own fields)."""
    caplog.set_level(logging.WARNING, logger="dlt")
    async with FakeVBotServer(count=40, api=api) as server:
        await asyncio.to_thread(run_pipeline, dlt_home, server)
        newest = max(server.records, key=lambda r: r["create_at"])
    with duckdb.connect(str(dlt_home / "calls.duckdb")) as connection:
        columns = connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'vbot' AND table_name = 'calls' ORDER BY ordinal_position"
        ).fetchall()
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'vbot'"
        ).fetchall()
        created, phone, collected = connection.execute(
            "SELECT create_at, phone, call_collected_data FROM vbot.calls WHERE trans_id = ?",
            [newest["trans_id"]],
        ).fetchone() or (None, None, None)
    ours = [(name, kind) for name, kind in columns if not name.startswith("_")]
    assert ours == [(c.name, DUCKDB_TYPES[c.kind]) for c in CALL_COLUMNS]
    assert all(name.startswith("_") for name, _ in columns[len(ours) :])
    assert sorted(t for (t,) in tables if not t.startswith("_")) == ["calls"]
    assert created == epoch_to_datetime(newest["create_at"])
    assert phone == newest["phone"]
    assert json.loads(collected) == newest["call_collected_data"]  # JSON, not JSON in text
    assert "could not have their types inferred" not in caplog.text
    assert "hints were different" not in caplog.text  # the JSON columns' text, by design
    assert logging.getLogger("dlt").filters == []  # silenced while the calls were extracted


async def test_calls_items_are_the_typed_records_table_rows_in_every_dialect(
    dlt_home: Path, any_server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """The ``calls`` items (a record batch per page) come straight from the decoded pages;
    each row equals what `table_row` (in UTC, dlt's zone) makes of the `CallRecord`
    `iter_calls` gives for the same call, an independent path through the typed API, in
    every dialect, including a page the fast decoder refuses (a field the models do not
    know: its calls come with extras)."""
    unit: Any = "s" if any_server.api == "v2" else "ms"
    beside = any_server.records[120]["create_at"]  # in the middle of a page
    odd = RecordGenerator(seed=3, id_prefix="ODD", time_unit=unit).record(0, created=beside)
    any_server.add_records([{**odd, "surprise": {"kept": [1, "two"]}}])
    since = dt.datetime.fromtimestamp(START, dt.timezone.utc)
    source = vbot_source(
        base_url=any_server.base_url,
        start_date=since,
        **credential(any_server),
        window=dt.timedelta(hours=6),
        client_options={"first_page": any_server.first_page},
    )

    def extract() -> list[dict[str, Any]]:
        # In a new pipeline, made the active one (in this thread, where dlt keeps it): the
        # cursor starts at start_date, not at the state of an earlier test's pipeline.
        dlt.pipeline(pipeline_name="vbot_items_test", pipelines_dir=str(dlt_home / "pipelines"))
        batches = list(source.resources["calls"])
        rows: list[dict[str, Any]] = pa.Table.from_batches(batches).to_pylist()
        for row in rows:  # JSON columns go to dlt as JSON text
            for column in ("call_collected_data", "extras"):
                if row[column] is not None:
                    row[column] = json.loads(row[column])
        return rows

    items = await asyncio.to_thread(extract)
    async with make_client(any_server).iter_calls(start_date=since) as calls:
        typed = [table_row(record, tz=dt.timezone.utc) async for record in calls]
    assert len(items) == len(typed) == 251
    assert sorted(items, key=by_id) == sorted(typed, key=by_id)
    assert [item["extras"] for item in items if item["extras"]] == [
        {"surprise": {"kept": [1, "two"]}}
    ]


def by_id(row: dict[str, Any]) -> str:
    return str(row["trans_id"])


@pytest.mark.parametrize(
    ("start_date", "error"),
    [
        ("2025-12-01", TypeError),
        (True, TypeError),
        (0, TypeError),
        (dt.datetime(2025, 12, 1), ValueError),  # naive: which day?
        (10**20, ValueError),  # beyond any datetime
    ],
    ids=["string", "bool", "zero", "naive", "out-of-range"],
)
def test_bad_start_date_is_refused_when_the_source_is_built(
    start_date: object, error: type[Exception]
) -> None:
    """A start_date the cursor cannot hold fails at vbot_source(), not at extract time."""
    with pytest.raises(error, match="start_date"):
        vbot_source("token", "http://127.0.0.1:9", start_date=start_date)  # type: ignore[arg-type]
