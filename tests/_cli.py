"""What the command-line tests share: a clean environment, fake servers named by the
environment, and ways to run ``vbot-cdr`` in-process (`run`) or as ``python -m vbot_cdr``
(`spawn`). Each waits for observable events, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vbot_cdr.cli import build_parser, main
from vbot_cdr.cli._parser import Parser
from vbot_cdr.testing import FakeVBotServer, Fault

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


def subcommands() -> dict[str, Parser]:
    """The parsers of ``vbot-cdr``'s commands, by name."""
    return build_parser().commands
