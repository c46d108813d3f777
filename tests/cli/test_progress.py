"""Progress and run log (`vbot_cdr.cli._progress`, `vbot_cdr.cli._runlog`), end to end: the
bar on a terminal, progress lines in a log, log levels and formats."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests._cli import (
    ISO_TIME,
    PATIENCE,
    POSIX,
    SECRET,
    STALLING,
    env_of,
    one_line,
    python_env,
    read_jsonl,
    read_line_until,
    spawn,
)
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer, Fault


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


def test_progress_bar_total_capped_by_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With --limit under countAll, the bar and the summary expect --limit calls."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out, summary = tmp_path / "calls.jsonl", tmp_path / "summary.json"
    argv = ["export", "--demo", "--demo-records", "300", "--limit", "120", "--out", str(out)]
    assert main([*argv, "--summary", str(summary)]) == 0
    assert "120/120" in terminal.getvalue()
    assert json.loads(summary.read_text())["counts"] == {
        "written": 120,
        "expected": 120,
        "without_trans_id": 0,
    }


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
