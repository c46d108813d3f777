"""The Spark data source (`vbot_cdr.spark`), batch and streaming, on a local session.

One ``local[2]`` session serves the whole test session (it takes 10-40 s to start); the fake
servers run in a thread of their own, with their own event loop, since Spark's Python
workers (other processes) call them while the test waits on Spark. Skipped only where pyspark
or Java is missing; CI installs both.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (the spark extra)")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17+ (no java on PATH, no JAVA_HOME)", allow_module_level=True)

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from vbot_cdr import VBotClient
from vbot_cdr._table import table_row
from vbot_cdr.cli import main
from vbot_cdr.spark import _settings
from vbot_cdr.testing import FakeVBotServer, FaultMix
from vbot_cdr.testing._data import DEFAULT_START, RecordGenerator

# A Spark job on a loaded two-core machine takes seconds per partition.
pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")
START = dt.datetime.fromtimestamp(DEFAULT_START, dt.timezone.utc)  # 2025-12-01T00:00Z
#: How long a test waits for the fake to go idle: a bound, not a pause.
GUARD = 30.0
#: Extends Spark's default redaction to the literal ``api_key`` option, as the README says.
REDACTION = r"(?i)secret|password|token|access[.]?key|api[_.]?key"
#: The credentials the workers read from their environment: set before the session starts,
#: since Spark's Python workers inherit the environment of its start.
CREDENTIALS = {"T_V2_TOKEN": "v2-token", "T_V3_KEY": "v3-key", "T_KEY": "spark-SECRET-key"}


class ThreadedFake:
    """A `FakeVBotServer` in a thread and event loop of its own, used from synchronous code."""

    def __init__(self, **options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.fake = FakeVBotServer(**options)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = GUARD) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` in the server's loop (its counters are not thread-safe)."""

        async def inside() -> T:
            return function()

        return self.run(inside())

    def __enter__(self) -> ThreadedFake:
        self._thread.start()
        self.run(self.fake.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.run(self.fake.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local session for every test, with an uncompressed event log to search."""
    events = tmp_path_factory.mktemp("spark-events")
    # The Python workers must run this interpreter (with the project and its dependencies).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.update(CREDENTIALS)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("vbot_cdr tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.eventLog.enabled", "true")
        .config("spark.eventLog.dir", str(events))
        .config("spark.eventLog.compress", "false")
        .config("spark.redaction.regex", REDACTION)
        # An executor variable named *API_KEY*, which only the extended regex hides.
        .config("spark.executorEnv.VBOT_TEST_API_KEY", "env-SECRET-key")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    # No spark.dataSource.register: Spark finds the source itself (pyspark_vbot_cdr).
    session.conf.set("vbot_cdr.tests.events", str(events))
    yield session
    session.stop()


def read(spark: SparkSession, **options: str) -> DataFrame:
    return spark.read.format("vbot_cdr").options(**options).load()


def event_log(spark: SparkSession) -> str:
    """The session's event log so far (Spark flushes it at the end of each job)."""
    files = Path(spark.conf.get("vbot_cdr.tests.events") or "").rglob("*")
    text = "".join(f.read_text(encoding="utf-8", errors="replace") for f in files if f.is_file())
    assert "spark.executorEnv.VBOT_TEST_API_KEY" in text  # logged, its value redacted
    return text


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["trans_id"] for r in records}


# -- batch -------------------------------------------------------------------------------------


def test_three_dialects_as_tenants_in_one_read(spark: SparkSession, tmp_path: Path) -> None:
    """v2, v3-legacy and v3 accounts in one read: per tenant, every call of the fake once."""
    key_file = tmp_path / "legacy.key"
    key_file.write_text("legacy-key\n", encoding="utf-8")
    with (
        ThreadedFake(count=150, seed=1, api="v2", token="v2-token") as v2,
        ThreadedFake(count=120, seed=2, api="v3-legacy", api_key="legacy-key") as legacy,
        ThreadedFake(count=90, seed=3, api="v3", api_key="v3-key") as v3,
    ):
        tenants = {
            "a": {"base_url": v2.fake.base_url, "token_env": "T_V2_TOKEN"},
            "b": {
                "base_url": legacy.fake.base_url,
                "api": "v3-legacy",
                "api_key_file": str(key_file),
            },
            "c": {"base_url": v3.fake.base_url, "api_key_env": "T_V3_KEY"},
        }
        df = read(
            spark,
            tenants=json.dumps(tenants),
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(hours=2)),
            partition_window="2h",  # one partition each: the edges have a test of their own
            page_size="40",
        )
        rows = [r.asDict() for r in df.select("tenant", "trans_id").collect()]
        fakes = {"a": v2, "b": legacy, "c": v3}
        for name, server in fakes.items():
            got = [r["trans_id"] for r in rows if r["tenant"] == name]
            assert len(got) == len(set(got)) == len(server.fake.records)
            assert set(got) == ids(server.fake.records)
    assert df.columns[0] == "tenant"


