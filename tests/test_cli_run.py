"""What schedulers and analysts rely on in ``vbot-cdr``, each run as a real subprocess.

Signals (sent with `os.kill`), atomic outputs, formats, log lines, progress lines, run
summaries, the help, the schema and the live fake server. Each test waits for observable
events (the fake server's request counter, a line on stderr), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.test_cli import (  # the command-line test helpers
    PATIENCE,
    SECRET,
    clean_environment,  # noqa: F401 - an autouse fixture, for this module too
    one_line,
    python_env,
    read_jsonl,
    run,
    spawn,
)
from vbot_cdr import CallRecord, CollectedField, Hotline, Member, VBotClient, cli
from vbot_cdr.cli import CSV_COLUMNS, build_parser, main
from vbot_cdr.testing import FakeVBotServer, Fault, generate_records

ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="signals to a child need POSIX")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


@pytest.fixture
async def hanging(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVBotServer]:
    """100 calls whose page 3 never answers: a run with pages of 10, one at a time, stalls
    there after writing 20 calls."""
    async with FakeVBotServer(count=100, token=SECRET) as fake:
        fake.inject(Fault(hang=True), page=3)
        yield fake


def env_of(fake: FakeVBotServer, **extra: str) -> dict[str, str]:
    return python_env() | {"VBOT_BASE_URL": fake.base_url, "VBOT_TOKEN": SECRET, **extra}


STALLING = ["--page-size", "10", "--concurrency", "1"]


async def read_line_until(stream: asyncio.StreamReader, wanted: str) -> list[str]:
    """The lines of ``stream`` up to and including the first that contains ``wanted``."""
    lines: list[str] = []
    while not lines or wanted not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), PATIENCE)
        assert line, f"{wanted!r} never came; got {lines}"
        lines.append(line.decode())
    return lines


# -- signals and atomic outputs ----------------------------------------------------------------


@POSIX
@pytest.mark.parametrize(
    ("how", "status", "said"),
    [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGHUP, 129, "stopped by SIGHUP")],
    ids=["SIGTERM", "SIGHUP"],
)
async def test_a_signal_stops_an_export_like_ctrl_c(
    hanging: FakeVBotServer, tmp_path: Path, how: signal.Signals, status: int, said: str
) -> None:
    """SIGTERM and SIGHUP exit 128 + the signal with one line; the previous file is untouched,
    the calls written are kept, whole, in FILE.partial, and the summary says so."""
    out, summary = tmp_path / "calls.jsonl", tmp_path / "summary.json"
    out.write_text('{"previous": "run"}\n', encoding="utf-8")
    argv = ["export", "-o", str(out), *STALLING, "--summary", str(summary)]
    child = await spawn(*argv, env=env_of(hanging))
    await asyncio.wait_for(hanging.wait_for_requests(3, endpoint="getAll"), PATIENCE)
    os.kill(child.pid, how)
    _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    partial = tmp_path / "calls.jsonl.partial"
    assert child.returncode == status
    assert one_line(stderr.decode()) == (
        f"vbot-cdr: {said} after 20 calls ({partial} holds them, whole lines only; "
        f"{out} was not touched)"
    )
    assert read_jsonl(out) == [{"previous": "run"}]
    assert [r["trans_id"] for r in read_jsonl(partial)] == [
        f"TX0-{i:08d}" for i in range(99, 79, -1)
    ]
    report = json.loads(summary.read_text(encoding="utf-8"))
    assert report["complete"] is False
    assert report["exit_code"] == status
    assert report["counts"] == {"written": 20, "expected": 100}
    assert report["files"] == []
    assert report["partial_files"] == [str(partial)]
    assert report["error"]["type"] == "Interrupted"


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


# -- formats -----------------------------------------------------------------------------------


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


def test_parquet_writes_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parquet holds at most PARQUET_ROW_GROUP calls in memory: one row group each."""
    pq = pytest.importorskip("pyarrow.parquet")
    from vbot_cdr import _outputs

    monkeypatch.setattr(_outputs, "PARQUET_ROW_GROUP", 40)
    out = tmp_path / "calls.data"
    argv = ["export", "--demo", "--demo-records", "100", "--format", "parquet", "-o", str(out)]
    assert main([*argv, "-q"]) == 0
    assert pq.ParquetFile(out).metadata.num_row_groups == 3


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


