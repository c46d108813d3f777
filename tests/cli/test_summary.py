"""``--summary FILE`` (`vbot_cdr.cli._summary`), end to end: written whatever the outcome,
secrets redacted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests._cli import (
    ISO_TIME,
    PATIENCE,
    SECRET,
    env_of,
    spawn,
)
from vbot_cdr.testing import FakeVBotServer, Fault


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
