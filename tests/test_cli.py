"""The ``vbot-cdr`` command line, end to end against the fake server.

Most tests call ``main(argv)`` in-process: directly for ``--demo`` runs, or in a worker thread
while the test's event loop serves a fake server it controls. A few run ``python -m vbot_cdr``
in a subprocess: the entry point, Ctrl-C, a closed pipe and ``serve-fake``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vbot_cdr import VBotClient
from vbot_cdr._decoding import structure_record
from vbot_cdr.cli import CSV_COLUMNS, main, parse_date
from vbot_cdr.testing import FakeVBotServer, Fault, generate_records, make_conversation

SECRET = "tok-S3CRET-never-shown"
#: Bounds every wait on a subprocess, so a broken test fails instead of hanging.
PATIENCE = 60


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VBOT_* settings leak in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("VBOT_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVBotServer]:
    """A fake server with 250 records, named by the environment as a real one would be."""
    async with FakeVBotServer(count=250, token=SECRET) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        yield fake


async def run(*argv: str) -> int:
    """``main(argv)`` in a worker thread, so this loop keeps serving the fake server."""
    return await asyncio.to_thread(main, list(argv))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def one_line(text: str) -> str:
    """The single line ``text`` holds (what an expected failure prints)."""
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# -- export ------------------------------------------------------------------------------------


def test_demo_export_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's command exports the demo data, newest first, and says so on stderr."""
    out = tmp_path / "calls.jsonl"
    assert main(["export", "--demo", "--demo-records", "250", "--out", str(out)]) == 0
    records = read_jsonl(out)
    assert [r["trans_id"] for r in records] == [f"TX0-{i:08d}" for i in reversed(range(250))]
    # The seed's shape with v2's spelling of the outcome, plus the fields only v3 sends (null).
    first = generate_records(1)[0]
    v2_outcome = {"ANSWERED": "answer", "NO ANSWER": "noanswer", "BUSY": "busy"}
    served = first | {"disposition": v2_outcome.get(first["disposition"], "chanunavail")}
    assert records[-1] == structure_record(served).to_dict()
    assert set(records[-1]) - set(generate_records(1)[0]) == {
        "external_call_id",
        "campaign_id",
        "campaign_group_id",
        "template_script_id",
        "bot_member_status_connect",
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
    """CSV flattens members and hotlines into dotted columns and keeps collected data as JSON."""
    out = tmp_path / "calls.csv"
    assert main(["export", "--demo", "--demo-records", "40", "--out", str(out), "-q"]) == 0
    with out.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert "member.vbot_id" in CSV_COLUMNS
    assert CSV_COLUMNS[-1] == "extras"
    assert len(rows) == 40
    for row, record in zip(rows, reversed(generate_records(40)), strict=True):
        assert row["trans_id"] == record["trans_id"]
        assert row["member.name"] == record["member"]["name"]
        assert row["hotline.phone_number"] == record["hotline"]["phone_number"]
        assert json.loads(row["call_collected_data"]) == record["call_collected_data"]
        assert row["is_record"] == ("true" if record["is_record"] else "false")
        assert row["answer_at"] == ("" if record["answer_at"] is None else str(record["answer_at"]))
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


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On a terminal, stderr shows a progress bar with the total from countAll and the rate."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = str(tmp_path / "calls.jsonl")
    assert main(["export", "--demo", "--demo-records", "300", "--out", out]) == 0
    shown = terminal.getvalue()
    assert "300/300" in shown
    assert "calls/s" in shown
    terminal.truncate(0)
    assert main(["export", "--demo", "--demo-records", "300", "--out", out, "--quiet"]) == 0
    assert terminal.getvalue().strip("\0") == ""


async def test_export_with_the_environment(
    server: FakeVBotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """VBOT_ID, VBOT_PROJECT_CODE and the paging options go on every request."""
    monkeypatch.setenv("VBOT_ID", "VB0042")
    monkeypatch.setenv("VBOT_PROJECT_CODE", "NHOM01")
    out = tmp_path / "calls.jsonl"
    code = await run("export", "-o", str(out), "--page-size", "60", "--concurrency", "2", "-q")
    assert code == 0
    assert len(read_jsonl(out)) == 250
    assert server.counts() == {"countAll": 1, "getAll": 5}
    for request in server.requests:
        assert (request.params["vbot_id"], request.params["project_code"]) == ("VB0042", "NHOM01")
    assert {r.params.get("size") for r in server.requests} == {None, "60"}
    assert server.peak_in_flight <= 2


async def test_token_file(
    server: FakeVBotServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--token-file is read instead of VBOT_TOKEN; an unreadable one is a clear error."""
    monkeypatch.delenv("VBOT_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n", encoding="utf-8")
    assert await run("count", "--token-file", str(token_file)) == 0
    assert capsys.readouterr().out == "250\n"
    assert await run("count", "--token-file", str(tmp_path / "missing")) == 2  # configuration
    assert "cannot read the token file" in one_line(capsys.readouterr().err)


# -- the other commands ------------------------------------------------------------------------


def test_count_and_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    """count prints the number; conversation prints the server's string as is."""
    assert main(["count", "--demo", "--demo-records", "99"]) == 0
    assert capsys.readouterr().out == "99\n"
    assert main(["conversation", "--demo", "TX0-00000003"]) == 0
    assert capsys.readouterr().out == make_conversation(generate_records(4)[3]) + "\n"


# -- failures ----------------------------------------------------------------------------------


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


async def test_failure_envelope(server: FakeVBotServer, capsys: pytest.CaptureFixture[str]) -> None:
    """A failure envelope prints the server's code and message."""
    server.inject(Fault(envelope_error=1001, message="Sai mã dự án"), endpoint="countAll")
    assert await run("count") == 1
    assert one_line(capsys.readouterr().err) == (
        "vbot-cdr: count failed: countAll: HTTP 200, error 1001: Sai mã dự án"
    )


async def test_refused_token_is_never_shown(
    server: FakeVBotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused token fails with one line that does not contain the token."""
    server.token = "another-token"
    assert await run("export", "--verbose") == 1
    captured = capsys.readouterr()
    assert "HTTP 401" in one_line(captured.err)
    assert SECRET not in captured.out + captured.err


async def test_unwritable_output(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output file that cannot be created is one line and exit 1."""
    assert await run("export", "-o", str(tmp_path / "missing" / "calls.jsonl")) == 1
    assert one_line(capsys.readouterr().err).startswith("vbot-cdr: cannot write")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["count"], {}, "no API address: set VBOT_BASE_URL"),
        (["count"], {"VBOT_BASE_URL": "https://api.example.vn"}, "no credentials: set VBOT_TOKEN"),
        (
            ["count", "--base-url", "http://api.example.vn"],
            {"VBOT_TOKEN": SECRET},
            "refusing plain http://",
        ),
        (["count", "--demo-records", "5"], {}, "--demo-records and --demo-seed need --demo"),
    ],
    ids=["no-url", "no-token", "insecure-url", "demo-option-alone"],
)
def test_bad_configuration(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing or unusable configuration is one line and exit 2, before any request."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in one_line(captured.err)
    assert SECRET not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["export", "--limit", "-1"],
        ["export", "--concurrency", "0"],
        ["export", "--format", "xml"],
        ["export", "--start-date", "hôm qua"],
        ["export", "--status", "ANSWERED"],
        ["export", "--timeout", "0"],
        ["export", "--first-page", "2"],
        ["conversation"],
        ["serve-fake", "--faults", "meteor_strike=0.1"],
        ["serve-fake", "--faults", "server_error=2"],
    ],
    ids=lambda argv: " ".join(argv) or "no-command",
)
def test_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options exit 2 with argparse's usage and a one-line reason."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_start_after_end(capsys: pytest.CaptureFixture[str]) -> None:
    """A start date after the end date is refused before any request."""
    assert main(["count", "--demo", "--start-date", "2025-12-02", "--end-date", "2025-12-01"]) == 2
    assert "is after end_date" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1764547200", 1764547200),
        ("2025-12-01T07:00:00+07:00", 1764547200),
        ("2025-12-01T00:00:00Z", 1764547200),
    ],
)
def test_parse_date(text: str, expected: int) -> None:
    """Dates are epochs (kept as given) or ISO 8601 with an offset."""
    value = parse_date(text)
    assert (value if isinstance(value, int) else int(value.timestamp())) == expected


