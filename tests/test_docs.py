"""Every example in README.md and docs/*.md runs as written, against the fake server.

Each fenced block is extracted and, unless the line right before it says
``<!-- not run: REASON -->``, run: a ``python`` block by the interpreter, a ``sh`` block by
bash (``set -eo pipefail``, in a temporary directory, with ``vbot-cdr`` on the ``PATH`` and
``VBOT_BASE_URL``/``VBOT_TOKEN`` naming one shared `FakeVBotServer`), and the blocks marked
``<!-- run with: client, monday -->`` (a fragment) run inside a coroutine where ``client``
is a `VBotClient` of that server and ``first_day`` (or ``monday``) the first day of its
data, those marked
``<!-- run with pytest: FILE -->`` written as FILE into one directory per document and run by
pytest in pytest-asyncio's default strict mode. A block marked not run (it needs an account,
Spark, a database server, a systemd, or serves until stopped) is checked for syntax only. A
new block without a marker must run, or this module fails.
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from vbot_cdr.testing import FakeVBotServer

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
#: Bounds each block, so a block that hangs fails instead of stopping the module.
PATIENCE = 45
#: Blocks run at a time: each is a process importing vbot_cdr.
AT_ONCE = 4
TOKEN = "tok-docs"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
_MARK = re.compile(r"<!-- (not run|run with pytest|run with): (.+?) -->\n$")
_SHELLS = ("sh", "bash", "shell")


@attrs.frozen
class Block:
    """One fenced block: where it is, its language and text, and its marker if any."""

    document: Path
    line: int
    language: str
    code: str
    mark: str | None
    argument: str | None

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _blocks() -> Iterator[Block]:
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            before = text[: match.start()]
            mark = _MARK.search(before)
            yield Block(
                document=document,
                line=before.count("\n") + 1,
                language=match.group(1),
                code=match.group(2),
                mark=mark.group(1) if mark else None,
                argument=mark.group(2) if mark else None,
            )


BLOCKS = tuple(_blocks())
#: What a fragment marked ``<!-- run with: NAMES -->`` finds defined, around its code.
_FRAGMENT = """\
import asyncio
import datetime as dt
import os

from vbot_cdr import VBotClient

_SERVER = os.environ["VBOT_TOKEN"], os.environ["VBOT_BASE_URL"]


async def main() -> None:
    monday = first_day = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
    async with VBotClient(_SERVER[0], base_url=_SERVER[1]) as client:
{code}

asyncio.run(main())
"""
_FRAGMENT_NAMES = {"client", "first_day", "monday"}

SYNTAX_ONLY = [block for block in BLOCKS if block.mark == "not run"]
RUN = [block for block in BLOCKS if block.mark in (None, "run with")]
PYTEST = [block for block in BLOCKS if block.mark == "run with pytest"]


def test_the_documents_have_examples_of_every_kind() -> None:
    """The extraction finds the blocks (a broken pattern would make every test vacuous)."""
    assert len(BLOCKS) >= 30
    assert {block.language for block in RUN} == {"python", "sh"}
    assert len(PYTEST) == 2
    for block in RUN:
        if block.mark == "run with":
            assert block.argument is not None
            assert set(block.argument.split(", ")) <= _FRAGMENT_NAMES, block.where


@pytest.mark.parametrize("block", SYNTAX_ONLY, ids=lambda block: block.where)
def test_a_block_not_run_says_why_and_parses(block: Block, tmp_path: Path) -> None:
    """A block that needs what CI lacks is at least valid in its language."""
    assert block.argument is not None
    assert len(block.argument) > 10  # a reason a reader can act on
    if block.language == "python":
        # Fragments show the body of a coroutine: top-level await is allowed.
        compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    elif block.language in _SHELLS:
        _bash_parses(block.code, tmp_path)
    elif block.language == "cron":
        for line in block.code.splitlines():
            if re.fullmatch(r"[A-Z_]+=\S*", line):  # an environment line
                continue
            fields = line.split(maxsplit=5)
            assert len(fields) == 6, line
            _bash_parses(fields[5], tmp_path)
    elif block.language == "ini":
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.read_string(block.code)
        assert parser.sections()
    else:
        pytest.fail(f"{block.where}: no syntax check for ```{block.language}")


def _bash_parses(code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.sh"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=PATIENCE
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory with ``vbot-cdr``: this interpreter running the tree under test."""
    directory = tmp_path / "bin"
    directory.mkdir()
    command = directory / "vbot-cdr"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vbot_cdr "$@"\n', encoding="utf-8")
    command.chmod(command.stat().st_mode | stat.S_IXUSR)
    return directory