# -- options -----------------------------------------------------------------------------------


async def test_abbreviations_are_refused_and_values_never_echoed() -> None:
    """``--token X`` is not read as ``--token-file X``: exit 2, and X is not shown."""
    child = await spawn("count", "--token", SECRET)
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert "unrecognized arguments: --token (values not shown)" in stderr.decode()
    assert SECRET not in (stdout + stderr).decode()


@pytest.mark.parametrize(
    "argv",
    [["--token", SECRET, "count"], ["count", "--api", SECRET]],
    ids=["value-read-as-command", "bad-choice"],
)
async def test_a_bad_choice_is_not_echoed(argv: list[str], tmp_path: Path) -> None:
    """A value argparse reads as a bad choice (the command, ``--api``) is not shown, neither
    on stderr nor in the summary: after an unknown option, it is likely a secret."""
    summary = tmp_path / "summary.json"
    child = await spawn(*argv, "--summary", str(summary))
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert "invalid choice (value not shown)" in stderr.decode()
    written = summary.read_text()
    assert SECRET not in (stdout + stderr).decode() + written
    assert json.loads(written)["command"] == "count"


def test_the_commands_constant_lists_the_parsers_commands() -> None:
    assert set(cli.COMMANDS) == set(subcommands())


def subcommands() -> dict[str, Any]:
    parser = build_parser()
    [action] = [a for a in parser._actions if a.dest == "command"]
    commands: dict[str, Any] = action.choices  # type: ignore[assignment]
    return commands


def test_every_option_has_help_with_its_default() -> None:
    """Every option of every command says what it does and its default; none takes an
    abbreviation."""
    for name, parser in subcommands().items():
        assert not parser.allow_abbrev, name
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, (name, action.option_strings)
            assert "(default: " in action.help or "(required)" in action.help, (
                name,
                action.option_strings,
            )


async def test_main_help_lists_environment_and_exit_statuses() -> None:
    """``vbot-cdr --help`` lists every environment variable and exit status."""
    child = await spawn("--help")
    stdout, _ = await asyncio.wait_for(child.communicate(), PATIENCE)
    text = stdout.decode()
    for variable in ("VBOT_BASE_URL", "VBOT_TOKEN", "VBOT_USERNAME", "VBOT_PASSWORD"):
        assert variable in text
    for variable in ("VBOT_ID", "VBOT_PROJECT_CODE", "VBOT_CDR_LOG"):
        assert variable in text
    for status in ("0", "1", "2", "129", "130", "143"):
        assert re.search(rf"^  {status} ", text, re.MULTILINE), status


def test_sync_help_does_not_offer_standard_output() -> None:
    """sync refuses standard output, so its help does not offer it."""
    text = subcommands()["sync"].format_help()
    assert "standard output" not in text
    assert "--out FILE" in text


async def test_allow_insecure_http() -> None:
    """Plain http:// to another host is refused with advice naming the option; with it, the
    client goes ahead (and here fails to connect, exit 1)."""
    url = "http://192.0.2.1:9"  # TEST-NET-1: never answers
    env = python_env() | {"VBOT_TOKEN": SECRET}
    refused = await spawn("count", "--base-url", url, env=env)
    _, stderr = await asyncio.wait_for(refused.communicate(), PATIENCE)
    assert refused.returncode == 2
    assert "--allow-insecure-http" in one_line(stderr.decode())
    help_text = subcommands()["count"].format_help()
    assert "--allow-insecure-http" in help_text
    assert "DANGEROUS" in help_text


