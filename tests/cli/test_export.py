"""``vbot-cdr export`` (`vbot_cdr.cli._export`): formats, atomic files, filters, failures."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import json
import os
from pathlib import Path

import pytest

from tests._cli import (
    PATIENCE,
    SECRET,
    env_of,
    one_line,
    read_jsonl,
    run,
    spawn,
)
from tests._records import json_document, served_by_v2
from vbot_cdr._decoding import structure_record
from vbot_cdr._models import WEBHOOK_ONLY, epoch_to_datetime
from vbot_cdr._table import zone
from vbot_cdr.cli import CSV_COLUMNS, main
from vbot_cdr.cli._outputs import ExportFile, OutputFormat, export_file
from vbot_cdr.testing import FakeVBotServer, Fault, generate_records


def test_demo_export_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's command exports the demo data, newest first, and says so on stderr."""
    out = tmp_path / "calls.jsonl"
    assert main(["export", "--demo", "--demo-records", "250", "--out", str(out)]) == 0
    records = read_jsonl(out)
    assert [r["trans_id"] for r in records] == [f"TX0-{i:08d}" for i in reversed(range(250))]
    # The seed's shape (v2's spelling of the outcome), plus the fields only v3 sends and only
    # the webhook sends (null here).
    first = structure_record(served_by_v2(generate_records(1)[0]))
    assert records[-1] == json_document(first, zone("Asia/Ho_Chi_Minh"))
    assert records[-1]["create_at"] == "2025-12-01T07:00:00+07:00"
    assert set(records[-1]) - set(generate_records(1)[0]) == {
        "external_call_id",
        "campaign_id",
        "campaign_group_id",
        "template_script_id",
        "bot_member_status_connect",
        *(name for name in WEBHOOK_ONLY if "." not in name),
    }
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err).startswith(f"vbot-cdr: exported 250 calls to {out}")


def test_export_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """Without --out the lines go to standard output; --quiet leaves stderr empty."""
    assert main(["export", "--demo", "--demo-records", "30", "--quiet", "--limit", "7"]) == 0
    captured = capsysbinary.readouterr()
    lines = captured.out.decode().splitlines()
    assert len(lines) == 7
    assert json.loads(lines[0])["trans_id"] == "TX0-00000029"
    assert captured.err == b""


def test_export_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every filter option reaches the server; the dates select inclusively."""
    out = tmp_path / "busy.jsonl"
    first, last = generate_records(200)[50]["create_at"], generate_records(200)[120]["create_at"]
    argv = ["--demo", "--demo-records", "200", "--disposition", "BUSY"]
    argv += ["--start-date", str(first), "--end-date", str(last), "--hotline", "HL_HN_01"]
    assert main(["export", *argv, "--out", str(out)]) == 0
    assert main(["count", *argv]) == 0
    expected = [
        r["trans_id"]
        for r in reversed(generate_records(200)[50:121])
        if r["disposition"] == "BUSY" and r["hotline"]["code"] == "HL_HN_01"
    ]
    assert [r["trans_id"] for r in read_jsonl(out)] == expected
    assert capsys.readouterr().out == f"{len(expected)}\n"


def test_export_csv(tmp_path: Path) -> None:
    """CSV has the one table shape: members and hotlines flattened into ``member_name``...,
    collected data as JSON, times as ISO 8601 in Vietnam time (the default zone)."""
    out = tmp_path / "calls.csv"
    assert main(["export", "--demo", "--demo-records", "40", "--out", str(out), "-q"]) == 0
    with out.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert "member_vbot_id" in CSV_COLUMNS
    assert CSV_COLUMNS[-1] == "extras"
    assert len(rows) == 40
    for row, record in zip(rows, reversed(generate_records(40)), strict=True):
        assert row["trans_id"] == record["trans_id"]
        assert row["member_name"] == record["member"]["name"]
        assert row["hotline_phone_number"] == record["hotline"]["phone_number"]
        assert json.loads(row["call_collected_data"]) == record["call_collected_data"]
        assert row["is_record"] == ("true" if record["is_record"] else "false")
        answered = epoch_to_datetime(record["answer_at"], zone("Asia/Ho_Chi_Minh"))
        assert row["answer_at"] == ("" if answered is None else answered.isoformat())
        assert dt.datetime.fromisoformat(row["create_at"]).utcoffset() == dt.timedelta(hours=7)
        assert row["extras"] == ""


async def test_csv_keeps_unknown_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fields the API document does not list go, as JSON, into the extras column."""
    given = [dict(r, queue="Q1") for r in generate_records(3)]
    async with FakeVBotServer(given, token=SECRET) as fake:
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        out = tmp_path / "calls.txt"
        code = await run("export", "--base-url", fake.base_url, "--format", "csv", "-o", str(out))
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [json.loads(row["extras"]) for row in rows] == [{"queue": "Q1"}] * 3