#: One account of each dialect: (FakeVBotServer options, the tenant's credential option).
DIALECT_TENANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "v2": ({"api": "v2", "token": "v2-token"}, {"token_env": "T_V2_TOKEN"}),
    "v2-no-status": (
        {"api": "v2", "token": "v2-token", "envelope_status": False},
        {"token_env": "T_V2_TOKEN"},
    ),
    "v3-legacy": ({"api": "v3-legacy", "api_key": "v3-key"}, {"api_key_env": "T_V3_KEY"}),
    "v3": ({"api": "v3", "api_key": "v3-key"}, {"api_key_env": "T_V3_KEY"}),
}


def typed_rows(server: ThreadedFake, start: dt.datetime, end: dt.datetime) -> list[Any]:
    """What `table_row` (in UTC) makes of the records `iter_calls` gives for the range,
    in Spark's spelling: JSON as text, by trans_id."""

    fake = server.fake

    async def read() -> list[Any]:
        credential = {"token": fake.token} if fake.api == "v2" else {"api_key": fake.api_key}
        async with (
            VBotClient(base_url=fake.base_url, api=fake.api, **credential) as client,
            client.iter_calls(start_date=start, end_date=end) as calls,
        ):
            return [table_row(record, tz=dt.timezone.utc) async for record in calls]

    return server.run(read())


def test_rows_are_the_typed_records_table_rows_in_every_dialect(spark: SparkSession) -> None:
    """Each partition builds its batches straight from the decoded pages; every row equals
    what `table_row` makes of the `CallRecord` `iter_calls` gives for the same call (an
    independent path through the typed API), in every dialect, including a page the fast
    decoder refuses (a field the models do not know: its calls come with extras)."""
    start, end = START, START + dt.timedelta(hours=2)
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(ThreadedFake(count=100, seed=6, **options))
            for name, (options, _) in DIALECT_TENANTS.items()
        }
        for server in servers.values():
            unit: Any = "s" if server.fake.api == "v2" else "ms"
            beside = server.call(lambda fake=server.fake: fake.records[50]["create_at"])
            odd = RecordGenerator(seed=3, id_prefix="ODD", time_unit=unit).record(0, created=beside)
            server.call(
                lambda fake=server.fake, odd=odd: fake.add_records(
                    [{**odd, "surprise": {"kept": [1, "two"]}}]
                )
            )
        tenants = {
            name: {"base_url": servers[name].fake.base_url, "api": options["api"], **credential}
            for name, (options, credential) in DIALECT_TENANTS.items()
        }
        df = read(
            spark,
            tenants=json.dumps(tenants),
            start_date=iso(start),
            end_date=iso(end),
            partition_window="2h",
            page_size="40",
        )
        by_tenant: dict[str, dict[str, Any]] = {name: {} for name in servers}
        for row in df.toArrow().to_pylist():
            for column in ("call_collected_data", "extras"):
                if row[column] is not None:
                    row[column] = json.loads(row[column])
            by_tenant[row.pop("tenant")][row["trans_id"]] = row
        for name, server in servers.items():
            typed = {row["trans_id"]: row for row in typed_rows(server, start, end)}
            rows = by_tenant[name]
            assert len(rows) == len(typed) == 101, name
            assert rows == typed, name
            assert rows["ODD3-00000000"]["extras"] == {"surprise": {"kept": [1, "two"]}}


