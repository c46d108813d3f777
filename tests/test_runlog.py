"""What a command-line run tells those watching it (`vbot_cdr.cli._runlog`): the format of its
log lines, the library's log records at the chosen level, and its summary, secrets hidden."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
from pathlib import Path

import pytest

from vbot_cdr._stats import IterationStats
from vbot_cdr.cli._runlog import (
    ENV_PROGRESS_INTERVAL,
    PROGRESS_INTERVAL,
    RunLog,
    RunSummary,
    progress_interval,
)

SECRET = "tok-S3CRET/with+url&chars"
ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def test_a_text_line_is_time_level_message() -> None:
    """``<ISO 8601 time with offset> <LEVEL> <message>``, the secret hidden."""
    log = RunLog(secrets=[SECRET])
    at = dt.datetime(2025, 12, 1, 8, 30, 0, 123_000, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    line = log.line(f"token {SECRET} refused", level="warning", at=at)
    assert line == "2025-12-01T08:30:00.123+07:00 WARNING token <hidden> refused"


def test_a_json_line_is_one_object_with_its_fields() -> None:
    """--log-format json: one object with time, level, message and the event's numbers."""
    log = RunLog(json=True, secrets=[SECRET])
    entry = json.loads(log.line(f"at {SECRET}", level="info", records=20))
    assert entry.pop("message") == "at <hidden>"
    assert re.fullmatch(ISO_TIME, entry.pop("time"))
    assert entry == {"level": "info", "records": 20}


def test_say_is_for_people_unless_json() -> None:
    """A command's closing line is ``vbot-cdr: message`` as text, a log object as JSON."""
    text, as_json = io.StringIO(), io.StringIO()
    RunLog(stream=text, secrets=[SECRET]).say(f"failed with {SECRET}")
    RunLog(json=True, stream=as_json).say("failed", level="error")
    assert text.getvalue() == "vbot-cdr: failed with <hidden>\n"
    entry = json.loads(as_json.getvalue())
    assert (entry["level"], entry["message"]) == ("error", "failed")


def test_capturing_writes_library_records_at_the_level_only() -> None:
    """The library's records at the chosen level and above become lines; the logger's level
    is restored afterwards."""
    stream = io.StringIO()
    logger = logging.getLogger("vbot_cdr")
    before = logger.level
    with RunLog(stream=stream, secrets=[SECRET]).capturing(logging.INFO):
        logger.debug("not shown")
        logger.info("retrying getAll with %s", SECRET)
    assert logger.level == before
    [line] = stream.getvalue().splitlines()
    assert re.fullmatch(rf"{ISO_TIME} INFO retrying getAll with <hidden>", line)


def test_a_summary_hides_secrets_and_says_how_it_ended(tmp_path: Path) -> None:
    """The summary gives the counters, the files, the outcome and the error, the secret hidden
    in every form it may take in a message."""
    summary = RunSummary("export")
    summary.stats = IterationStats(pages=3, requests=5, retries=2)
    summary.records, summary.expected = 250, 300
    summary.partial_files.append("calls.jsonl.partial")
    summary.finish(1, RuntimeError(f"refused {SECRET} and {json.dumps(SECRET)}"), [SECRET])
    path = tmp_path / "summary.json"
    summary.write(path)
    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    report = json.loads(text)
    assert report["error"] == {"type": "RuntimeError", "message": 'refused <hidden> and "<hidden>"'}
    assert (report["pages"], report["requests"], report["retries"]) == (3, 5, 2)
    assert report["counts"] == {"written": 250, "expected": 300, "without_trans_id": 0}
    assert report["complete"] is False
    assert report["exit_code"] == 1
    assert report["partial_files"] == ["calls.jsonl.partial"]
    assert report["duration_s"] >= 0
    assert os.listdir(tmp_path) == ["summary.json"]


def test_a_summary_that_cannot_be_written_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Writing onto a directory fails (an OSError), and the temporary file is removed."""
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(IsADirectoryError):
        RunSummary("count").write(tmp_path / "summary.json")
    assert os.listdir(tmp_path) == ["summary.json"]


def test_the_progress_line_counts_calls_pages_and_windows() -> None:
    """A progress line says the calls (of how many), pages, requests, retries and windows."""
    summary = RunSummary("sync")
    summary.stats = IterationStats(pages=4, requests=6, retries=1, windows=3, windows_done=1)
    summary.records, summary.expected = 40, 100
    text, numbers = summary.progress()
    assert text.startswith("sync: 40 calls of 100, 4 pages, 6 requests, 1 retries, window 1/3 done")
    assert numbers["records"] == 40
    assert numbers["windows_done"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, PROGRESS_INTERVAL),
        ("0.5", 0.5),
        ("soon", PROGRESS_INTERVAL),
        ("0", PROGRESS_INTERVAL),
    ],
)
def test_progress_interval(value: str | None, expected: float) -> None:
    """The interval comes from the environment when it is a positive number."""
    environ = {} if value is None else {ENV_PROGRESS_INTERVAL: value}
    assert progress_interval(environ) == expected
