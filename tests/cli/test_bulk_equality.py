"""The bulk outputs against the typed path: the same calls, the same bytes and values.

``export`` (JSON Lines, CSV, CSV for Excel, Parquet, xlsx) and the file ``sync`` (JSON Lines,
CSV) encode rows straight from the decoded pages (`vbot_cdr._iteration.row_pages`). Each is
compared here, in every dialect, with what the typed public API gives for the same calls,
built independently: `VBotClient.iter_calls` -> `CallRecord.to_dict` (JSON Lines) or
`vbot_cdr.table_row` (the table shape), spelled as each format documents it. One page of
the served calls holds a field no model lists, so the readers build that page's records
(with their extras) while the other pages stay twins: both kinds go through the encoders.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import orjson
import pyarrow.parquet as pq
import pytest

from tests._cli import run
from tests.conftest import SERVED_DIALECTS, credential
from vbot_cdr import CallRecord, VBotClient, call_columns, table_row
from vbot_cdr._models import epoch_to_datetime
from vbot_cdr.testing import FakeVBotServer

#: A zone with summer time, so that offsets differ between the calls' times.
ZONE = "America/New_York"
#: The one record with a field no model lists (its page is read by the readers).
SURPRISE = {"surprise": {"kept": [1, "two"]}}
CALLS = 120
PAGE = 25
RANGE = ("--start-date", "2025-11-01T00:00Z", "--end-date", "2026-02-01T00:00Z")


@pytest.fixture(params=list(SERVED_DIALECTS))
async def mixed(request: pytest.FixtureRequest) -> AsyncIterator[FakeVBotServer]:
    """A server of each dialect whose 8th call carries an unknown field, and one time with
    milliseconds that are not whole seconds (v3)."""
    options = SERVED_DIALECTS[request.param]
    records = [dict(record) for record in FakeVBotServer(count=CALLS, **options).records]
    records[7] |= SURPRISE
    if options["api"] != "v2":
        records[3]["end_call_at"] += 7  # milliseconds
    async with FakeVBotServer(records=records, **options) as fake:
        yield fake


def environment(fake: FakeVBotServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Name ``fake`` and its credential in the environment; the options for its dialect."""
    monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
    for name, value in credential(fake).items():
        if name != "api":
            monkeypatch.setenv(f"VBOT_{name.upper()}", value)
    return ["--api", fake.api, "--page-size", str(PAGE), "--tz", ZONE, "-q"]


async def typed_records(fake: FakeVBotServer, make_client: Callable[..., VBotClient]) -> list[Any]:
    async with make_client(fake).iter_calls(page_size=PAGE) as calls:
        records = [record async for record in calls]
    assert len(records) == CALLS
    assert [record.extras for record in records if record.extras] == [SURPRISE]
    return records


def typed_line(record: CallRecord) -> bytes:
    """The JSON Lines line of ``record`` from its typed form: `to_dict`, times as ISO 8601
    in `ZONE`."""
    document = record.to_dict()
    for name in ("create_at", "answer_at", "end_call_at"):
        moment = epoch_to_datetime(document[name], ZoneInfo(ZONE))
        document[name] = None if moment is None else moment.isoformat()
    return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)


def csv_cell(value: Any, *, excel: bool) -> Any:
    """A `table_row` value as the CSV documents it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}" if excel else value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    digits = excel and isinstance(value, str) and value.isdigit()
    if digits and (value[0] == "0" or len(value) > 15):
        return f'="{value}"'
    return value


def typed_csv(records: list[Any], *, excel: bool) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([column.name for column in call_columns()])
    for record in records:
        row = table_row(record, tz=ZONE).values()
        writer.writerow([csv_cell(value, excel=excel) for value in row])
    return ("\ufeff" if excel else "").encode() + text.getvalue().encode()


def as_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


async def test_jsonl_export_is_the_typed_lines(
    mixed: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    out = tmp_path / "calls.jsonl"
    assert await run("export", *environment(mixed, monkeypatch), "-o", str(out)) == 0
    records = await typed_records(mixed, make_client)
    assert out.read_bytes() == b"".join(map(typed_line, records))


@pytest.mark.parametrize("excel", [False, True], ids=["csv", "excel"])
async def test_csv_export_is_the_typed_rows(
    mixed: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    excel: bool,
) -> None:
    out = tmp_path / "calls.csv"
    argv = ["export", *environment(mixed, monkeypatch), "-o", str(out)]
    assert await run(*argv, *(["--excel"] if excel else [])) == 0
    records = await typed_records(mixed, make_client)
    assert out.read_bytes() == typed_csv(records, excel=excel)


async def test_parquet_export_holds_the_typed_values(
    mixed: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    out = tmp_path / "calls.parquet"
    assert await run("export", *environment(mixed, monkeypatch), "-o", str(out)) == 0
    records = await typed_records(mixed, make_client)
    kinds = {column.name: column.kind for column in call_columns()}
    written = pq.read_table(out).to_pylist()
    for row in written:
        for name, kind in kinds.items():
            if kind == "json":
                row[name] = as_json(row[name])
    expected = [table_row(record, tz=ZONE) for record in records]
    assert written == expected  # aware datetimes: equal when they are the same instant
    assert [row["extras"] for row in written if row["extras"]] == [SURPRISE]


async def test_xlsx_export_holds_the_typed_cells(
    mixed: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    out = tmp_path / "calls.xlsx"
    assert await run("export", *environment(mixed, monkeypatch), "-o", str(out)) == 0
    records = await typed_records(mixed, make_client)
    book = openpyxl.load_workbook(out, read_only=True)
    header, *cells = book["calls"].iter_rows(values_only=True)
    columns = call_columns()
    assert header == tuple(column.name for column in columns)

    def cell(value: Any) -> Any:
        if isinstance(value, dt.datetime):  # Excel has no zones, and keeps milliseconds
            return value.replace(tzinfo=None)
        if isinstance(value, (list, dict)):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return value

    expected = [
        tuple(cell(value) for value in table_row(record, tz=ZONE).values()) for record in records
    ]
    assert cells == expected
    book.close()


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
async def test_file_sync_appends_the_typed_lines(
    mixed: FakeVBotServer,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    suffix: str,
) -> None:
    out, state = tmp_path / f"calls.{suffix}", tmp_path / "state.json"
    argv = ["sync", *environment(mixed, monkeypatch), "--state", str(state), "-o", str(out)]
    assert await run(*argv, *RANGE, "--window", "6h") == 0
    records = await typed_records(mixed, make_client)
    if suffix == "jsonl":
        expected = list(map(typed_line, records))
    else:
        expected = typed_csv(records, excel=False).splitlines(keepends=True)
    lines = out.read_bytes().splitlines(keepends=True)
    if suffix == "csv":
        assert lines[0] == expected.pop(0)  # the header, once
        lines.pop(0)
    # The sync writes window by window, oldest first: the same lines, in its order.
    assert sorted(lines) == sorted(expected)
    assert len(lines) == CALLS
