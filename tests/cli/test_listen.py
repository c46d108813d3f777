"""``vbot-cdr listen`` as a real process: refusing to start unprotected, draining on SIGTERM,
losing no acknowledged call to SIGKILL, and reconciling a lossy push with the pull."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest

from tests import test_sinks
from tests._cli import PATIENCE, POSIX, SECRET, python_env, read_line_until, run, spawn
from tests.test_sinks import query
from tests.test_webhooks import COMPLETE, LOG, calls, expected_table, table
from vbot_cdr.testing import FakeVBotServer, PushHabits, WebhookPusher

database = test_sinks.database
postgres_database = test_sinks.postgres_database
postgres_server = test_sinks.postgres_server

HEADER_VALUE = "hook-S3CRET-never-shown"
HEADER = f"X-Hook: {HEADER_VALUE}"
URL = re.compile(r"listening on (http://\S+)")


async def test_listen_refuses_to_start_without_a_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No header and no --allow-unauthenticated: exit 2, saying how to give one."""
    status = await run("listen", "--to", str(tmp_path / "calls.db"), "--port", "0")
    assert status == 2
    assert "VBOT_WEBHOOK_HEADER" in capsys.readouterr().err
    assert not (tmp_path / "calls.db").exists()


@pytest.mark.parametrize(
    "given",
    [HEADER_VALUE, f"Bearer {HEADER_VALUE}:tail"],
    ids=["no colon", "value with a space before a colon"],
)
async def test_a_malformed_header_is_refused_without_showing_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    """A header that is not "Name: value" stops listen with status 2, no part of it shown."""
    monkeypatch.setenv("VBOT_WEBHOOK_HEADER", given)  # the value alone, no name
    status = await run("listen", "--to", str(tmp_path / "calls.db"), "--port", "0")
    assert status == 2
    err = capsys.readouterr().err
    assert "Name: value" in err
    assert HEADER_VALUE not in err


async def start_listen(*argv: str, header: str | None = HEADER) -> tuple[Any, str]:
    """``vbot-cdr listen ARGV --port 0`` as a child process, and its URL once it listens."""
    env = python_env() | ({} if header is None else {"VBOT_WEBHOOK_HEADER": header})
    process = await spawn("listen", "--port", "0", *argv, env=env)
    assert process.stderr is not None
    lines = await read_line_until(process.stderr, "listening on")
    match = URL.search(lines[-1])
    assert match is not None
    return process, match.group(1)


@POSIX
async def test_sigterm_finishes_the_request_in_flight_commits_and_exits_0(
    postgres_database: str, tmp_path: Path
) -> None:
    """A post waiting for its commit when SIGTERM comes is committed and answered 200; then
    the receiver exits 0, its summary counting the call; the header is in no output."""
    summary = tmp_path / "summary.json"
    process, base = await start_listen("--to", postgres_database, "--summary", str(summary))
    assert process.stderr is not None
    with psycopg.connect(postgres_database) as blocker:
        # Holds every commit of the receiver back until this transaction ends.
        blocker.execute(b"LOCK TABLE vbot_calls IN ACCESS EXCLUSIVE MODE")
        async with aiohttp.ClientSession(headers={"X-Hook": HEADER_VALUE}) as session:
            posting = asyncio.create_task(session.post(base, data=orjson.dumps(COMPLETE)))
            # Sent after the post, on its own connection: once answered, the post was read.
            async with session.get(base.rstrip("/") + "/health") as answer:
                assert answer.status == 200
            assert not posting.done()
            process.send_signal(signal.SIGTERM)
            await read_line_until(process.stderr, "stopping")
            blocker.commit()
            answer = await asyncio.wait_for(posting, PATIENCE)
            assert answer.status == 200
            answer.release()
    stderr = (await asyncio.wait_for(process.stderr.read(), PATIENCE)).decode()
    assert await asyncio.wait_for(process.wait(), PATIENCE) == 0
    assert query(postgres_database, "SELECT trans_id FROM vbot_calls") == [("T1",)]
    written = json.loads(summary.read_text())
    assert written["exit_code"] == 0
    assert written["webhooks"]["stored"] == 1
    assert HEADER_VALUE not in stderr + summary.read_text()


@POSIX
async def test_sigkill_during_a_burst_loses_no_acknowledged_call(database: str) -> None:
    """Posts from 32 senders at once; the receiver is killed mid-burst: every call answered
    200 is in the table."""
    process, base = await start_listen("--to", database)
    acknowledged: list[str] = []
    killed = asyncio.Event()

    async def sender(session: aiohttp.ClientSession, number: int) -> None:
        for i in range(10_000):
            trans_id = f"K{number}-{i}"
            body = orjson.dumps({"autoCallLog": {**LOG, "transId": trans_id}})
            try:
                async with session.post(base, data=body) as answer:
                    if answer.status == 200:
                        acknowledged.append(trans_id)
            except aiohttp.ClientError:
                return
            if len(acknowledged) >= 300 and not killed.is_set():
                killed.set()
                process.kill()

    async with aiohttp.ClientSession(headers={"X-Hook": HEADER_VALUE}) as session:
        await asyncio.wait_for(asyncio.gather(*(sender(session, n) for n in range(32))), PATIENCE)
    await process.wait()
    assert killed.is_set()
    stored = {key for (key,) in query(database, "SELECT trans_id FROM vbot_calls")}
    assert set(acknowledged) <= stored
    assert len(acknowledged) >= 300