def _environment(bin_dir: Path, server: FakeVBotServer) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("VBOT_")}
    environ["PATH"] = f"{bin_dir}{os.pathsep}{environ['PATH']}"
    # The tree under test first, as the suite imports it.
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    environ["VBOT_BASE_URL"] = server.base_url
    environ["VBOT_TOKEN"] = TOKEN
    return environ


async def _run(argv: list[str], cwd: Path, environ: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` in its own process group; end the group after (a block's background
    jobs included). Returns the exit status and the output."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), PATIENCE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        if process.returncode is None:
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_every_unmarked_block_runs(tmp_path: Path, bin_dir: Path) -> None:
    """Every block without a marker exits 0, run as written against the fake server, and
    none of its commands finds no calls (a date range beside the demo data)."""
    async with FakeVBotServer(count=2000, token=TOKEN) as server:
        environ = _environment(bin_dir, server)
        gate = asyncio.Semaphore(AT_ONCE)

        async def run(index: int, block: Block) -> str | None:
            cwd = tmp_path / f"block{index}"
            cwd.mkdir()
            if block.language == "python" and block.mark == "run with":
                code = textwrap.indent(block.code, " " * 8)
                argv = [sys.executable, "-c", _FRAGMENT.format(code=code)]
            elif block.language == "python":
                argv = [sys.executable, "-c", block.code]
            elif block.language in _SHELLS:
                argv = ["bash", "-c", "set -eo pipefail\n" + block.code]
            else:
                return f"{block.where}: no way to run ```{block.language} (mark it not run)"
            async with gate:
                status, output = await _run(argv, cwd, environ)
            if status != 0:
                return f"{block.where} exited {status}:\n{textwrap.indent(output, '    ')}"
            if re.search(r"\b0 (new )?calls\b", output):  # an example that shows nothing
                return f"{block.where} found no calls:\n{textwrap.indent(output, '    ')}"
            return None

        failures = await asyncio.gather(*(run(i, block) for i, block in enumerate(RUN)))
    assert [failure for failure in failures if failure] == []


async def test_the_pytest_examples_pass_in_strict_mode(tmp_path: Path) -> None:
    """The README's plugin example, and the plugin's own docstring example, pass under
    pytest-asyncio's default strict mode, in a project of their own."""
    readme = tmp_path / "readme"
    readme.mkdir()
    for block in PYTEST:
        assert block.argument is not None
        (readme / block.argument).write_text(block.code, encoding="utf-8")
    docstring = tmp_path / "docstring"
    docstring.mkdir()
    conftest, test = _plugin_docstring_examples()
    (docstring / "conftest.py").write_text(conftest, encoding="utf-8")
    (docstring / "test_export.py").write_text(test, encoding="utf-8")
    environ = {name: value for name, value in os.environ.items() if not name.startswith("VBOT_")}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    for project in (readme, docstring):
        (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not ours
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        status, output = await _run([*argv, "-o", "asyncio_mode=strict"], project, environ)
        assert status == 0, output
        assert re.search(r"\b1 passed\b", output), output


def _plugin_docstring_examples() -> tuple[str, str]:
    """The two ``::`` examples of the plugin module's docstring: conftest.py, then a test."""
    import vbot_cdr.testing.pytest_plugin as plugin

    assert plugin.__doc__ is not None
    examples = re.findall(r"::\n\n((?:    .*\n|\n)+)", plugin.__doc__)
    assert len(examples) == 2
    return textwrap.dedent(examples[0]), textwrap.dedent(examples[1])


async def test_the_cron_line_runs_from_an_empty_directory(tmp_path: Path, bin_dir: Path) -> None:
    """The Daily loads crontab's command, run twice where nothing exists yet but the token:
    the first run makes ``calls/`` and writes the calls, the second finds none new."""
    block = next(block for block in BLOCKS if block.language == "cron")
    command = block.code[block.code.index("vbot-cdr sync") :].strip()
    assert "--out calls/" in command
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    async with FakeVBotServer(count=300, token=TOKEN) as server:
        environ = _environment(bin_dir, server)
        del environ["VBOT_TOKEN"]  # the line reads --token-file
        for _ in range(2):
            status, output = await _run(["bash", "-c", command], tmp_path, environ)
            assert status == 0, output
    (written,) = (tmp_path / "calls").iterdir()
    assert len(written.read_text(encoding="utf-8").splitlines()) == 300
    assert (tmp_path / "last-run.json").is_file()
