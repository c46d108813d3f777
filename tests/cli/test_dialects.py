"""The command line in each API dialect: API keys, --api, the v3 filters, the dialect's unit."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._records import exported_line
from tests.conftest import SERVED_DIALECTS
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer

KEY = "key-S3CRET-never-shown-0123"
TOKEN = "tok-S3CRET-never-shown-4567"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No VBOT_* settings leak in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("VBOT_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=list(SERVED_DIALECTS))
async def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeVBotServer]:
    """A fake server of each dialect, named by the environment with its credential."""
    options = SERVED_DIALECTS[request.param]
    async with FakeVBotServer(count=250, token=TOKEN, api_key=KEY, **options) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        if fake.api == "v2":
            monkeypatch.setenv("VBOT_TOKEN", TOKEN)
        else:
            monkeypatch.setenv("VBOT_API_KEY", KEY)
        yield fake


def api_option(fake: FakeVBotServer) -> list[str]:
    """What the command line needs besides the credential: ``--api`` for v3-legacy only."""
    return ["--api", "v3-legacy"] if fake.api == "v3-legacy" else []


async def run(*argv: str) -> int:
    """``main(argv)`` in a worker thread, so this loop keeps serving the fake server."""
    return await asyncio.to_thread(main, list(argv))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_export_in_every_dialect(
    server: FakeVBotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export reads every dialect into the same JSON shape; --start-date means the same
    instant in every dialect (sent in the dialect's unit)."""
    out = tmp_path / "calls.jsonl"
    since = dt.datetime(2025, 12, 1, 1, tzinfo=dt.timezone.utc)
    code = await run(
        "export", "-o", str(out), "--start-date", since.isoformat(), *api_option(server)
    )
    assert code == 0, capsys.readouterr().err
    unit = 1000 if server.api != "v2" else 1
    expected = [r for r in server.records if r["create_at"] >= since.timestamp() * unit]
    assert 0 < len(expected) < 250
    assert read_jsonl(out) == [exported_line(r) for r in expected]
    [count] = [r for r in server.requests if r.endpoint == "countAll"]
    assert count.params == {"start_date": str(int(since.timestamp()) * unit)}
    assert KEY not in capsys.readouterr().err


async def test_api_key_file_and_v3_filters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--api-key-file is read instead of VBOT_API_KEY; --min-postage and --max-postage go to
    v3, and are a usage error (exit 2) where the dialect lacks them."""
    async with FakeVBotServer(count=250, api="v3", api_key=KEY) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n", encoding="utf-8")
        argv = ["count", "--api-key-file", str(key_file), "--min-postage", "100"]
        assert await run(*argv, "--max-postage", "400") == 0
        in_range = [r for r in fake.records if 100 <= (r["postage"] or 0) <= 400]
        assert capsys.readouterr().out == f"{len(in_range)}\n"
        assert fake.requests[-1].params == {"min_postage": "100.0", "max_postage": "400.0"}
        assert await run("count", "--api-key-file", str(tmp_path / "missing")) == 2
        assert "cannot read the API key file" in capsys.readouterr().err
    async with FakeVBotServer(count=5, token=TOKEN) as fake:
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_TOKEN", TOKEN)
        assert await run("count", "--min-postage", "100") == 2
        assert "no min_postage filter" in capsys.readouterr().err
        assert fake.requests == []


@pytest.mark.parametrize("api", ["v3", "v3-legacy"])
async def test_a_refused_key_exits_1_with_the_reason_never_the_key(
    api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused API key (echoed back by a careless server) ends in exit 1 with the server's
    reason on one line, and the key appears nowhere in the output."""
    async with FakeVBotServer(count=5, api=api, echo_credentials=True) as fake:  # type: ignore[arg-type]
        monkeypatch.setenv("VBOT_BASE_URL", fake.base_url)
        monkeypatch.setenv("VBOT_API_KEY", KEY)
        assert await run("export", "--verbose", "--api", api) == 1
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err
    assert "Unauthorized" in captured.err
    assert KEY not in captured.out + captured.err


@pytest.mark.parametrize("api", ["v2", "v3", "v3-legacy"])
def test_demo_speaks_the_chosen_dialect(
    api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--demo --api runs against a fake of that dialect; v3 records keep the seed's names."""
    out = tmp_path / "calls.jsonl"
    assert main(["export", "--demo", "--demo-records", "30", "--api", api, "-o", str(out)]) == 0
    records = read_jsonl(out)
    assert len(records) == 30
    assert "trans_id" in records[0]
    assert "transId" not in records[0]
    assert (records[0]["external_call_id"] is not None) == (api == "v3")
    assert main(["count", "--demo", "--demo-records", "30", "--api", api]) == 0
    assert capsys.readouterr().out == "30\n"