def test_dataframe_equals_the_cli_parquet_export(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Schema and values, column for column, equal ``vbot-cdr export --format parquet``."""
    monkeypatch.setenv("VBOT_API_KEY", "v3-key")
    out = tmp_path / "calls.parquet"
    start, end = iso(START), iso(START + dt.timedelta(hours=3))
    with ThreadedFake(count=200, seed=4, api="v3", api_key="v3-key") as v3:
        argv = ["export", "--base-url", v3.fake.base_url, "--start-date", start]
        assert main([*argv, "--end-date", end, "-o", str(out), "-q"]) == 0
        df = read(
            spark,
            base_url=v3.fake.base_url,
            api_key_env="T_V3_KEY",
            start_date=start,
            end_date=end,
            partition_window="2h",
        )
        exported = pq.read_table(out)
        assert df.schema == from_arrow_schema(exported.schema, prefer_timestamp_ntz=False)
        read_back = df.toArrow()
    assert read_back.num_rows == exported.num_rows == 200
    order = [("trans_id", "ascending")]
    assert read_back.sort_by(order).to_pylist() == exported.sort_by(order).to_pylist()


def test_calls_on_every_window_edge_are_read_once(spark: SparkSession) -> None:
    """A call at ``b`` is the next window's, wherever the server puts it; the end is out."""
    hour = 3600
    made = RecordGenerator(seed=5)
    edges = [DEFAULT_START + k * hour for k in range(4)]  # start, two inner edges, end
    at_edges = [made.record(k, created=edge) for k, edge in enumerate(edges)]
    inside = [made.record(10 + k, created=edge + 1) for k, edge in enumerate(edges[:3])]
    before_end = made.record(20, created=edges[-1] - 1)
    with ThreadedFake(records=[*at_edges, *inside, before_end], api="v2") as v2:
        df = read(
            spark,
            base_url=v2.fake.base_url,
            token="fake-vbot-token",
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(hours=3)),
            partition_window="1h",
        )
        got = [r.trans_id for r in df.select("trans_id").collect()]
    expected = ids([*at_edges[:3], *inside, before_end])
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected


def test_a_fault_mix_still_reads_every_call(spark: SparkSession) -> None:
    """5xx, 429 and truncated bodies: retried, every call once."""
    mix = FaultMix(seed=7, server_error=0.05, rate_limit=0.05, truncate=0.05)
    with ThreadedFake(count=300, seed=6, api="v3", fault_mix=mix) as v3:
        df = read(
            spark,
            base_url=v3.fake.base_url,
            api_key="fake-vbot-api-key",
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(hours=4)),
            partition_window="2h",
            page_size="20",
        )
        got = [r.trans_id for r in df.select("trans_id").collect()]
        served = v3.call(lambda: v3.fake.faults_served)
    assert len(got) == len(set(got)) == 300
    assert set(got) == ids(v3.fake.records)
    assert served  # the mix did strike


@pytest.mark.parametrize(
    ("server", "error", "hint", "planned"),
    [
        ({"api_key": "the-right-key"}, "AuthenticationError", "401", True),
        ({"api_key": "spark-SECRET-key", "first_page": 0}, "IncompleteError", "first_page", False),
    ],
    ids=["refused-key", "page-base-mismatch"],
)
def test_a_failed_partition_names_error_tenant_window_and_no_secret(
    spark: SparkSession, server: dict[str, Any], error: str, hint: str, planned: bool
) -> None:
    """The message names the error, the tenant and the window, and holds no secret. A refused
    key fails the query once, at planning (one ``countAll``), before any task could retry."""
    with ThreadedFake(count=50, seed=8, api="v3", echo_credentials=True, **server) as v3:
        tenants = {"acme": {"base_url": v3.fake.base_url, "api_key_env": "T_KEY"}}
        df = read(
            spark,
            tenants=json.dumps(tenants),
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(hours=1)),
        )
        with pytest.raises(PySparkException) as raised:
            df.collect()
        pages = v3.call(lambda: v3.fake.count("getAll"))
    assert (pages == 0) is planned
    message = str(raised.value)
    assert f"PartitionError: {error} in tenant 'acme', window [" in message
    assert hint in message
    assert "SECRET" not in message
    assert "SECRET" not in event_log(spark)


