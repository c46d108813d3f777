"""Secrets: the token and password never show, plain http is refused, redirects carry nothing.

One collector drives a client with a secret token (and one with a secret password) into every
failure mode the library has; the tests then scan everything a user or a log pipeline could
see: exceptions and their whole chain (str, repr, attributes, formatted tracebacks), log
records of every logger at DEBUG, the reprs of clients, iterators and stats, and the output of
the command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests._loopback import answering, closed_port, exception_chain, raw_server, serve
from vbot_cdr import (
    APIError,
    AuthenticationError,
    PasswordAuth,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    TransportError,
    VBotClient,
    VBotError,
)
from vbot_cdr.testing import FakeVBotServer, Fault

SECRET = "tok-S3CRET-feedface0123456789"
PASSWORD = "pw-S3CRET-hunter2-0987654321"
SECRETS = (SECRET, PASSWORD)
NO_WAIT = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0)
GUARD = 30.0
API_PATH = "/api/campaignCall/cdr/"


def assert_no_secret(text: str, what: object) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret shown by {what!r}"


async def failure_modes() -> dict[str, VBotError]:
    """One error per failure mode, each raised by a client holding SECRET (or PASSWORD)."""
    errors: dict[str, VBotError] = {}

    async def collect(name: str, call: Awaitable[Any]) -> None:
        with pytest.raises(VBotError) as info:
            await asyncio.wait_for(call, GUARD)
        errors[name] = info.value

    async with FakeVBotServer(count=30, token=SECRET) as server:
        server.token_endpoint.users["alice"] = "right-password"
        client = VBotClient(SECRET, base_url=server.base_url, retry=NO_WAIT, timeout=0.3)
        async with client:
            server.inject(Fault(envelope_error=9, message="Sai tham số"))
            await collect("envelope", client.get_calls(page=1))
            server.inject(*[Fault(status=500)] * 2, endpoint="countAll")
            await collect("server-error", client.count_calls())
            server.inject(*[Fault(status=429, retry_after="0")] * 2, endpoint="countAll")
            await collect("rate-limit", client.count_calls())
            server.inject(Fault(status=429, retry_after="3600"), endpoint="countAll")
            await collect("retry-after-too-long", client.count_calls())
            server.inject(Fault(status=403), endpoint="countAll")
            await collect("forbidden", client.count_calls())
            server.inject(*[Fault(truncate=True)] * 2)
            await collect("truncated", client.get_calls(page=1))
            server.inject(*[Fault(disconnect=True)] * 4)
            await collect("reset", client.get_calls(page=1))
            server.inject(*[Fault(hang=True)] * 2, endpoint="countAll")
            await collect("timeout", client.count_calls())
            server.inject(*[Fault(body=b"<html>")] * 2, endpoint="getBotConversation")
            await collect("not-json", client.get_bot_conversation("T1"))
            await collect("deep-page", client.get_calls(page=1, size=10**6))
            server.inject(*[Fault(status=503)] * 10, page=2)
            await collect("iteration", _drain(client.iter_calls(page_size=10, concurrency=2)))
            server.inject(*[Fault(status=503)] * 10, page=1)
            await collect("page-iteration", _drain(client.iter_call_pages(page_size=10)))
        async with VBotClient("wrong-" + SECRET, base_url=server.base_url) as wrong:
            await collect("wrong-token", wrong.count_calls())
        auth = PasswordAuth("alice", PASSWORD)
        async with VBotClient(auth, base_url=server.base_url, retry=NO_WAIT) as login:
            await collect("wrong-password", login.count_calls())
        async with VBotClient(SECRET, base_url=server.base_url, deadline=0.2) as late:
            server.inject(Fault(hang=True), endpoint="countAll")
            await collect("deadline", late.count_calls())
        async with VBotClient(
            SECRET, base_url=server.base_url, retry=NO_WAIT, max_response_bytes=100
        ) as small:
            await collect("too-large", small.get_calls(page=1))
    async with (
        FakeVBotServer(records=[{"duration": "x"}], token=SECRET) as server,
        VBotClient(SECRET, base_url=server.base_url) as client,
    ):
        await collect("record-shape", client.get_calls(page=1))
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"
    for name, reply in [
        ("malformed-http", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"),
        ("not-http", b"SSH-2.0-OpenSSH\r\n\r\n"),
        ("redirect", redirect),
    ]:
        async with (
            raw_server(answering(reply)) as server,
            VBotClient(SECRET, base_url=server.url, retry=NO_WAIT) as client,
        ):
            await collect(name, client.count_calls())
    async with VBotClient(
        SECRET, base_url=f"http://127.0.0.1:{closed_port()}", retry=NO_WAIT
    ) as dead:
        await collect("refused", dead.count_calls())
    dead_login = VBotClient(
        PasswordAuth("alice", PASSWORD),
        base_url=f"http://127.0.0.1:{closed_port()}",
        retry=NO_WAIT,
    )
    async with dead_login:
        await collect("login-refused", dead_login.count_calls())
    return errors


async def _drain(iterator: Any) -> None:
    async with iterator:
        async for _ in iterator:
            pass


async def test_no_secret_in_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """In every failure mode, no error (nor its chain) and no log record shows a secret."""
    caplog.set_level(logging.DEBUG)
    for name in ("vbot_cdr", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    errors = await failure_modes()
    # The collector reaches each error class, so the scans below cover them all.
    assert {type(e) for e in errors.values()} == {
        APIError,
        AuthenticationError,
        RateLimitError,
        TransportError,
        ResponseFormatError,
    }
    assert isinstance(errors["malformed-http"], TransportError)
    assert isinstance(errors["redirect"], APIError)
    for name, error in errors.items():
        assert_no_secret("".join(traceback.format_exception(error)), name)
        for link in exception_chain(error):
            assert_no_secret(str(link), (name, link))
            assert_no_secret(repr(link), (name, link))
            assert_no_secret(repr(link.args), (name, link))
            assert_no_secret(repr(getattr(link, "__dict__", {})), (name, link))
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    assert any(r.name == "vbot_cdr" and r.levelno == logging.INFO for r in caplog.records)
    assert any(r.name == "vbot_cdr" and r.levelno == logging.DEBUG for r in caplog.records)
    for record in caplog.records:
        assert_no_secret(formatter.format(record), record)
        assert_no_secret(repr(record.args), record)
        assert_no_secret(repr(record.__dict__), record)


async def test_no_secret_in_reprs(caplog: pytest.LogCaptureFixture) -> None:
    """Reprs, strs and logs of clients, iterators and stats never show a token or password."""
    caplog.set_level(logging.DEBUG)
    async with FakeVBotServer(count=25, token=SECRET) as server:
        server.token_endpoint.users["alice"] = PASSWORD

        async def provider() -> str:
            return SECRET

        clients = [
            VBotClient(SECRET, base_url=server.base_url),
            VBotClient(provider, base_url=server.base_url),
            VBotClient(PasswordAuth("alice", PASSWORD), base_url=server.base_url),
            VBotClient.from_password("alice", PASSWORD, base_url=server.base_url),
        ]
        shown: list[object] = []
        for client in clients:
            async with client:
                calls = client.iter_calls(page_size=10)
                pages = client.iter_call_pages(page_size=10)
                shown += [client, calls, pages, calls.stats]
                async with calls:
                    records = [r async for r in calls]
                async with pages:
                    shown += [p async for p in pages]
                # A 401 on an expired token: logged in users renew it with their refresh token.
                server.token_endpoint.expire_access_tokens()
                await client.count_calls()
                shown += [calls, calls.stats, records[0], vars(client), vars(calls)]
        shown += clients
        issued = [token for pair in server.token_endpoint.issued for token in pair]
    assert len(issued) >= 4  # two logins, two refreshes
    secrets = (*SECRETS, *issued)
    texts = [text for thing in shown for text in (repr(thing), str(thing))]
    texts += [logging.Formatter().format(record) for record in caplog.records]
    for text in texts:
        for secret in secrets:
            assert secret not in text


# -- plain http and redirects -----------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.example.vn",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.nip.io",
        "http://localhost.example.com",
        "http://[2001:db8::1]",
        "http://0.0.0.0",
    ],
)
def test_plain_http_to_another_host_is_refused(base_url: str) -> None:
    """http:// to anything but loopback is refused at construction, and accepted on opt-in."""
    with pytest.raises(ValueError, match="allow_insecure_http") as info:
        VBotClient(SECRET, base_url=base_url)
    assert_no_secret(str(info.value), base_url)
    VBotClient(SECRET, base_url=base_url, allow_insecure_http=True)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://[::1]:9000",
        "http://localhost",
        "https://api.example.vn",
    ],
)
def test_loopback_http_and_https_are_accepted(base_url: str) -> None:
    """https:// anywhere and http:// to loopback need no opt-in."""
    VBotClient(SECRET, base_url=base_url)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["countAll", "token"])
