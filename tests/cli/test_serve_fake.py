"""``vbot-cdr serve-fake`` (`vbot_cdr.cli._serve_fake`): the fake server on loopback, live."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path

import pytest

from tests._cli import (
    PATIENCE,
    POSIX,
    python_env,
    read_jsonl,
    read_line_until,
    run,
    spawn,
)
from vbot_cdr import VBotClient


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
            # Its calls were created in this second, which a sync ending now leaves for the
            # next run (windows are half-open, in whole seconds): let the server log batches
            # until the second has passed.
            loop = asyncio.get_running_loop()
            logged = loop.time()
            while loop.time() - logged < 1.0:
                said += await read_line_until(child.stderr, "new calls, the last")
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


@POSIX
async def test_serve_fake_pushes_each_new_call_to_a_webhook() -> None:
    """serve-fake --webhook-url posts each call it writes as AUTO_CALL_COMPLETE, with the
    header given; the pushed calls are those its getAll serves."""
    from aiohttp import web

    from vbot_cdr import CallEvent, parse_webhook

    pushed: list[str] = []
    enough = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        assert request.headers["X-Hook"] == "local"
        event = parse_webhook(await request.read())
        assert isinstance(event, CallEvent)
        assert event.record.trans_id is not None
        pushed.append(event.record.trans_id)
        if len(pushed) >= 5:
            enough.set()
        return web.Response(text="stored")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    child = await spawn(
        "serve-fake",
        "--records",
        "0",
        "--arrivals-per-second",
        "50",
        "--webhook-url",
        f"http://{host}:{port}/hook",
        "--webhook-header",
        "X-Hook: local",
    )
    try:
        assert child.stdout is not None
        lines = [(await asyncio.wait_for(child.stdout.readline(), PATIENCE)).decode() for _ in "12"]
        settings = dict(line.strip().removeprefix("export ").split("=", 1) for line in lines)
        await asyncio.wait_for(enough.wait(), PATIENCE)
        async with VBotClient(settings["VBOT_TOKEN"], base_url=settings["VBOT_BASE_URL"]) as client:
            served = {call.trans_id async for call in client.iter_calls()}
        assert set(pushed[:5]) <= served
    finally:
        child.send_signal(signal.SIGINT)
        await asyncio.wait_for(child.communicate(), PATIENCE)
        await runner.cleanup()
    assert child.returncode == 0


async def test_serve_fake_refuses_a_malformed_webhook_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A --webhook-header that is not "Name: value" exits 2 before serving, showing no part
    of it (no traceback from the sender)."""
    argv = ["--webhook-url", "http://127.0.0.1:1/", "--webhook-header", "Bearer s3cret:x"]
    assert await run("serve-fake", *argv) == 2
    err = capsys.readouterr().err
    assert "Name: value" in err
    assert "s3cret" not in err
    assert "Traceback" not in err
