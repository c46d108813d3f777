"""The entry point (`vbot_cdr.cli._main`): ``python -m vbot_cdr``, exit statuses, signals, a
closed pipe, ``--help`` and ``--version``."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._cli import (
    PATIENCE,
    POSIX,
    ROOT,
    SECRET,
    STALLING,
    env_of,
    one_line,
    python_env,
    read_jsonl,
    spawn,
)
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer, Fault


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("vbot-cdr ")


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
    assert report["counts"] == {"written": 20, "expected": 100, "without_trans_id": 0}
    assert report["files"] == []
    assert report["partial_files"] == [str(partial)]
    assert report["error"]["type"] == "Interrupted"


async def test_main_help_lists_environment_and_exit_statuses() -> None:
    """``vbot-cdr --help`` lists every environment variable and exit status."""
    child = await spawn("--help")
    stdout, _ = await asyncio.wait_for(child.communicate(), PATIENCE)
    text = stdout.decode()
    for variable in ("VBOT_BASE_URL", "VBOT_TOKEN", "VBOT_API_KEY", "VBOT_USERNAME"):
        assert variable in text
    for variable in ("VBOT_PASSWORD", "VBOT_ID", "VBOT_PROJECT_CODE", "VBOT_CDR_LOG"):
        assert variable in text
    for status in ("0", "1", "2", "129", "130", "143"):
        assert re.search(rf"^  {status} ", text, re.MULTILINE), status


def test_the_package_imports_flow_downward() -> None:
    """No module of vbot_cdr.cli imports the package face (``vbot_cdr``) or its own
    (``vbot_cdr.cli``), and none imports the fake server at module level."""
    package = ROOT / "vbot_cdr" / "cli"
    offending = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: --demo and serve-fake import it lazily
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name in ("vbot_cdr", "vbot_cdr.cli", "..", ".") or "testing" in name:
                    offending.append(f"{path.name}: {name}")
    assert offending == []
