"""The one table shape of a call, and one notion of time, in every output and from every
dialect: CSV, Parquet, xlsx and JSON Lines, read back with the tools analysts use."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow.parquet as pq
import pytest

from tests._records import VIETNAM, exported_line, served_by_v2
from vbot_cdr import CallRecord, call_columns
from vbot_cdr._decoding import structure_record
from vbot_cdr._table import CALL_COLUMNS, table_row, zone
from vbot_cdr.cli import CSV_COLUMNS, main
from vbot_cdr.cli import _outputs as outputs
from vbot_cdr.testing import FakeVBotServer, generate_records

TOKEN = "tok-table-0123"
KEY = "key-table-4567"
COUNT = 60
#: The columns whose values differ from v2's for the same calls, by dialect: v3 spells the
#: outcomes its own way (with its own SIP codes) and alone sends its own fields; v3-legacy
#: leaves out the member's VBot id.
DIALECT_VALUES = {
    "v3": {
        "disposition",
        "sip_code",
        "external_call_id",
        "campaign_id",
        "campaign_group_id",
        "template_script_id",
        "bot_member_status_connect",
    },
    "v3-legacy": {"member_vbot_id", "member"},
}
TIMES = ("create_at", "answer_at", "end_call_at")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VBOT_* or TZ setting leaks in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("VBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TZ", "UTC")  # the machine's zone must not matter


def seed_calls(unit: str) -> list[dict[str, Any]]:
    """The same calls, their times in ``unit``; one unanswered, one code with a leading 0."""
    calls = generate_records(COUNT)
    scale = 1000 if unit == "ms" else 1
    for call in calls:
        for name in TIMES:
            if call.get(name) is not None:
                call[name] *= scale
    calls[0]["sip_code"] = "0480"
    calls[0]["customer_uid"] = "007"
    return calls


@pytest.fixture(params=["v3", "v3-legacy"])
async def servers(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, FakeVBotServer]]:
    """A v2 server (times in seconds) and, under ``"v3"``, a v3 or v3-legacy one (times in
    milliseconds) of the same calls."""
    async with (
        FakeVBotServer(records=seed_calls("s"), api="v2", token=TOKEN) as v2,
        FakeVBotServer(records=seed_calls("ms"), api=request.param, api_key=KEY) as v3,
    ):
        yield {"v2": v2, "v3": v3}


async def export(server: FakeVBotServer, out: Path, *options: str) -> None:
    """``vbot-cdr export -o out`` from ``server`` (in a thread: this loop serves it)."""
    credential = ("VBOT_TOKEN", TOKEN) if server.api == "v2" else ("VBOT_API_KEY", KEY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(*credential)
        argv = ["export", "--base-url", server.base_url, "-o", str(out), "-q", *options]
        argv += ["--api", "v3-legacy"] if server.api == "v3-legacy" else []
        assert await asyncio.to_thread(main, argv) == 0


def read_xlsx(path: Path) -> tuple[list[str], list[list[Any]], list[list[str]]]:
    """The header, the values and the cell types (openpyxl's ``s``, ``n``, ``b``, ``d``) of
    the sheet ``calls``."""
    book = openpyxl.load_workbook(path, read_only=True)
    with contextlib.closing(book):
        rows = list(book["calls"].iter_rows())
    header = [str(cell.value) for cell in rows[0]]
    values = [[cell.value for cell in row] for row in rows[1:]]
    kinds = [[cell.data_type if cell.value is not None else "" for cell in row] for row in rows[1:]]
    return header, values, kinds


def same_data(v2: dict[str, Any], v3: dict[str, Any], api: str) -> None:
    """Two rows of the same call, from v2 and from ``api``, have the same names and agree
    wherever both dialects carry the same data."""
    assert list(v2) == list(v3)
    for name in v2:
        if name not in DIALECT_VALUES[api]:
            assert v2[name] == v3[name], name


# -- v2 and v3 differ in values only ------------------------------------------------------------


async def test_csv_from_v2_and_v3_differ_in_values_only(
    servers: dict[str, FakeVBotServer], tmp_path: Path
) -> None:
    """The same calls from a v2 and a v3 server give CSV files with the same header and the
    same values (times included: one instant, one text) but where v3 has its own."""
    rows = {}
    for api, server in servers.items():
        out = tmp_path / f"{api}.csv"
        await export(server, out)
        with out.open(newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
            rows[api] = list(reader)
    assert len(rows["v2"]) == len(rows["v3"]) == COUNT
    for v2, v3 in zip(rows["v2"], rows["v3"], strict=True):
        same_data(v2, v3, servers["v3"].api)
        assert dt.datetime.fromisoformat(v2["create_at"]).utcoffset() == dt.timedelta(hours=7)
    assert rows["v2"][-1]["sip_code"] == "0480"
    assert rows["v2"][-1]["customer_uid"] == rows["v3"][-1]["customer_uid"] == "007"


async def test_parquet_from_v2_and_v3_differ_in_values_only(
    servers: dict[str, FakeVBotServer], tmp_path: Path
) -> None:
    """The same calls from v2 and v3 give Parquet files of one schema (times UTC timestamps
    in milliseconds, codes strings) and the same values but where v3 has its own; pyarrow
    reads the codes back with their leading zeros."""
    tables = {}
    for api, server in servers.items():
        out = tmp_path / f"{api}.parquet"
        await export(server, out)
        tables[api] = pq.read_table(out)
    assert tables["v2"].schema == tables["v3"].schema
    types = {field.name: str(field.type) for field in tables["v2"].schema}
    assert tuple(types) == CSV_COLUMNS
    assert {types[name] for name in TIMES} == {"timestamp[ms, tz=UTC]"}
    codes = ("phone", "sip_code", "trans_id", "customer_uid", "hotline_phone_number")
    assert {types[name] for name in codes} == {"string"}
    for v2, v3 in zip(tables["v2"].to_pylist(), tables["v3"].to_pylist(), strict=True):
        same_data(v2, v3, servers["v3"].api)
    last = tables["v2"].to_pylist()[-1]
    assert (last["sip_code"], last["customer_uid"]) == ("0480", "007")
    assert last["phone"].startswith("0")
    assert last["create_at"] == dt.datetime.fromtimestamp(
        generate_records(1)[0]["create_at"], dt.timezone.utc
    )


async def test_xlsx_from_v2_and_v3_differ_in_values_only(
    servers: dict[str, FakeVBotServer], tmp_path: Path
) -> None:
    """The same calls from v2 and v3 give workbooks with the same header and the same cell
    types (codes text, times datetimes in Vietnam time) and the same values but where v3
    has its own."""
    books = {}
    for api, server in servers.items():
        out = tmp_path / f"{api}.xlsx"
        await export(server, out)
        books[api] = read_xlsx(out)
    (header2, values2, kinds2), (header3, values3, kinds3) = books["v2"], books["v3"]
    assert tuple(header2) == tuple(header3) == CSV_COLUMNS
    for v2, v3 in zip(values2, values3, strict=True):
        row2, row3 = dict(zip(header2, v2, strict=True)), dict(zip(header3, v3, strict=True))
        same_data(row2, row3, servers["v3"].api)
    column = {name: index for index, name in enumerate(header2)}
    for row2, row3 in zip(kinds2, kinds3, strict=True):
        for name, index in column.items():
            if name not in DIALECT_VALUES[servers["v3"].api]:
                assert row2[index] == row3[index], name
    first = values2[-1]
    assert first[column["sip_code"]] == "0480"
    assert first[column["customer_uid"]] == "007"
    assert kinds2[-1][column["phone"]] == "s"
    assert first[column["phone"]].startswith("0")
    assert kinds2[-1][column["create_at"]] == "d"
    created = dt.datetime.fromtimestamp(generate_records(1)[0]["create_at"], VIETNAM)
    assert first[column["create_at"]] == created.replace(tzinfo=None)


# -- time ---------------------------------------------------------------------------------------


async def test_an_unanswered_call_has_no_answer_time_in_any_format(tmp_path: Path) -> None:
    """``answer_at`` of a call never answered is null (empty in CSV and xlsx), whether the
    server sends null or 0; never 0 nor 1970."""
    calls = generate_records(2)
    calls[0]["answer_at"] = None
    calls[1]["answer_at"] = 0
    async with FakeVBotServer(records=calls, token=TOKEN) as server:
        for suffix in ("jsonl", "csv", "parquet", "xlsx"):
            await export(server, tmp_path / f"calls.{suffix}")
    lines = (tmp_path / "calls.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["answer_at"] for line in lines] == [None, None]
    text = (tmp_path / "calls.csv").read_text(encoding="utf-8")
    assert [row["answer_at"] for row in csv.DictReader(io.StringIO(text))] == ["", ""]
    assert pq.read_table(tmp_path / "calls.parquet").column("answer_at").to_pylist() == [None] * 2
    header, values, _ = read_xlsx(tmp_path / "calls.xlsx")
    assert [row[header.index("answer_at")] for row in values] == [None, None]


async def test_jsonl_keeps_nesting_with_times_as_iso_text(
    servers: dict[str, FakeVBotServer], tmp_path: Path
) -> None:
    """JSON Lines keeps member, hotline and collected data nested, under the same top-level
    names from v2 and v3, with the same times as ISO 8601 text with their offset."""
    lines = {}
    for api, server in servers.items():
        out = tmp_path / f"{api}.jsonl"
        await export(server, out)
        lines[api] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for v2, v3 in zip(lines["v2"], lines["v3"], strict=True):
        same_data(v2, v3, servers["v3"].api)
    served = [served_by_v2(call) for call in reversed(seed_calls("s"))]
    assert lines["v2"] == [exported_line(call) for call in served]
    assert isinstance(lines["v2"][0]["member"], dict)


def test_table_row_shows_times_in_the_zone_asked() -> None:
    """`table_row` gives times as aware datetimes in ``tz`` (Vietnam time by default): the
    same instant in every zone."""
    record = structure_record(generate_records(1)[0])
    default, utc = table_row(record), table_row(record, tz="UTC")
    assert list(default) == [column.name for column in CALL_COLUMNS]
    assert default["create_at"].utcoffset() == dt.timedelta(hours=7)
    assert utc["create_at"].utcoffset() == dt.timedelta(0)
    assert default["create_at"] == utc["create_at"] == record.created
    assert default["member_name"] == record.member.name  # type: ignore[union-attr]


def test_an_unknown_zone_is_refused() -> None:
    """A zone name that is not an IANA zone is a ValueError naming it."""
    with pytest.raises(ValueError, match="unknown time zone 'Asia/Nowhere'"):
        zone("Asia/Nowhere")
    with pytest.raises(ValueError, match="unknown time zone"):
        table_row(CallRecord(), tz="../etc/passwd")


# -- xlsx ---------------------------------------------------------------------------------------


async def test_xlsx_has_a_header_an_autofilter_and_text_never_read_as_formulas(
    tmp_path: Path,
) -> None:
    """The workbook has a bold header row, an autofilter over every call, frozen header,
    and text a server sent that looks like a formula or a number stays text."""
    calls = generate_records(3)
    calls[0]["name"] = '=HYPERLINK("http://evil")'
    calls[1]["input_log"] = "0123"
    async with FakeVBotServer(records=calls, token=TOKEN) as server:
        await export(server, tmp_path / "calls.xlsx")
    book = openpyxl.load_workbook(tmp_path / "calls.xlsx")
    sheet = book["calls"]
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(CSV_COLUMNS)).column_letter}4"
    assert sheet.freeze_panes == "A2"
    assert sheet.cell(1, 1).font.bold
    names = [cell.value for cell in sheet[1]]
    by_id = {row[names.index("trans_id")]: row for row in sheet.iter_rows(2, values_only=True)}
    first = by_id[calls[0]["trans_id"]]
    assert first[names.index("name")] == calls[0]["name"]
    assert sheet.cell(4, names.index("name") + 1).data_type == "s"
    assert by_id[calls[1]["trans_id"]][names.index("input_log")] == "0123"


def test_xlsx_goes_on_to_a_new_sheet_when_one_is_full(tmp_path: Path) -> None:
    """Calls beyond what a sheet holds go on to the sheet ``calls 2``, with its own header:
    none is cut off."""
    written = [structure_record(raw) for raw in reversed(generate_records(7))]
    with (tmp_path / "calls.xlsx").open("wb") as stream:
        # A header and three calls a sheet (Excel's limit is 1,048,576 rows).
        workbook = outputs._XlsxOutput(stream, "calls.xlsx", zone("UTC"), max_rows=4)
        workbook.write(written[:5])
        workbook.write(written[5:])
        workbook.close()
    book = openpyxl.load_workbook(tmp_path / "calls.xlsx", read_only=True)
    with contextlib.closing(book):
        assert book.sheetnames == ["calls", "calls 2", "calls 3"]
        sheets = [list(sheet.iter_rows(values_only=True)) for sheet in book]
    ids = []
    for rows in sheets:
        assert tuple(rows[0]) == CSV_COLUMNS
        ids += [row[CSV_COLUMNS.index("trans_id")] for row in rows[1:]]
    assert ids == [f"TX0-{i:08d}" for i in reversed(range(7))]


def test_xlsx_without_its_extra_says_which_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without XlsxWriter, ``--out calls.xlsx`` exits 2 with one line naming the extra, and
    writes nothing."""
    monkeypatch.setitem(sys.modules, "xlsxwriter", None)
    os.chdir(tmp_path)
    assert main(["export", "--demo", "--demo-records", "3", "-o", "calls.xlsx"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "pip install 'vbot_cdr[xlsx]'" in line
    assert list(tmp_path.iterdir()) == []


def test_fields_dictionary_lists_the_table_shape() -> None:
    """docs/fields.md lists every column of the table shape, in order, with its type."""
    text = (Path(__file__).parent.parent / "docs" / "fields.md").read_text(encoding="utf-8")
    section = text.split("## The table shape", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \| (\w+) \|$", section, re.MULTILINE)
    assert listed == [(column.name, column.kind) for column in call_columns()]


@pytest.mark.parametrize("name", ["calls.xlsx", "calls.parquet"])
def test_sync_refuses_to_append_to_a_workbook(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sync --out calls.xlsx`` (a whole-file format) exits 2 with one line, before any
    request, and leaves no file behind."""
    os.chdir(tmp_path)
    argv = ["sync", "--demo", "--state", "state.json", "--out", name, "--start-date", "2025-12-01"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "sync appends uncompressed JSON Lines or CSV" in line
    assert list(tmp_path.iterdir()) == []


# -- one zone, stated ---------------------------------------------------------------------------

MIDNIGHT_IN_HANOI = 1_764_522_000  # 2025-12-01T00:00:00+07:00
MIDNIGHT_IN_UTC = 1_764_547_200  # 2025-12-01T00:00:00Z


@pytest.mark.parametrize(
    ("options", "environ", "expected"),
    [
        ([], {}, MIDNIGHT_IN_HANOI),
        (["--tz", "UTC"], {}, MIDNIGHT_IN_UTC),
        ([], {"VBOT_CDR_TZ": "Asia/Tokyo"}, MIDNIGHT_IN_UTC - 9 * 3600),
        (["--tz", "UTC"], {"VBOT_CDR_TZ": "Asia/Tokyo"}, MIDNIGHT_IN_UTC),
    ],
    ids=["default-vietnam", "tz-option", "tz-environment", "option-wins"],
)
async def test_dates_without_offset_are_read_in_the_run_zone(
    options: list[str],
    environ: dict[str, str],
    expected: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--start-date 2025-12-01`` is midnight in the run's zone: Vietnam's by default, on a
    machine whose own zone is UTC (or any other), else --tz or VBOT_CDR_TZ."""
    monkeypatch.setenv("TZ", "America/New_York")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    async with FakeVBotServer(count=5, token=TOKEN) as server:
        monkeypatch.setenv("VBOT_TOKEN", TOKEN)
        argv = ["count", "--base-url", server.base_url, "--start-date", "2025-12-01", *options]
        assert await asyncio.to_thread(main, argv) == 0
        [count] = [r for r in server.requests if r.endpoint == "countAll"]
    assert count.params["start_date"] == str(expected)
    capsys.readouterr()


def test_an_unknown_tz_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tz (or VBOT_CDR_TZ) naming no zone is a usage error, before any request."""
    assert main(["count", "--demo", "--tz", "Asia/Hanoi_City"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "unknown time zone 'Asia/Hanoi_City'" in line
    monkeypatch.setenv("VBOT_CDR_TZ", "Nowhere")
    assert main(["count", "--demo"]) == 2
    assert "unknown time zone 'Nowhere'" in capsys.readouterr().err


def test_tz_sets_the_zone_of_exported_times_and_the_summary_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --tz UTC, CSV times carry +00:00, the closing line and --summary name the zone;
    by default they are Vietnam time (+07:00)."""
    for tz, offset in (("UTC", "+00:00"), (None, "+07:00")):
        out, summary = tmp_path / "calls.csv", tmp_path / "run.json"
        argv = ["export", "--demo", "--demo-records", "3", "-o", str(out)]
        argv += ["--summary", str(summary), *(["--tz", tz] if tz else [])]
        assert main(argv) == 0
        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert {row["create_at"][-6:] for row in rows} == {offset}
        name = tz or "Asia/Ho_Chi_Minh"
        assert f"(times in {name})" in capsys.readouterr().err
        report = json.loads(summary.read_text(encoding="utf-8"))
        assert report["tz"] == name
        assert report["started_at"].endswith(offset)


def test_a_failed_xlsx_export_keeps_a_workbook_of_the_calls_written(tmp_path: Path) -> None:
    """An xlsx export stopped midway leaves the target untouched and keeps, as
    ``calls.xlsx.partial``, a valid workbook of the calls written."""
    target = tmp_path / "calls.xlsx"
    result = outputs.ExportFile(target)
    written = [structure_record(raw) for raw in generate_records(4)]

    def write_then_fail() -> None:
        with outputs.export_file(target, outputs.OutputFormat("xlsx"), result) as output:
            output.write(written)
            raise OSError("stopped")

    with pytest.raises(OSError, match="stopped"):
        write_then_fail()
    assert not target.exists()
    assert result.partial == tmp_path / "calls.xlsx.partial"
    opened = tmp_path / "opened.xlsx"  # openpyxl, as Excel, reads .xlsx names only
    opened.write_bytes(result.partial.read_bytes())
    book = openpyxl.load_workbook(opened, read_only=True)
    with contextlib.closing(book):
        rows = list(book["calls"].iter_rows(values_only=True))
    assert [row[CSV_COLUMNS.index("trans_id")] for row in rows[1:]] == [
        record.trans_id for record in written
    ]
