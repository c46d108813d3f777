"""``vbot-cdr conversations`` and ``vbot-cdr recordings`` (`vbot_cdr.cli._bulk`)."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._cli import SECRET, one_line, read_jsonl, run
from vbot_cdr.testing import FakeVBotServer, Fault, RecordingHabits, make_conversation


def turns_of(server: FakeVBotServer, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns the server's conversation of ``record`` has (JSON turns in v2)."""
    assert server.api == "v2"
    turns: list[dict[str, Any]] = orjson.loads(make_conversation(record))
    return turns


def names(directory: Path, pattern: str = "*") -> list[str]:
    return sorted(path.name for path in directory.glob(pattern))


async def test_conversations_a_row_per_turn(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every call is in the file once per turn (or once without a turn), with its create_at."""
    out = tmp_path / "turns.jsonl"
    assert await run("conversations", "--out", str(out), "--concurrency", "4") == 0
    rows = read_jsonl(out)
    by_call = Counter(row["trans_id"] for row in rows)
    records = {r["trans_id"]: r for r in server.records}
    assert set(by_call) == set(records)
    for trans_id, count in by_call.items():
        turns = turns_of(server, records[trans_id])
        assert count == max(1, len(turns))
    first = next(row for row in rows if row["turn"] == 1)
    record = records[first["trans_id"]]
    assert first["role"] == turns_of(server, record)[0]["speaker"]
    assert first["content"] == turns_of(server, record)[0]["text"]
    assert first["create_at"] == record["create_at"]
    assert first["created"].endswith("+00:00")
    assert names(tmp_path) == ["turns.jsonl"]  # no temporary file left
    assert server.count("getBotConversation") == 250
    written = sum(1 for row in rows if row["turn"] is not None)
    assert one_line(capsys.readouterr().err).startswith(
        f"vbot-cdr: wrote the conversations of 250 calls ({written} turns) to {out}"
    )


async def test_conversations_as_csv(server: FakeVBotServer, tmp_path: Path) -> None:
    """CSV has the turn columns in order, a row per turn."""
    out = tmp_path / "turns.csv"
    assert (
        await run("conversations", "--out", str(out), "--campaign-code", "CMP_XACNHAN_DON", "-q")
        == 0
    )
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["trans_id", "turn", "role", "content", "create_at", "created"]
    selected = {r["trans_id"] for r in server.records if r["campaign_code"] == "CMP_XACNHAN_DON"}
    assert selected
    assert {row[0] for row in rows[1:]} == selected


async def test_conversations_failure_names_the_call(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A conversation the server refuses stops the run (exit 1) with the call named; the
    target is not created and what was written is kept as .partial."""
    server.inject(Fault(status=409), endpoint="getBotConversation")
    out = tmp_path / "turns.jsonl"
    assert await run("conversations", "--out", str(out), "--concurrency", "1") == 1
    message = one_line(capsys.readouterr().err)
    failed = next(r.params["trans_id"] for r in server.requests if r.fault == "409")
    assert f"call {failed}" in message
    assert "HTTP 409" in message
    assert SECRET not in message
    assert not out.exists()


async def test_conversations_as_parquet(server: FakeVBotServer, tmp_path: Path) -> None:
    """Parquet holds the same rows, with created a UTC timestamp."""
    import pyarrow.parquet as pq

    out = tmp_path / "turns.parquet"
    assert (
        await run("conversations", "--out", str(out), "--campaign-code", "CMP_NHACNO_T11", "-q")
        == 0
    )
    table = pq.read_table(out)
    assert table.column_names == ["trans_id", "turn", "role", "content", "create_at", "created"]
    assert str(table.schema.field("created").type) == "timestamp[us, tz=UTC]"
    rows = table.to_pylist()
    selected = {r["trans_id"]: r for r in server.records if r["campaign_code"] == "CMP_NHACNO_T11"}
    assert selected
    assert {row["trans_id"] for row in rows} == set(selected)
    first = rows[0]
    assert first["created"].timestamp() == selected[first["trans_id"]]["create_at"]


async def test_recordings_then_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """recordings writes a file per recorded call and the manifest; run again, it reuses
    them and fetches only the file that was damaged."""
    async with FakeVBotServer(
        count=60, token=SECRET, recordings=RecordingHabits(bytes_per_second=50)
    ) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        out = tmp_path / "recs"
        assert await run("recordings", "--out", str(out)) == 0
        manifest = [
            orjson.loads(line) for line in (out / "manifest.jsonl").read_bytes().splitlines()
        ]
        assert len(manifest) == 60
        files = [entry for entry in manifest if entry["file"]]
        for entry in files:
            data = (out / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        first = one_line(capsys.readouterr().err)
        assert f"{len(files)} downloaded" in first
        assert SECRET not in (out / "manifest.jsonl").read_text()

        (out / files[0]["file"]).write_bytes(b"truncated")
        fake.reset_counters()
        assert await run("recordings", "--out", str(out), "-q") == 0
        asked = sum(1 for entry in manifest if entry["reason"] != "not recorded")
        not_found = sum(1 for entry in manifest if entry["reason"] == "not found")
        assert fake.count("record") == 1 + not_found
        assert asked >= len(files)
        data = (out / files[0]["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == files[0]["sha256"]


async def test_recordings_refuse_what_is_not_audio(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A page that is not audio stops the run (exit 1), naming the call and how to resume."""
    server.recordings = RecordingHabits(bytes_per_second=50, html=1.0)
    out = tmp_path / "recs"
    assert await run("recordings", "--out", str(out)) == 1
    message = one_line(capsys.readouterr().err)
    assert "text/html" in message
    assert "run it again to resume" in message
    assert names(out, "*.partial") == []
    assert names(out) == ["manifest.jsonl"]


async def test_conversations_as_xlsx(server: FakeVBotServer, tmp_path: Path) -> None:
    """xlsx holds the same rows on a sheet ``turns`` with a header and an autofilter, text
    as text and create_at an Excel datetime in --tz."""
    import datetime as dt
    import zoneinfo

    import openpyxl

    out = tmp_path / "turns.xlsx"
    arguments = ("--campaign-code", "CMP_NHACNO_T11", "--tz", "Asia/Ho_Chi_Minh", "-q")
    assert await run("conversations", "--out", str(out), *arguments) == 0
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["turns"]
    sheet = book["turns"]
    header = [cell.value for cell in sheet[1]]
    assert header == ["trans_id", "turn", "role", "content", "create_at"]
    assert sheet.cell(1, 1).font.bold
    assert sheet.auto_filter.ref == f"A1:E{sheet.max_row}"
    rows = list(sheet.iter_rows(2, values_only=True))
    selected = {r["trans_id"]: r for r in server.records if r["campaign_code"] == "CMP_NHACNO_T11"}
    assert selected
    assert Counter(row[0] for row in rows) == {
        trans_id: max(1, len(turns_of(server, record))) for trans_id, record in selected.items()
    }
    zone = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
    for trans_id, turn, role, content, create_at in rows:
        record = selected[trans_id]
        local = dt.datetime.fromtimestamp(record["create_at"], zone).replace(tzinfo=None)
        assert create_at == local
        if turn is not None:
            spoken = turns_of(server, record)[turn - 1]
            assert (role, content) == (spoken["speaker"], spoken["text"])
    first = sheet.cell(2, 1)
    assert first.data_type == "s"
    assert sheet.cell(2, 5).is_date
    assert names(tmp_path) == ["turns.xlsx"]
