"""``vbot-cdr sync`` and ``export --window``, end to end against the fake server.

The command line reads the real clock, so these tests cap each run with ``--end-date`` (which
the state ignores, as it does ``--start-date``): the results do not depend on today's date.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests._cli import (  # the command-line test helpers
    PATIENCE,
    SECRET,
    one_line,
    python_env,
    read_jsonl,
    run,
    spawn,
)
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer, Fault
from vbot_cdr.testing._data import DEFAULT_START, RecordGenerator

HOUR = 3600
SPACING = 37  # seconds between generated records


def calls_at(prefix: str, created: list[int]) -> list[dict[str, Any]]:
    """Calls created at ``created``, to write into the fake server at any time."""
    generator = RecordGenerator(seed=5, id_prefix=prefix)
    return [generator.record(i, created=at) for i, at in enumerate(created)]


def read_state(path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def ids_in(path: Path) -> list[str]:
    return [record["trans_id"] for record in read_jsonl(path)]


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVBotServer]:
    """A fake server of 600 calls, named by the environment."""
    async with FakeVBotServer(count=600, token=SECRET) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        yield fake


def test_demo_sync_into_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A first sync writes one file named after its span; a second has nothing new to write."""
    calls, state = tmp_path / "calls", tmp_path / "state.json"
    calls.mkdir()
    argv = ["sync", "--demo", "--demo-records", "300", "--state", str(state)]
    argv += ["--out", f"{calls}/", "--start-date", "2025-12-01T00:00Z", "--window", "1h"]
    assert main([*argv, "--end-date", "2025-12-01T05:00Z"]) == 0
    [written] = calls.iterdir()
    assert written.name == "calls-20251201T000000Z-20251201T050000Z.jsonl"
    assert sorted(ids_in(written)) == [f"TX0-{i:08d}" for i in range(300)]
    assert read_state(state)["watermark"] == DEFAULT_START + 5 * HOUR
    said = one_line(capsys.readouterr().err)
    assert said.startswith(f"vbot-cdr: synced 300 new calls to {written} in ")
    assert said.endswith(f"s (5 windows, times in Asia/Ho_Chi_Minh); state saved in {state}")
    # Up to date: nothing to read. Later, with no new call: no empty file is left behind.
    assert main([*argv, "--end-date", "2025-12-01T05:00Z"]) == 0
    assert "nothing to sync yet" in capsys.readouterr().err
    assert main([*argv, "--end-date", "2025-12-01T07:00Z"]) == 0
    assert list(calls.iterdir()) == [written]


async def test_two_syncs_with_new_and_late_calls_append_each_call_once(
    server: FakeVBotServer, tmp_path: Path
) -> None:
    """Appending to one file, two runs with new and late calls between hold each call once."""
    out, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    first_end = DEFAULT_START + 300 * SPACING
    argv = ["sync", "--state", str(state), "--out", str(out), "--window", "2h", "-q"]
    assert await run(*argv, "--start-date", str(DEFAULT_START), "--end-date", str(first_end)) == 0
    assert len(ids_in(out)) == 301
    # Late calls within the 10-minute lookback, one on the watermark itself; and new ones.
    server.add_records(calls_at("LATE", [first_end, first_end - 1, first_end - 599]))
    server.add_records(calls_at("NEW", [first_end + 1, first_end + 5000]))
    second_end = DEFAULT_START + 599 * SPACING
    assert await run(*argv, "--end-date", str(second_end)) == 0
    ids = ids_in(out)
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["trans_id"] for r in server.records if r["create_at"] <= second_end}
    assert {"LATE5-00000000", "LATE5-00000001", "LATE5-00000002"} <= set(ids)


async def test_csv_file_gets_one_header_across_runs(server: FakeVBotServer, tmp_path: Path) -> None:
    """Appending CSV writes the header once, when the file is new."""
    out, state = tmp_path / "calls.csv", tmp_path / "state.json"
    argv = ["sync", "--state", str(state), "--out", str(out), "-q"]
    middle = DEFAULT_START + 200 * SPACING
    assert await run(*argv, "--start-date", str(DEFAULT_START), "--end-date", str(middle)) == 0
    assert await run(*argv, "--end-date", str(DEFAULT_START + 599 * SPACING)) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == len({row["trans_id"] for row in rows}) == 600