@POSIX
async def test_listen_reconciles_a_lossy_push_with_the_pull(database: str, tmp_path: Path) -> None:
    """The fake pushes with drops, duplicates and reordering; listen's own pull completes
    the table: every call once, the CDR's fields filled; its summary counts what each did."""
    url, summary = database, tmp_path / "summary.json"
    async with FakeVBotServer(calls(60), token=SECRET) as fake:
        env = python_env() | {
            "VBOT_WEBHOOK_HEADER": HEADER,
            "VBOT_BASE_URL": fake.base_url,
            "VBOT_TOKEN": SECRET,
        }
        process = await spawn(
            "listen",
            "--port",
            "0",
            "--to",
            url,
            "--reconcile-every",
            "0.5s",
            "--settle",
            "0s",
            "--window",
            "30d",
            "--start-date",
            "2025-12-01T00:00:00Z",
            "--summary",
            str(summary),
            env=env,
        )
        assert process.stderr is not None
        match = URL.search((await read_line_until(process.stderr, "listening on"))[-1])
        assert match is not None
        habits = PushHabits(drop=0.25, duplicate=0.2, reorder=0.3, other_events=0.1, seed=3)
        pusher = fake.webhooks = WebhookPusher(match.group(1), HEADER, habits)
        pusher.push(fake.records)  # as the fake pushes the calls it writes
        await pusher.drain()
        acknowledged = set(pusher.acknowledged)
        # A pull that starts after every push was answered: wait for the second one.
        await read_line_until(process.stderr, "reconciled:")
        await read_line_until(process.stderr, "reconciled:")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.stderr.read(), PATIENCE)
        assert await asyncio.wait_for(process.wait(), PATIENCE) == 0
        assert table(url) == expected_table(fake.records, acknowledged)
        webhooks = json.loads(summary.read_text())["webhooks"]
        assert webhooks["stored"] == len(acknowledged) == 60 - len(pusher.dropped)
        assert webhooks["duplicates"] == len(pusher.acknowledged) - len(acknowledged)
        # A call a pull found before its push arrived counts as missing from the push.
        assert webhooks["missing_from_push"] >= len(pusher.dropped) > 0
        assert webhooks["missing_from_push"] + webhooks["completed_by_pull"] == 60
        assert sum(webhooks["other_events"].values()) > 0
        assert webhooks["push_lag_ms"]["p99"] is not None


async def test_listen_says_and_counts_the_pulled_calls_it_cannot_load(
    tmp_path: Path,
) -> None:
    """A pulled call without trans_id is not loaded: a warning line says so, and the
    summary counts it."""
    records = calls(3)
    del records[1]["trans_id"]
    url, summary = str(tmp_path / "calls.db"), tmp_path / "summary.json"
    async with FakeVBotServer(records=records, token=SECRET) as fake:
        env = python_env() | {
            "VBOT_WEBHOOK_HEADER": HEADER,
            "VBOT_BASE_URL": fake.base_url,
            "VBOT_TOKEN": SECRET,
        }
        argv = ["--port", "0", "--to", url, "--reconcile-every", "0.1s", "--settle", "0s"]
        dates = ["--window", "30d", "--start-date", "2025-12-01T00:00:00Z"]
        process = await spawn("listen", *argv, *dates, "--summary", str(summary), env=env)
        assert process.stderr is not None
        seen = await read_line_until(process.stderr, "without trans_id were not loaded")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.stderr.read(), PATIENCE)
        assert await asyncio.wait_for(process.wait(), PATIENCE) == 0
    assert "warning: 1 calls without trans_id" in seen[-1]
    # Each pull (one, or more before the stop) counts the call again.
    assert json.loads(summary.read_text())["webhooks"]["without_trans_id"] >= 1
    with contextlib.closing(sqlite3.connect(url)) as db:
        ids = {row[0] for row in db.execute("SELECT trans_id FROM vbot_calls")}
    assert ids == {records[0]["trans_id"], records[2]["trans_id"]}


async def test_a_pull_that_cannot_start_stops_the_receiver_with_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: FakeVBotServer,
) -> None:
    """--reconcile-every without a state or --start-date: exit 2 saying what to give."""
    monkeypatch.setenv("VBOT_WEBHOOK_HEADER", HEADER)
    argv = ["listen", "--to", str(tmp_path / "calls.db"), "--port", "0"]
    assert await run(*argv, "--reconcile-every", "0.1s") == 2
    err = capsys.readouterr().err
    assert "--start-date" in err
    assert HEADER_VALUE not in err


@POSIX
async def test_the_first_reconcile_runs_as_listen_starts(tmp_path: Path) -> None:
    """With --reconcile-every 1h, the first pull does not wait an hour: it runs at start and
    loads the calls served (a second one would come an hour later)."""
    records = calls(20)
    url = str(tmp_path / "calls.db")
    async with FakeVBotServer(records=records, token=SECRET) as fake:
        env = python_env() | {
            "VBOT_WEBHOOK_HEADER": HEADER,
            "VBOT_BASE_URL": fake.base_url,
            "VBOT_TOKEN": SECRET,
        }
        argv = ["--port", "0", "--to", url, "--reconcile-every", "1h", "--settle", "0s"]
        dates = ["--window", "30d", "--start-date", "2025-12-01T00:00:00Z"]
        process = await spawn("listen", *argv, *dates, env=env)
        assert process.stderr is not None
        try:
            seen = await read_line_until(process.stderr, "reconciled:")
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.stderr.read(), PATIENCE)
            assert await asyncio.wait_for(process.wait(), PATIENCE) == 0
        finally:
            if process.returncode is None:  # the pull never came: no receiver left behind
                process.kill()
                await process.wait()
    assert "reconciled: 20 calls pulled" in seen[-1]
    with contextlib.closing(sqlite3.connect(url)) as db:
        ids = {row[0] for row in db.execute("SELECT trans_id FROM vbot_calls")}
    assert ids == {record["trans_id"] for record in records}