def test_readme_command_line_matches_help() -> None:
    """Every option and command in ``--help`` appears in the README's command-line section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Command line") : text.index("## Daily loads")]
    missing = []
    for name, parser in subcommands().items():
        if f"`{name}" not in section:
            missing.append(name)
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in section:
                    missing.append(f"{name} {option}")
    assert missing == []


# -- logs, progress, summary -------------------------------------------------------------------


@POSIX
async def test_progress_lines_and_json_logs(hanging: FakeVBotServer, tmp_path: Path) -> None:
    """With stderr not a terminal, a stalled run prints progress lines (every 30 s; shortened
    here), as JSON objects with ISO times under --log-format json."""
    out = tmp_path / "calls.jsonl"
    env = env_of(hanging, VBOT_CDR_PROGRESS_INTERVAL="0.05")
    argv = ["export", "-o", str(out), *STALLING, "--log-format", "json"]
    child = await spawn(*argv, env=env)
    assert child.stderr is not None
    await asyncio.wait_for(hanging.wait_for_requests(3, endpoint="getAll"), PATIENCE)
    # A line written once page 3 hangs shows the 20 calls written before it.
    await read_line_until(child.stderr, '"records":20')
    os.kill(child.pid, signal.SIGTERM)
    _, rest = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 143
    entries = [json.loads(line) for line in rest.decode().splitlines()]
    assert entries[-1]["level"] == "error"
    assert entries[-1]["message"].startswith("stopped by SIGTERM after 20 calls")
    for entry in entries:
        assert ISO_TIME.fullmatch(entry["time"]), entry


async def test_log_level_from_the_environment(tmp_path: Path) -> None:
    """VBOT_CDR_LOG=info logs retries and sync's window commits, as text with ISO times;
    --summary counts them."""
    async with FakeVBotServer(count=200, token=SECRET) as fake:
        fake.inject(Fault(status=503, message="Bận"), page=1)
        out, state, summary = tmp_path / "c.jsonl", tmp_path / "s.json", tmp_path / "run.json"
        argv = ["sync", "--state", str(state), "--out", str(out), "--summary", str(summary)]
        argv += ["--start-date", "2025-12-01T00:00Z", "--end-date", "2025-12-01T02:00Z"]
        argv += ["--window", "1h", "-q"]
        child = await spawn(*argv, env=env_of(fake, VBOT_CDR_LOG="info"))
        _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0, stderr
    lines = stderr.decode().splitlines()
    retries = [line for line in lines if "retrying getAll" in line]
    commits = [line for line in lines if "committed" in line]
    assert len(retries) == 1
    assert len(commits) == 2
    for line in retries + commits:
        assert ISO_TIME.match(line), line
        assert " INFO " in line
    report = json.loads(summary.read_text(encoding="utf-8"))
    assert report["retries"] == 1
    assert report["windows"] == {"planned": 2, "done": 2}
    assert report["complete"] is True
    assert report["files"] == [str(out)]
    assert report["records"] == len(read_jsonl(out)) > 0


async def test_bad_log_level_is_a_usage_error() -> None:
    """An unknown VBOT_CDR_LOG exits 2 before anything runs."""
    child = await spawn("count", "--demo", env=python_env() | {"VBOT_CDR_LOG": "loud"})
    _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert "VBOT_CDR_LOG must be one of debug, info, warning" in one_line(stderr.decode())


async def test_summary_of_a_failure_redacts_secrets(tmp_path: Path) -> None:
    """A failed run's summary gives the error type and message, never the token, even when
    the server echoes it."""
    async with FakeVBotServer(count=20, token=SECRET) as fake:
        fake.inject(Fault(envelope_error=1001, message=f"bad token {SECRET}"), endpoint="countAll")
        summary = tmp_path / "run.json"
        child = await spawn("count", "--summary", str(summary), env=env_of(fake))
        _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 1
    text = summary.read_text(encoding="utf-8")
    assert SECRET not in text + stderr.decode()
    report = json.loads(text)
    assert report["command"] == "count"
    assert report["exit_code"] == 1
    assert report["complete"] is False
    assert report["error"]["type"] == "APIError"
    assert "error 1001" in report["error"]["message"]
    assert report["requests"] == 0  # count runs no iteration: the counters stay at zero
    for key in ("started_at", "ended_at"):
        assert ISO_TIME.fullmatch(report[key])
        assert report[key].endswith("+07:00")  # the run's zone, not the machine's
    assert report["tz"] == "Asia/Ho_Chi_Minh"


async def test_summary_of_options_that_do_not_parse(tmp_path: Path) -> None:
    """Even options that do not parse (exit 2) leave a summary saying why."""
    summary = tmp_path / "run.json"
    child = await spawn("export", "--limit", "-3", "--summary", str(summary))
    _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 2
    assert b"--limit: must be >= 0, got -3" in stderr
    report = json.loads(summary.read_text(encoding="utf-8"))
    assert report["command"] == "export"
    assert report["exit_code"] == 2
    assert report["error"] == {
        "type": "UsageError",
        "message": "argument --limit: must be >= 0, got -3",
    }


# -- the data dictionary -----------------------------------------------------------------------


async def test_schema_is_generated_from_the_models() -> None:
    """``vbot-cdr schema`` prints a JSON Schema with a property per field of CallRecord."""
    child = await spawn("schema")
    stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0, stderr
    schema = json.loads(stdout)
    fields = [f.name for f in attrs.fields(CallRecord) if f.name != "extras"]
    assert list(schema["properties"]) == fields
    assert schema["properties"]["create_at"] == {"type": ["string", "null"], "format": "date-time"}
    member = schema["properties"]["member"]
    assert list(member["properties"]) == [f.name for f in attrs.fields(Member)]
    item = schema["properties"]["call_collected_data"]["items"]
    assert list(item["properties"]) == [f.name for f in attrs.fields(CollectedField)]
    record = generate_records(1)[0]
    assert set(record) <= set(schema["properties"])


def test_fields_dictionary_covers_every_field() -> None:
    """docs/fields.md has a row for every field of CallRecord and of the objects it holds."""
    text = (ROOT / "docs" / "fields.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, re.MULTILINE))
    wanted = {f.name for f in attrs.fields(CallRecord)}
    wanted |= {f"member.{f.name}" for f in attrs.fields(Member)}
    wanted |= {f"hotline.{f.name}" for f in attrs.fields(Hotline)}
    wanted |= {f.name for f in attrs.fields(CollectedField)}
    assert sorted(wanted - documented) == []


# -- the live fake -----------------------------------------------------------------------------


def serial(trans_id: str) -> int:
    return int(trans_id.rpartition("-")[2])


@POSIX
async def test_serve_fake_arrivals_feed_sync(tmp_path: Path) -> None:
    """serve-fake --arrivals-per-second writes new calls created now; each sync run after new
    calls arrived picks them up, each call once."""
    env = python_env() | {"VBOT_CDR_LOG": "debug"}
    child = await spawn("serve-fake", "--records", "10", "--arrivals-per-second", "50", env=env)
    assert child.stdout is not None
    assert child.stderr is not None
    lines = [(await asyncio.wait_for(child.stdout.readline(), PATIENCE)).decode() for _ in "12"]
    settings = dict(line.strip().removeprefix("export ").split("=", 1) for line in lines)
    out, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    argv = ["sync", "--state", str(state), "--out", str(out), "--settle", "0s", "-q"]
    synced, said = -1, []
    try:
        for _ in range(2):
            # Wait for a call newer than every call synced so far (the server logs each batch).
            while True:
                said += await read_line_until(child.stderr, "new calls, the last")
                line = said[-1]
                if serial(line.split()[-1]) > synced:
                    break
            newest = serial(line.split()[-1])
            sync = await spawn(*argv, "--start-date", start, env=python_env() | settings)
            _, stderr = await asyncio.wait_for(sync.communicate(), PATIENCE)
            assert sync.returncode == 0, stderr
            ids = [r["trans_id"] for r in read_jsonl(out)]
            assert all(i.startswith("LATE0-") for i in ids)
            assert max(map(serial, ids)) >= newest > synced
            synced = max(map(serial, ids))
        assert len(ids) == len(set(ids))
    finally:
        os.kill(child.pid, signal.SIGTERM)
        _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0
    assert "50 new calls a second" in said[0]


# -- observability -----------------------------------------------------------------------------


async def test_trace_configs_see_every_request() -> None:
    """VBotClient(trace_configs=...) passes aiohttp TraceConfigs to the session it opens."""
    import aiohttp

    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with (
        FakeVBotServer(count=30, token=SECRET) as fake,
        VBotClient(SECRET, base_url=fake.base_url, trace_configs=[trace]) as client,
    ):
        assert await client.count_calls() == 30
        assert len([c async for c in client.iter_calls(page_size=10)]) == 30
    assert seen.count("/api/campaignCall/cdr/countAll") == 2
    assert seen.count("/api/campaignCall/cdr/getAll") >= 3