def test_dates_without_offset_are_local() -> None:
    """An ISO date without an offset is an aware datetime in the local time zone."""
    value = parse_date("2025-12-01")
    assert not isinstance(value, int)
    assert value.tzinfo is not None
    assert (value.year, value.month, value.day, value.hour) == (2025, 12, 1, 0)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("vbot-cdr ")


# -- subprocesses ------------------------------------------------------------------------------


def python_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("VBOT_")}


async def spawn(*argv: str, **options: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vbot_cdr",
        *argv,
        env=options.pop("env", python_env()),
        stdout=options.pop("stdout", asyncio.subprocess.PIPE),
        stderr=asyncio.subprocess.PIPE,
        **options,
    )


async def test_python_m_vbot_cdr_demo(tmp_path: Path) -> None:
    """``python -m vbot_cdr export --demo`` exports the demo data."""
    out = tmp_path / "calls.jsonl"
    process = await spawn("export", "--demo", "--demo-records", "120", "--out", str(out))
    stdout, stderr = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode == 0, stderr
    assert len(read_jsonl(out)) == 120
    assert stdout == b""
    assert b"exported 120 calls" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
async def test_ctrl_c_leaves_only_complete_lines(tmp_path: Path) -> None:
    """Ctrl-C mid-export exits 130 with one line; the file holds the pages written, whole."""
    async with FakeVBotServer(count=100, token=SECRET) as fake:
        fake.inject(Fault(hang=True), page=3)
        out = tmp_path / "calls.jsonl"
        env = python_env() | {"VBOT_BASE_URL": fake.base_url, "VBOT_TOKEN": SECRET}
        argv = ["export", "-o", str(out), "--page-size", "10", "--concurrency", "1"]
        process = await spawn(*argv, env=env)
        # With one request in flight, page 3 is asked for only once page 2 is written.
        await asyncio.wait_for(fake.wait_for_requests(3, endpoint="getAll"), PATIENCE)
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode == 130
    partial = tmp_path / "calls.jsonl.partial"
    assert one_line(stderr.decode()) == (
        f"vbot-cdr: interrupted after 20 calls ({partial} holds them, whole lines only; "
        f"{out} was not touched)"
    )
    expected = [f"TX0-{i:08d}" for i in range(99, 79, -1)]
    assert [r["trans_id"] for r in read_jsonl(partial)] == expected
    assert not out.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="pipes close differently on Windows")
