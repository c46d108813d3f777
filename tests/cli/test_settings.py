"""Settings (`vbot_cdr.cli._settings`): the environment, secret files and credentials, made into
a client; refused configuration before any request."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests._cli import (
    PATIENCE,
    SECRET,
    env_of,
    one_line,
    python_env,
    read_jsonl,
    run,
    spawn,
    subcommands,
)
from vbot_cdr.cli import main
from vbot_cdr.testing import FakeVBotServer


async def test_export_with_the_environment(
    server: FakeVBotServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """VBOT_ID, VBOT_PROJECT_CODE and the paging options go on every request."""
    monkeypatch.setenv("VBOT_ID", "VB0042")
    monkeypatch.setenv("VBOT_PROJECT_CODE", "NHOM01")
    out = tmp_path / "calls.jsonl"
    code = await run("export", "-o", str(out), "--page-size", "60", "--concurrency", "2", "-q")
    assert code == 0
    assert len(read_jsonl(out)) == 250
    assert server.counts() == {"countAll": 1, "getAll": 5}
    for request in server.requests:
        assert (request.params["vbot_id"], request.params["project_code"]) == ("VB0042", "NHOM01")
    assert {r.params.get("size") for r in server.requests} == {None, "60"}
    assert server.peak_in_flight <= 2


async def test_token_file(
    server: FakeVBotServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--token-file is read instead of VBOT_TOKEN; an unreadable one is a clear error."""
    monkeypatch.delenv("VBOT_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n", encoding="utf-8")
    assert await run("count", "--token-file", str(token_file)) == 0
    assert capsys.readouterr().out == "250\n"
    assert await run("count", "--token-file", str(tmp_path / "missing")) == 2  # configuration
    assert "cannot read the token file" in one_line(capsys.readouterr().err)


async def test_refused_token_is_never_shown(
    server: FakeVBotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused token fails with one line that does not contain the token."""
    server.token = "another-token"
    assert await run("export", "--verbose") == 1
    captured = capsys.readouterr()
    assert "HTTP 401" in one_line(captured.err)
    assert SECRET not in captured.out + captured.err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["count"], {}, "no API address: set VBOT_BASE_URL"),
        (["count"], {"VBOT_BASE_URL": "https://api.example.vn"}, "no credentials: set VBOT_TOKEN"),
        (
            ["count", "--base-url", "http://api.example.vn"],
            {"VBOT_TOKEN": SECRET},
            "refusing plain http://",
        ),
        (["count", "--demo-records", "5"], {}, "--demo-records and --demo-seed need --demo"),
    ],
    ids=["no-url", "no-token", "insecure-url", "demo-option-alone"],
)
def test_bad_configuration(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing or unusable configuration is one line and exit 2, before any request."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in one_line(captured.err)
    assert SECRET not in captured.err


async def test_allow_insecure_http() -> None:
    """Plain http:// to another host is refused with advice naming the option; with it, the
    client goes ahead (and here fails to connect, exit 1)."""
    url = "http://192.0.2.1:9"  # TEST-NET-1: never answers
    env = python_env() | {"VBOT_TOKEN": SECRET}
    refused = await spawn("count", "--base-url", url, env=env)
    _, stderr = await asyncio.wait_for(refused.communicate(), PATIENCE)
    assert refused.returncode == 2
    assert "--allow-insecure-http" in one_line(stderr.decode())
    help_text = subcommands()["count"].format_help()
    assert "--allow-insecure-http" in help_text
    assert "DANGEROUS" in help_text


#: Runs ``vbot-cdr`` with its arguments, then prints which heavy modules it imported.
IMPORTS = """
import json, sys
from vbot_cdr.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({name: name in sys.modules for name in ("vbot_cdr.testing", "aiohttp.web")}))
"""


@pytest.mark.parametrize(
    ("argv", "with_server", "fake_imported"),
    [
        (["count", "--help"], False, False),
        (["count"], True, False),
        (["export", "--out", "calls.jsonl", "-q"], True, False),
        (["count", "--demo", "--demo-records", "3"], False, True),
    ],
    ids=["help", "count", "export", "demo"],
)
async def test_the_fake_server_is_imported_only_for_the_demo(
    argv: list[str], with_server: bool, fake_imported: bool, tmp_path: Path
) -> None:
    """A plain run (or its help) never imports vbot_cdr.testing or aiohttp.web: only --demo
    and serve-fake need them."""
    async with FakeVBotServer(count=20, token=SECRET) as fake:
        env = env_of(fake) if with_server else python_env()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            IMPORTS,
            *argv,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(child.communicate(), PATIENCE)
    assert child.returncode == 0, stderr
    imported = json.loads(stdout.decode().splitlines()[-1])
    assert imported == {"vbot_cdr.testing": fake_imported, "aiohttp.web": fake_imported}