async def test_failing_server_mid_export(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A page that keeps failing ends the export with one line and exit 1.

    The previous file is left as it was; the 200 calls written are kept, in whole lines, in
    a file whose name says it is partial.
    """
    server.inject(*[Fault(status=500, message="Lỗi hệ thống")] * 10, page=3)
    out = tmp_path / "calls.jsonl"
    out.write_text('{"previous": "run"}\n', encoding="utf-8")
    code = await run("export", "-o", str(out), "--concurrency", "1", "--timeout", "5")
    assert code == 1
    line = one_line(capsys.readouterr().err)
    partial = tmp_path / "calls.jsonl.partial"
    assert line.startswith(
        f"vbot-cdr: export failed after 200 calls ({partial} holds them, whole lines only; "
        f"{out} was not touched)"
    )
    assert "getAll (page 3): HTTP 500, error 500: Lỗi hệ thống" in line
    assert len(read_jsonl(partial)) == 200
    assert read_jsonl(out) == [{"previous": "run"}]
    assert sorted(os.listdir(tmp_path)) == ["calls.jsonl", "calls.jsonl.partial"]


async def test_unwritable_output(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output file that cannot be created is one line and exit 1."""
    assert await run("export", "-o", str(tmp_path / "missing" / "calls.jsonl")) == 1
    assert one_line(capsys.readouterr().err).startswith("vbot-cdr: cannot write")


async def test_a_refused_export_leaves_files_as_they_were(tmp_path: Path) -> None:
    """A refused token (exit 1) leaves the previous file as it was, and creates no new one: a
    loader never picks up an empty file."""
    async with FakeVBotServer(count=50, token="another-token") as fake:
        previous, new = tmp_path / "previous.csv", tmp_path / "new.jsonl"
        previous.write_text("phone\n0912\n", encoding="utf-8")
        for out in (previous, new):
            refused = await spawn("export", "-o", str(out), env=env_of(fake))
            _, stderr = await asyncio.wait_for(refused.communicate(), PATIENCE)
            assert refused.returncode == 1
            assert "HTTP 401" in one_line(stderr.decode())
    assert previous.read_text(encoding="utf-8") == "phone\n0912\n"
    assert os.listdir(tmp_path) == ["previous.csv"]


async def test_parquet_export_has_one_typed_schema_in_row_groups(tmp_path: Path) -> None:
    """--format parquet (or a .parquet suffix) writes every call with the models' types, in
    row groups, and keeps unknown fields as JSON in the extras column."""
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "calls.parquet"
    child = await spawn("export", "--demo", "--demo-records", "120", "--out", str(out), "-q")
    _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0, stderr
    table = pq.read_table(out)
    assert table.num_rows == 120
    rows = table.to_pylist()
    expected = list(reversed(generate_records(120)))
    assert [r["trans_id"] for r in rows] == [r["trans_id"] for r in expected]
    assert rows[0]["member_name"] == expected[0]["member"]["name"]
    assert json.loads(rows[0]["call_collected_data"]) == expected[0]["call_collected_data"]
    assert rows[0]["create_at"] == dt.datetime.fromtimestamp(
        expected[0]["create_at"], dt.timezone.utc
    )
    types = {field.name: str(field.type) for field in table.schema}
    assert types["create_at"] == "timestamp[ms, tz=UTC]"
    assert types["phone"] == "string"
    assert types["postage"] == "double"
    assert types["is_record"] == "bool"
    assert types["extras"] == "string"
    assert tuple(types) == CSV_COLUMNS


def test_parquet_writes_row_groups(tmp_path: Path) -> None:
    """Parquet holds at most ``parquet_row_group`` calls in memory: one row group each."""
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "calls.parquet"
    result = ExportFile(out)
    records = [structure_record(raw) for raw in generate_records(100)]
    with export_file(out, OutputFormat("parquet", parquet_row_group=40), result) as writer:
        writer.write(records)
    assert result.complete
    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    assert pq.ParquetFile(out).metadata.num_rows == 100


async def test_extras_reach_csv_and_parquet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A field the models do not list is kept, as JSON, in the extras column."""
    pq = pytest.importorskip("pyarrow.parquet")
    given = [dict(r, queue="Q1") for r in generate_records(3)]
    async with FakeVBotServer(given, token=SECRET) as fake:
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        out = tmp_path / "calls.parquet"
        assert await run("export", "--base-url", fake.base_url, "-o", str(out), "-q") == 0
    assert [json.loads(v) for v in pq.read_table(out).column("extras").to_pylist()] == [
        {"queue": "Q1"}
    ] * 3


@pytest.mark.parametrize("name", ["calls.jsonl.gz", "calls.json.gz"])
def test_gzip_json_lines(tmp_path: Path, name: str) -> None:
    """A .gz suffix compresses the JSON Lines."""
    out = tmp_path / name
    assert main(["export", "--demo", "--demo-records", "30", "-o", str(out), "-q"]) == 0
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert [json.loads(line)["trans_id"] for line in lines][-1] == "TX0-00000000"
    assert len(lines) == 30


def test_csv_for_excel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--excel starts the CSV with a byte-order mark and writes times as Excel reads them,
    in Vietnam time (the default zone, not the machine's), and codes of digits as text
    formulas (so Excel keeps their leading zeros), in the same columns."""
    monkeypatch.setenv("TZ", "UTC")
    out = tmp_path / "calls.csv.gz"
    assert main(["export", "--demo", "--demo-records", "5", "-o", str(out), "--excel", "-q"]) == 0
    text = gzip.decompress(out.read_bytes()).decode("utf-8")
    assert text.startswith("\ufeffphone,name,")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    assert tuple(rows[0]) == CSV_COLUMNS
    record = generate_records(5)[4]
    vietnam = dt.timezone(dt.timedelta(hours=7))
    local = dt.datetime.fromtimestamp(record["create_at"], vietnam)
    assert rows[0]["create_at"] == f"{local:%Y-%m-%d %H:%M:%S}"
    assert record["phone"].startswith("0")
    assert rows[0]["phone"] == f'="{record["phone"]}"'
    assert rows[0]["sip_code"] == record["sip_code"]  # 200: no zero to lose
    assert rows[0]["name"] == record["name"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-o", "calls.xls"], "cannot tell the format of calls.xls"),
        (["-o", "calls.parquet.gz"], "parquet needs --out FILE"),
        (["--format", "parquet"], "parquet needs --out FILE"),
        (["-o", "calls.xlsx.gz"], "xlsx needs --out FILE"),
        (["--format", "xlsx"], "xlsx needs --out FILE"),
        (["-o", "calls.jsonl", "--excel"], "--excel applies to CSV only"),
    ],
    ids=["unknown-suffix", "parquet-gz", "parquet-stdout", "xlsx-gz", "xlsx-stdout", "excel-jsonl"],
)
def test_formats_are_never_guessed(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown suffix without --format, or formats that cannot work, exit 2 and write
    nothing."""
    os.chdir(tmp_path)
    assert main(["export", "--demo", "--demo-records", "5", *argv]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