def test_a_literal_key_stays_out_of_the_plan_and_the_event_log(spark: SparkSession) -> None:
    """A literal ``api_key`` is in neither the plan nor the event log; with the README's
    ``spark.redaction.regex``, neither is an executor variable named ``*API_KEY*``."""
    with ThreadedFake(count=5, seed=9, api="v3", api_key="literal-SECRET-key") as v3:
        df = read(
            spark,
            base_url=v3.fake.base_url,
            api_key="literal-SECRET-key",
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(hours=1)),
        )
        assert df.count() == 5
    plan = df._jdf.queryExecution().toString()
    assert "vbot_cdr" in plan
    assert "SECRET" not in plan
    assert "SECRET" not in event_log(spark)


def test_after_a_limit_nothing_is_left_in_flight(spark: SparkSession) -> None:
    with ThreadedFake(count=2000, seed=10, api="v3", latency=0.02) as v3:
        df = read(
            spark,
            base_url=v3.fake.base_url,
            api_key="fake-vbot-api-key",
            start_date=iso(START),
            end_date=iso(START + dt.timedelta(days=1)),
            page_size="20",
            concurrency="4",
        )
        assert len(df.limit(5).collect()) == 5
        v3.run(v3.fake.wait_idle())
        pages = v3.call(lambda: v3.fake.count("getAll"))
        assert v3.call(lambda: v3.fake.in_flight) == 0
    assert pages < 2000 // 20  # it stopped early


# -- streaming ---------------------------------------------------------------------------------


def test_streaming_merged_on_trans_id_equals_the_fake(spark: SparkSession, tmp_path: Path) -> None:
    """Offsets are window ends; a late call inside the lookback is found; merged, once each."""
    batches: list[pa.Table] = []
    unit = 3600
    made = RecordGenerator(seed=11, spacing=150)
    with ThreadedFake(records=[made.record(k) for k in range(60)], api="v2") as v2:
        options = {
            "base_url": v2.fake.base_url,
            "token": "fake-vbot-token",
            "start_date": iso(START),
            "partition_window": "1h",
            "settle": "2m",
            "lookback": "30m",
        }

        def run(now: dt.datetime) -> dict[str, Any]:
            query = (
                spark.readStream.format("vbot_cdr")
                .options(**options, now=iso(now))
                .load()
                .writeStream.foreachBatch(lambda df, _: batches.append(df.toArrow()))
                .option("checkpointLocation", str(tmp_path / "checkpoint"))
                .start()
            )
            try:
                query.processAllAvailable()
                progress = query.lastProgress
            finally:
                query.stop()
            assert progress is not None
            return json.loads(progress["sources"][0]["endOffset"])

        # 60 calls, one each 150 s from START: 2.5 hours. Now = START + 2h10m: two windows closed.
        first = run(START + dt.timedelta(hours=2, minutes=10))
        assert first == {"default": iso(START + dt.timedelta(hours=2))}
        # A call written late, 20 minutes before the offset (inside the lookback).
        late = made.record(1000, created=DEFAULT_START + 2 * unit - 20 * 60)
        v2.call(lambda: v2.fake.add_records([late]))
        second = run(START + dt.timedelta(hours=4))
        assert second == {"default": iso(START + dt.timedelta(hours=4) - dt.timedelta(hours=1))}
        before = [
            r for r in v2.call(lambda: v2.fake.records) if r["create_at"] < DEFAULT_START + 3 * unit
        ]
    merged: dict[str, dict[str, Any]] = {}
    for batch in batches:  # the MERGE of the README: the last version of each call wins
        merged.update((row["trans_id"], row) for row in batch.to_pylist())
    assert late["trans_id"] in merged
    assert set(merged) == ids(before)