async def test_redirect_sends_nothing_to_the_other_host(status: int, endpoint: str) -> None:
    """A redirect (API or login) is not followed: the other loopback server receives nothing."""
    elsewhere: list[web.Request] = []

    async def steal(request: web.Request) -> web.Response:
        elsewhere.append(request)
        return web.json_response({"status": 1, "error": 0, "message": "", "data": 1})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", steal)
    async with serve(other) as other_url:

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": other_url + request.path_qs})

        origin = web.Application()
        origin.router.add_route("*", "/{tail:.*}", redirect)
        credential: Any = SECRET if endpoint == "countAll" else PasswordAuth("alice", PASSWORD)
        async with (
            serve(origin) as origin_url,
            VBotClient(credential, base_url=origin_url, retry=NO_WAIT) as client,
        ):
            with pytest.raises(APIError) as info:
                await asyncio.wait_for(client.count_calls(), GUARD)
    assert info.value.http_status == status
    assert elsewhere == []


# -- the command line ---------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``python -m vbot_cdr *args``; return its exit status and stdout + stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vbot_cdr",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), GUARD)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace") + err.decode(errors="replace")


def cli_env(base_url: str, token: str = SECRET) -> dict[str, str]:
    """The environment of a CLI run: ours, minus any VBOT_ settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VBOT_")}
    env |= {"VBOT_TOKEN": token, "VBOT_BASE_URL": base_url, "PYTHONDEVMODE": "1"}
    return env


async def cli_against_fake(
    args: list[str], faults: dict[str, list[Fault]], cwd: Path, token: str = SECRET
) -> tuple[int, str]:
    """Run the CLI against its own fake server, with ``faults`` queued per endpoint."""
    async with FakeVBotServer(count=40, token=SECRET) as server:
        for endpoint, queued in faults.items():
            if endpoint.startswith("page "):
                server.inject(*queued, page=int(endpoint.split()[1]))
            else:
                server.inject(*queued, endpoint=endpoint)
        return await run_cli(*args, env=cli_env(server.base_url, token), cwd=cwd)


async def cli_against_malformed_http(cwd: Path) -> tuple[int, str]:
    """Run the CLI against a server whose first answer is not HTTP, and whose next is a 403."""
    malformed = b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}"
    forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(answering(malformed, forbidden)) as server:
        return await run_cli("count", "-v", env=cli_env(server.url), cwd=cwd)


async def test_no_secret_in_cli_output(tmp_path: Path) -> None:
    """The command line, retrying and failing in many ways with -v, never prints the token."""
    out = str(tmp_path / "calls.jsonl")
    runs = {
        "retried-502": cli_against_fake(
            ["count", "-v"], {"countAll": [Fault(status=502)]}, tmp_path
        ),
        "export-fails-mid-way": cli_against_fake(
            ["export", "-v", "--out", out, "--page-size", "10"],
            {"page 3": [Fault(envelope_error=7, message="lỗi")]},
            tmp_path,
        ),
        "truncated-then-404": cli_against_fake(
            ["conversation", "-v", "NOPE"],
            {"getBotConversation": [Fault(truncate=True)]},
            tmp_path,
        ),
        "timeout-then-401": cli_against_fake(
            ["count", "-v", "--timeout", "0.2"],
            {"countAll": [Fault(hang=True)]},
            tmp_path,
            token="wrong-" + SECRET,
        ),
        "malformed-http": cli_against_malformed_http(tmp_path),
    }
    results = dict(zip(runs, await asyncio.gather(*runs.values()), strict=True))
    assert results["retried-502"][1].startswith("40\n")
    for name, (status, output) in results.items():
        assert_no_secret(output, name)
        assert (status == 0) == (name == "retried-502"), (name, output)
        assert "retrying" in output or name == "export-fails-mid-way", (name, output)