async def test_a_torn_last_line_is_cut_before_appending(
    server: FakeVBotServer, tmp_path: Path
) -> None:
    """A partial last line (a crash mid-write: power loss, a full disk) is cut, not extended."""
    out, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    argv = ["sync", "--state", str(state), "--out", str(out), "-q"]
    middle = DEFAULT_START + 200 * SPACING
    assert await run(*argv, "--start-date", str(DEFAULT_START), "--end-date", str(middle)) == 0
    with out.open("ab") as stream:
        stream.write(b'{"phone":"0912345678","name":"Nguy')
    assert await run(*argv, "--end-date", str(DEFAULT_START + 599 * SPACING)) == 0
    ids = ids_in(out)  # every line parses
    assert len(ids) == len(set(ids)) == 600


async def test_sync_refusals_are_one_line_with_status_2(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad state, no start, or no output file: exit 2 with one line, and no request sent."""
    state, out = tmp_path / "state.json", str(tmp_path / "calls.jsonl")
    assert await run("sync", "--state", str(state), "--out", out) == 2
    assert "give the filter a start_date" in one_line(capsys.readouterr().err)
    assert await run("sync", "--state", str(state), "--out", "-") == 2
    assert "sync needs --out" in one_line(capsys.readouterr().err)
    state.write_text("{not json", encoding="utf-8")
    argv = ["sync", "--state", str(state), "--out", out, "--start-date", str(DEFAULT_START)]
    assert await run(*argv) == 2
    assert "not JSON" in one_line(capsys.readouterr().err)
    assert server.requests == []
    assert await run(*argv, "--reset", "--end-date", str(DEFAULT_START + HOUR), "-q") == 0
    assert read_state(state)["watermark"] == DEFAULT_START + HOUR


def test_progress_shows_windows_and_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On a terminal, the bar names the window being read and counts the calls."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["sync", "--demo", "--demo-records", "300", "--state", str(tmp_path / "s.json")]
    argv += ["--out", str(tmp_path / "calls.jsonl"), "--start-date", "2025-12-01T00:00Z"]
    assert main([*argv, "--end-date", "2025-12-01T04:00Z", "--window", "1h"]) == 0
    shown = terminal.getvalue()
    assert "sync window 4/4" in shown
    assert "300 calls" in shown


async def test_export_window_reads_the_same_calls_window_by_window(
    server: FakeVBotServer, tmp_path: Path
) -> None:
    """export --window 1h yields the calls of a plain export, one countAll per window."""
    plain, sliced = tmp_path / "plain.jsonl", tmp_path / "sliced.jsonl"
    dates = ["--start-date", str(DEFAULT_START), "--end-date", str(DEFAULT_START + 6 * HOUR)]
    assert await run("export", *dates, "--out", str(plain), "-q") == 0
    server.reset_counters()
    assert await run("export", *dates, "--window", "1h", "--out", str(sliced), "-q") == 0
    assert sorted(ids_in(sliced)) == sorted(ids_in(plain))
    assert len(ids_in(plain)) == 6 * HOUR // SPACING + 1
    assert server.count("countAll") == 6


def test_window_needs_a_start_date(capsys: pytest.CaptureFixture[str]) -> None:
    """export --window without --start-date is a usage error."""
    assert main(["export", "--demo", "--window", "1d"]) == 2
    assert "--window needs --start-date" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--window", "0"], "longer than 0"),
        (["sync", "--state", "s.json", "--lookback", "ten"], "not a duration"),
        (["sync", "--state", "s.json", "--window", "1y"], "not a duration"),
        (["sync", "--out", "calls/"], "--state"),
    ],
    ids=["zero-window", "bad-lookback", "bad-unit", "no-state"],
)
def test_bad_sync_options(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Durations and the state option are checked by the parser: exit 2, before anything runs."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="signals to a child need POSIX")
@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "Ctrl-C", "SIGTERM"]
)
async def test_stopped_mid_window_then_rerun_loses_nothing(
    tmp_path: Path, how: signal.Signals
) -> None:
    """Killed (or interrupted, or terminated) in its third window, a sync is resumed by the next.

    The state parses and stands at the end of the second window; the output holds whole
    lines; the calls written twice are only those of the third window written before the
    stop, and none is missing.
    """
    start = DEFAULT_START
    # Windows 1 and 2 fit one page of 10; window 3 takes four, and its page 2 hangs.
    created = [start + 60 * k for k in range(1, 9)]
    created += [start + HOUR + 60 * k for k in range(1, 10)]
    created += [start + 2 * HOUR + 60 * k for k in range(1, 41)]
    out, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
    async with FakeVBotServer(calls_at("C", created), token=SECRET) as fake:
        fake.inject(Fault(hang=True), page=2)
        env = python_env() | {"VBOT_BASE_URL": fake.base_url, "VBOT_TOKEN": SECRET}
        argv = ["sync", "--state", str(state), "--out", str(out), "--window", "1h", "-q"]
        argv += ["--page-size", "10", "--concurrency", "1", "--end-date", str(start + 3 * HOUR)]
        child = await spawn(*argv, "--start-date", str(start), env=env)
        # One request in flight: page 2 of window 3 is asked for only once its page 1 has been
        # handed over, by which time windows 1 and 2 are written, fsynced and committed.
        await asyncio.wait_for(fake.wait_for_requests(4, endpoint="getAll"), PATIENCE)
        pages = [r.params["page"] for r in fake.requests if r.endpoint == "getAll"]
        assert pages == ["1", "1", "1", "2"]
        os.kill(child.pid, how)
        _, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
        assert child.returncode == (-signal.SIGKILL if how == signal.SIGKILL else 128 + how)
        if how == signal.SIGINT:
            assert "interrupted after" in one_line(stderr.decode())
        if how == signal.SIGTERM:
            assert "stopped by SIGTERM after" in one_line(stderr.decode())
        watermark = read_state(state)["watermark"]
        assert watermark == start + 2 * HOUR
        before = out.read_bytes()

        rerun = await spawn(*argv, env=env)
        _, stderr = await asyncio.wait_for(rerun.communicate(), PATIENCE)
        assert rerun.returncode == 0, stderr
    ids = ids_in(out)  # every line parses: a torn one was cut
    assert set(ids) == {f"C5-{i:08d}" for i in range(len(created))}
    whole = before[: before.rfind(b"\n") + 1].decode().splitlines()
    written_before = [json.loads(line) for line in whole]
    twice = {key for key in ids if ids.count(key) == 2}
    after = dt.datetime.fromtimestamp(watermark, dt.timezone.utc)
    assert twice == {
        r["trans_id"]
        for r in written_before
        if dt.datetime.fromisoformat(r["create_at"]) > after
    }
    assert len(twice) <= 10  # at most the page of window 3 handed over before the stop
    assert read_state(state)["watermark"] == start + 3 * HOUR


async def test_an_incomplete_window_exits_1_and_leaves_the_state_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A window not verified complete is not committed; the error says what is missing."""
    async with FakeVBotServer(count=600, token=SECRET, first_page=0) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        out, state = tmp_path / "calls.jsonl", tmp_path / "state.json"
        first_end = DEFAULT_START + 300 * SPACING
        argv = ["sync", "--state", str(state), "--out", str(out), "--window", "2h", "-q"]
        argv += ["--page-size", "50"]
        start = ["--start-date", str(DEFAULT_START)]
        assert await run(*argv, *start, "--first-page", "0", "--end-date", str(first_end)) == 0
        saved = state.read_bytes()
        capsys.readouterr()
        # The same server read as if it numbered its pages from 1: the newest page is missed.
        assert await run(*argv, "--end-date", str(DEFAULT_START + 599 * SPACING)) == 1
    assert state.read_bytes() == saved
    said = one_line(capsys.readouterr().err)
    assert "sync failed" in said
    assert "calls missing" in said
    assert "set first_page=0" in said


async def test_an_incomplete_export_exits_1_saying_how_many_calls_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """export against a server whose pages start at 0, read from 1: exit 1, the numbers said."""
    async with FakeVBotServer(count=250, token=SECRET, first_page=0) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        out = tmp_path / "calls.jsonl"
        assert await run("export", "--out", str(out), "--page-size", "100", "-q") == 1
    said = one_line(capsys.readouterr().err)
    assert "export failed" in said
    assert "100 of 250 calls missing (150 yielded)" in said
    assert "set first_page=0" in said


async def test_sync_to_a_database_counts_calls_without_trans_id_in_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls without a trans_id are not loaded (no key): the warning says how many, and so
    does the summary, so a pipeline reading only the summary sees them too."""
    records = calls_at("K", [DEFAULT_START + 60 * i for i in range(1, 5)])
    del records[0]["trans_id"]
    records[1]["trans_id"] = ""
    summary, url = tmp_path / "summary.json", f"sqlite:///{tmp_path}/calls.db"
    async with FakeVBotServer(records=records, token=SECRET) as fake:
        argv = ["sync", "--to", url, "--base-url", fake.base_url, "--summary", str(summary)]
        argv += ["--start-date", str(DEFAULT_START), "--settle", "0s"]
        monkeypatch.setenv("VBOT_TOKEN", SECRET)
        assert await run(*argv) == 0
    counts = json.loads(summary.read_text(encoding="utf-8"))["counts"]
    assert (counts["written"], counts["without_trans_id"]) == (2, 2)
    assert "warning: 2 calls without trans_id were not loaded" in capsys.readouterr().err