def test_closed_pipe_stops_quietly() -> None:
    """When the reader of standard output goes away (``| head``), the export stops quietly."""
    argv = [sys.executable, "-m", "vbot_cdr", "export", "--demo", "--demo-records", "20000"]
    with subprocess.Popen(
        argv, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        # More than a pipe's buffer is still to come, so the next write finds no reader.
        process.stdout.close()
        _, stderr = process.communicate(timeout=PATIENCE)
    assert json.loads(first)["trans_id"] == "TX0-00019999"
    assert process.returncode == 1
    assert stderr == b""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
async def test_serve_fake() -> None:
    """serve-fake prints its URL and token as shell lines, serves them, and stops on Ctrl-C."""
    process = await spawn("serve-fake", "--records", "30", "--first-page", "0")
    assert process.stdout is not None
    lines = [
        (await asyncio.wait_for(process.stdout.readline(), PATIENCE)).decode().strip()
        for _ in range(2)
    ]
    settings = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert set(settings) == {"VBOT_BASE_URL", "VBOT_TOKEN"}
    async with VBotClient(
        settings["VBOT_TOKEN"], base_url=settings["VBOT_BASE_URL"], first_page=0
    ) as client:
        assert await client.count_calls() == 30
        assert len([r async for r in client.iter_calls(page_size=7)]) == 30
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode == 0
    assert b"serving 30 fake calls" in stderr
    assert b"Traceback" not in stderr