# -- options (no session) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_date": "2025-12-01", "api_key": "k", "typo": "x"}, "unknown options ['typo']"),
        ({"api_key": "k"}, "start_date is required"),
        ({"start_date": "2025-12-01", "api_key": "k", "token_env": "T"}, "exactly one credential"),
        ({"start_date": "yesterday", "api_key": "k"}, "ISO 8601"),
        ({"start_date": "2025-12-01", "api_key": "k", "tz": "Mars/Base"}, "IANA"),
        ({"start_date": "2025-12-01", "api_key": "k", "partition_window": "1y"}, "duration"),
        ({"start_date": "2025-12-01", "api_key": "k", "page_size": "0"}, "page_size must be > 0"),
        ({"start_date": "2025-12-01", "token": "t", "api": "v3"}, "token"),
        ({"start_date": "2025-12-01", "api_key": "k", "tenants": "[1]"}, "JSON object"),
    ],
)
def test_bad_options_are_refused_before_any_request(options: dict[str, str], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        _settings({"base_url": "http://127.0.0.1:9", **options})


def test_dates_without_an_offset_are_vbot_time_and_credentials_stay_hidden() -> None:
    settings = _settings(
        {"base_url": "http://127.0.0.1:9", "start_date": "2025-12-01", "api_key": "k-SECRET"}
    )
    assert settings.start == dt.datetime(2025, 12, 1, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    assert "SECRET" not in repr(settings)


def test_stream_offsets_are_window_ends_and_batches_reach_back_by_the_lookback() -> None:
    """The offset is the end of the last closed window (now less settle, on the grid), per
    tenant, never moving back; a micro-batch reads from the last offset less the lookback."""
    from vbot_cdr.spark import _StreamReader

    tenants = {
        name: {"base_url": "http://127.0.0.1:9", "api_key_env": "UNUSED"} for name in ("a", "b")
    }

    def stream(now: str) -> _StreamReader:
        options = {
            "tenants": json.dumps(tenants),
            "start_date": "2025-12-01T00:00:00+00:00",
            "partition_window": "1h",
            "settle": "5m",
            "lookback": "10m",
            "now": now,
        }
        return _StreamReader(_settings(options), pa.schema([]))

    initial = stream("2025-12-01T00:00:00+00:00").initialOffset()
    assert initial == {"a": iso(START), "b": iso(START)}
    reader = stream("2025-12-01T03:04:59+00:00")  # 02:59:59 less settle: 02:00 is closed
    first = reader.latestOffset(initial, None)
    assert first == {"a": iso(START + dt.timedelta(hours=2))} | {"b": first["a"]}
    assert "UNUSED" not in json.dumps(first)
    windows = reader.partitions(initial, first)
    assert [(w.account.name, w.start, w.end) for w in windows] == [
        (name, START + dt.timedelta(hours=h), START + dt.timedelta(hours=h + 1))
        for name in ("a", "b")
        for h in (0, 1)
    ]
    later = stream("2025-12-01T04:05:00+00:00")
    second = later.latestOffset(first, None)
    assert second["a"] == iso(START + dt.timedelta(hours=4))
    edges = [(w.start, w.end) for w in later.partitions(first, second) if w.account.name == "a"]
    back = START + dt.timedelta(hours=2) - dt.timedelta(minutes=10)
    assert edges == [
        (back, START + dt.timedelta(hours=2)),  # the lookback, a partition of its own
        (START + dt.timedelta(hours=2), START + dt.timedelta(hours=3)),
        (START + dt.timedelta(hours=3), START + dt.timedelta(hours=4)),
    ]
    # A clock that goes back does not move the offset back, and plans nothing.
    assert stream("2025-12-01T01:00:00+00:00").latestOffset(second, None) == second
    assert later.partitions(second, second) == []
