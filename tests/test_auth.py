"""Logging in with a username and password: `PasswordAuth`, the token exchange, the fake /token."""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest

from vbot_cdr import (
    APIError,
    AuthenticationError,
    PasswordAuth,
    RateLimitError,
    ResponseFormatError,
    VBotClient,
    VBotError,
    cli,
)
from vbot_cdr import _wire as wire
from vbot_cdr._auth import token_source
from vbot_cdr.testing import FakeTokenEndpoint, FakeVBotServer, Fault

from .conftest import NO_WAIT

USER = "alice"
#: Non-ASCII, with form and JSON metacharacters, to exercise encoding and redaction.
PASSWORD = 'mật khẩu&grant_type=x"1'
BAD_LOGIN = "Sai tên đăng nhập hoặc mật khẩu"
BAD_REFRESH = "Refresh token không hợp lệ hoặc đã hết hạn"
LIFETIME = 899.0
MARGIN = 60.0


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(server: FakeVBotServer, clock: Clock) -> FakeTokenEndpoint:
    """The fake's /token, knowing alice, issuing 899-second tokens on the shared clock."""
    token_endpoint = server.token_endpoint
    token_endpoint.users[USER] = PASSWORD
    token_endpoint.clock = clock
    token_endpoint.expires_in = LIFETIME
    return token_endpoint


MakeLogin = Callable[..., VBotClient]


@pytest.fixture
def login(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    clock: Clock,
    make_client: Callable[..., VBotClient],
) -> MakeLogin:
    """Build clients of `server` that log in as alice on the shared clock."""

    def make(password: str = PASSWORD, **options: Any) -> VBotClient:
        auth = PasswordAuth(USER, password, refresh_margin=MARGIN, clock=clock)
        return make_client(server, token=auth, **options)

    return make


def refused_api_requests(server: FakeVBotServer) -> int:
    return sum(1 for r in server.requests if r.endpoint != wire.TOKEN and not r.authorized)


# -- logging in and renewing, over loopback ----------------------------------------------------


async def test_first_request_logs_in_and_later_requests_reuse_the_token(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """The first request logs in with grant_type=password; later ones reuse its token."""
    client = login()
    assert await client.count_calls() == 250
    assert len(await client.get_calls(page=1, size=10)) == 10
    await client.get_bot_conversation(server.records[0]["trans_id"])
    assert endpoint.grants == ["password"]
    assert server.count(wire.TOKEN) == 1
    assert refused_api_requests(server) == 0


async def test_from_password_logs_in(server: FakeVBotServer, endpoint: FakeTokenEndpoint) -> None:
    """VBotClient.from_password builds a client that logs in, passing the other options on."""
    async with VBotClient.from_password(
        USER, PASSWORD, base_url=server.base_url, retry=NO_WAIT, page_size=7
    ) as client:
        assert len(await client.get_calls(page=1)) == 7
    assert endpoint.grants == ["password"]


@pytest.mark.parametrize(
    ("lifetime", "renewed_after"),
    [(LIFETIME, LIFETIME - MARGIN), (20.0, 10.0)],
    ids=["margin-before-expiry", "short-token-at-half-life"],
)
async def test_token_is_refreshed_shortly_before_it_expires(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    login: MakeLogin,
    clock: Clock,
    lifetime: float,
    renewed_after: float,
) -> None:
    """The token is used until the margin (at most half its life) and refreshed before a 401."""
    endpoint.expires_in = lifetime
    client = login()
    await client.count_calls()
    clock.advance(renewed_after - 1)
    await client.count_calls()
    assert endpoint.grants == ["password"]
    clock.advance(1)
    await client.count_calls()
    assert endpoint.grants == ["password", "refresh_token"]
    assert refused_api_requests(server) == 0


async def test_401_on_a_valid_token_refreshes_it(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """A 401 on a token the client thought valid is cured by one refresh and one retry."""
    client = login()
    await client.count_calls()
    endpoint.expire_access_tokens()
    assert await client.count_calls() == 250
    assert endpoint.grants == ["password", "refresh_token"]
    assert refused_api_requests(server) == 1


@pytest.mark.parametrize("trigger", ["401", "clock"])
async def test_refused_refresh_logs_in_again_once(
    endpoint: FakeTokenEndpoint, login: MakeLogin, clock: Clock, trigger: str
) -> None:
    """When the refresh token is refused, the client logs in again with the password, once."""
    client = login()
    await client.count_calls()
    endpoint.revoke_refresh_tokens()
    if trigger == "401":
        endpoint.expire_access_tokens()
    else:
        clock.advance(LIFETIME)
    assert await client.count_calls() == 250
    assert endpoint.grants == ["password", "refresh_token", "password"]


@pytest.mark.parametrize(
    ("refusal", "http_status", "error_code"),
    [("oauth2", 400, None), ("envelope", 401, 401)],
    ids=["oauth2-body", "envelope-body"],
)
async def test_failed_login_is_authentication_error_with_the_reason(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    login: MakeLogin,
    refusal: Any,
    http_status: int,
    error_code: int | None,
) -> None:
    """A refused login raises AuthenticationError with the server's reason, never retried."""
    endpoint.refusal = refusal
    with pytest.raises(AuthenticationError) as info:
        await login(password="wrong").count_calls()
    error = info.value
    assert (error.message, error.http_status) == (BAD_LOGIN, http_status)
    assert error.error_code == error_code
    assert error.endpoint == wire.TOKEN
    assert BAD_LOGIN in str(error)
    assert endpoint.grants == ["password"]
    assert server.counts() == {wire.TOKEN: 1}


async def test_refresh_and_login_both_refused_is_authentication_error(
    endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """If the password changed, a refused refresh leads to one login, whose refusal is raised."""
    client = login()
    await client.count_calls()
    endpoint.users[USER] = "changed"
    endpoint.revoke_refresh_tokens()
    endpoint.expire_access_tokens()
    with pytest.raises(AuthenticationError) as info:
        await client.count_calls()
    assert info.value.message == BAD_LOGIN
    assert endpoint.grants == ["password", "refresh_token", "password"]


async def test_token_request_is_retried_when_transient(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """A 503 from /token is retried under the client's retry policy."""
    server.inject(Fault(status=503), endpoint=wire.TOKEN)
    assert await login().count_calls() == 250
    assert endpoint.grants == ["password", "password"]


# -- the renewal rules, without a server -------------------------------------------------------


class Exchange:
    """A token endpoint in memory: records the requests, answers the given grants in turn."""

    def __init__(self, *grants: wire.TokenGrant) -> None:
        self.grants = list(grants)
        self.sent: list[wire.TokenRequest] = []

    async def __call__(self, request: wire.TokenRequest) -> wire.TokenGrant:
        self.sent.append(request)
        return self.grants.pop(0)

    @property
    def refresh_tokens_sent(self) -> list[str | None]:
        return [request.fields.get("refresh_token") for request in self.sent]


async def test_refresh_token_is_kept_when_a_refresh_answers_none(clock: Clock) -> None:
    """A refresh answered without a refresh token keeps the one held (RFC 6749, section 6)."""
    exchange = Exchange(
        wire.TokenGrant("at-1", "rt-1", 100.0),
        wire.TokenGrant("at-2", None, 100.0),
        wire.TokenGrant("at-3", None, 100.0),
    )
    source = token_source(PasswordAuth(USER, PASSWORD, clock=clock), exchange)
    assert await source.token() == "at-1"
    assert await source.renew("at-1") == "at-2"
    assert await source.renew("at-2") == "at-3"
    assert exchange.refresh_tokens_sent == [None, "rt-1", "rt-1"]


async def test_renewing_an_already_replaced_token_sends_nothing(clock: Clock) -> None:
    """A 401 on a token that another request has already replaced is answered with the new one."""
    exchange = Exchange(
        wire.TokenGrant("at-1", "rt-1", 100.0), wire.TokenGrant("at-2", "rt-2", 100.0)
    )
    source = token_source(PasswordAuth(USER, PASSWORD, clock=clock), exchange)
    await source.token()
    assert await source.renew("at-1") == "at-2"
    assert await source.renew("at-1") == "at-2"
    assert len(exchange.sent) == 2


async def test_token_without_a_lifetime_is_renewed_only_after_a_401(clock: Clock) -> None:
    """Without expires_in the token is kept however long, until the server refuses it."""
    exchange = Exchange(wire.TokenGrant("at-1", None, None), wire.TokenGrant("at-2", None, None))
    source = token_source(PasswordAuth(USER, PASSWORD, clock=clock), exchange)
    await source.token()
    clock.advance(10**9)
    assert await source.token() == "at-1"
    assert await source.renew("at-1") == "at-2"
    assert [request.grant_type for request in exchange.sent] == ["password", "password"]


# -- single flight -----------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["401", "clock"])
async def test_one_expiry_under_64_concurrent_pages_is_one_token_request(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    login: MakeLogin,
    clock: Clock,
    trigger: str,
) -> None:
    """64 concurrent requests meeting one expiry (by 401 or by the clock) cause one /token."""
    client = login()
    await client.count_calls()
    if trigger == "401":
        endpoint.expire_access_tokens()
    else:
        clock.advance(LIFETIME)
    pages = await asyncio.gather(*(client.get_calls(page=p, size=2) for p in range(1, 65)))
    assert [len(page) for page in pages] == [2] * 64
    assert endpoint.grants == ["password", "refresh_token"]
    assert refused_api_requests(server) == (64 if trigger == "401" else 0)


async def test_expiry_in_the_middle_of_iter_calls_is_one_token_request(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin, clock: Clock
) -> None:
    """iter_calls with 64 pages in flight reads everything across an expiry with one refresh."""
    client = login()
    seen: list[str | None] = []
    async with client.iter_calls(page_size=2, concurrency=64) as calls:
        async for call in calls:
            if not seen:
                clock.advance(LIFETIME)  # both sides: the client renews, the fake refuses
            seen.append(call.trans_id)
    assert seen == [r["trans_id"] for r in server.records]
    assert endpoint.grants == ["password", "refresh_token"]


async def test_concurrent_requests_share_one_failed_login(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """When the login is refused, the 64 requests waiting for it all get its error."""
    client = login(password="wrong")
    results = await asyncio.gather(
        *(client.get_calls(page=p, size=2) for p in range(1, 65)), return_exceptions=True
    )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert {r.message for r in results if isinstance(r, AuthenticationError)} == {BAD_LOGIN}
    assert endpoint.grants == ["password"]


async def test_cancelled_login_leaves_the_next_request_to_log_in(
    server: FakeVBotServer, endpoint: FakeTokenEndpoint, login: MakeLogin
) -> None:
    """A request cancelled while it logs in does not fail those that waited for its token."""
    client = login()
    server.inject(Fault(hang=True), endpoint=wire.TOKEN)
    first = asyncio.create_task(client.count_calls())
    await server.wait_for_requests(1, endpoint=wire.TOKEN)
    second = asyncio.create_task(client.count_calls())
    first.cancel()
    assert await second == 250
    with pytest.raises(asyncio.CancelledError):
        await first
    assert server.count(wire.TOKEN) == 2


# -- secrets -----------------------------------------------------------------------------------


async def test_secrets_never_shown(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    login: MakeLogin,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Password, access and refresh tokens appear in no repr, exception or log line."""
    caplog.set_level(logging.DEBUG)
    auth = PasswordAuth(USER, PASSWORD, clock=clock)
    client = login()
    await client.count_calls()  # login
    clock.advance(LIFETIME)
    await client.count_calls()  # refresh by the clock
    endpoint.expire_access_tokens()
    await client.count_calls()  # refresh after a 401
    endpoint.revoke_refresh_tokens()
    endpoint.expire_access_tokens()
    await client.count_calls()  # refused refresh, login again
    endpoint.users[USER] = "changed"
    endpoint.revoke_refresh_tokens()
    endpoint.expire_access_tokens()
    with pytest.raises(AuthenticationError) as info:
        await client.count_calls()  # refused refresh, refused login

    errors: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None:
        errors.append(error)
        error = error.__cause__ or error.__context__
    shown = [repr(auth), str(auth), repr(client), repr(client._auth), caplog.text]
    for error in errors:
        shown += [str(error), repr(error), repr(vars(error))]
    grant = wire.TokenGrant(*endpoint.issued[0], LIFETIME)
    shown += [repr(grant), repr(wire.password_grant(USER, PASSWORD))]
    shown += [repr(wire.refresh_grant(endpoint.issued[0][1]))]
    secrets = [PASSWORD, *(token for pair in endpoint.issued for token in pair)]
    assert len(secrets) == 1 + 2 * 4
    for text in shown:
        for secret in secrets:
            assert secret not in text
    assert "token: refresh refused" in caplog.text  # the log did record the renewals


# -- command line ------------------------------------------------------------------------------


async def test_cli_logs_in_with_username_and_password_from_the_environment(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """VBOT_USERNAME and VBOT_PASSWORD stand in for VBOT_TOKEN; the password is never shown."""
    monkeypatch.delenv(cli.ENV_TOKEN, raising=False)
    monkeypatch.setenv(cli.ENV_USERNAME, USER)
    monkeypatch.setenv(cli.ENV_PASSWORD, PASSWORD)
    status = await asyncio.to_thread(cli.main, ["count", "--base-url", server.base_url, "-v"])
    out, err = capsys.readouterr()
    assert (status, out) == (0, "250\n")
    assert endpoint.grants == ["password"]
    for secret in (PASSWORD, *endpoint.issued[0]):
        assert secret not in out + err


async def test_cli_refused_login_shows_the_reason_not_the_password(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A refused login exits 1 with the server's reason on stderr, and no secret anywhere."""
    monkeypatch.delenv(cli.ENV_TOKEN, raising=False)
    monkeypatch.setenv(cli.ENV_USERNAME, USER)
    monkeypatch.setenv(cli.ENV_PASSWORD, "wrong-" + PASSWORD)
    status = await asyncio.to_thread(cli.main, ["count", "--base-url", server.base_url, "-v"])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert BAD_LOGIN in err
    assert PASSWORD not in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_cli_asks_for_the_password_without_echo_on_a_terminal(
    server: FakeVBotServer,
    endpoint: FakeTokenEndpoint,
    make_client: Callable[..., VBotClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no VBOT_PASSWORD and a terminal, getpass asks for it; the client logs in with it."""
    prompts: list[str] = []

    def ask(prompt: str = "Password: ", stream: Any = None) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(getpass, "getpass", ask)
    monkeypatch.setattr(sys, "stdin", Terminal())
    handler = signal.getsignal(signal.SIGINT)
    args = cli.parse_options(["count"]).connection
    auth = cli.resolve_credential(args, {cli.ENV_USERNAME: USER})
    assert prompts == [f"VBot password for {USER}: "]
    assert signal.getsignal(signal.SIGINT) is handler
    assert await make_client(server, token=auth).count_calls() == 250
    assert endpoint.grants == ["password"]


@pytest.mark.parametrize(
    ("environ", "terminal", "expected"),
    [
        ({"VBOT_TOKEN": "t", "VBOT_USERNAME": USER, "VBOT_PASSWORD": "p"}, False, "t"),
        ({"VBOT_USERNAME": USER}, False, "no password for alice: set VBOT_PASSWORD"),
        ({"VBOT_PASSWORD": "p"}, True, "set VBOT_TOKEN, or VBOT_USERNAME and VBOT_PASSWORD"),
        ({"VBOT_USERNAME": USER}, True, "no password given"),
    ],
    ids=["token-first", "no-terminal", "no-username", "empty-answer"],
)
def test_cli_credential_resolution(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], terminal: bool, expected: str
) -> None:
    """VBOT_TOKEN wins; a login needs a username and a password from the environment or a tty."""
    monkeypatch.setattr(sys, "stdin", Terminal() if terminal else io.StringIO())
    monkeypatch.setattr(getpass, "getpass", lambda prompt="", stream=None: "")
    args = cli.parse_options(["count"]).connection
    if expected == "t":
        assert cli.resolve_credential(args, environ) == "t"
        return
    with pytest.raises(cli.UsageError, match=expected):
        cli.resolve_credential(args, environ)


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options", "name"),
    [
        (("", "pw"), {}, "username"),
        (("alice", ""), {}, "password"),
        (("alice", "pw"), {"refresh_margin": -1.0}, "refresh_margin"),
    ],
    ids=["empty-username", "empty-password", "negative-margin"],
)
def test_password_auth_rejects_bad_arguments(
    args: tuple[str, str], options: Any, name: str
) -> None:
    """Empty credentials and a negative margin are refused when PasswordAuth is made."""
    with pytest.raises(ValueError, match=f"^{name} must be"):
        PasswordAuth(*args, **options)


def test_password_auth_repr_shows_the_username_only() -> None:
    """The repr names the user and hides the password."""
    assert repr(PasswordAuth(USER, PASSWORD)) == "PasswordAuth(username='alice', password=<hidden>)"


def test_token_source_rejects_other_credentials() -> None:
    """Anything but a string, an async callable, a token source or PasswordAuth is a TypeError."""

    async def never(request: wire.TokenRequest) -> wire.TokenGrant:
        raise AssertionError

    with pytest.raises(TypeError, match="PasswordAuth"):
        token_source(42, never)  # type: ignore[arg-type]


# -- the sans-I/O exchange ---------------------------------------------------------------------


def test_password_grant_is_a_form() -> None:
    """A login is a form-encoded POST to /token asking for JSON, grant_type=password."""
    request = wire.password_grant(USER, PASSWORD)
    assert (request.path, request.endpoint, request.page) == ("/token", "token", None)
    assert request.headers == {
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert parse_qs(request.body.decode()) == {
        "username": [USER],
        "password": [PASSWORD],
        "grant_type": ["password"],
    }
    assert request.secrets == (PASSWORD,)


def test_refresh_grant_is_a_form() -> None:
    """A renewal sends the refresh token with grant_type=refresh_token."""
    request = wire.refresh_grant("rt-1")
    assert parse_qs(request.body.decode()) == {
        "refresh_token": ["rt-1"],
        "grant_type": ["refresh_token"],
    }
    assert request.secrets == ("rt-1",)


def token_answer(**fields: Any) -> bytes:
    answer = {"access_token": "at-1", "token_type": "bearer", "expires_in": 899}
    answer |= {"refresh_token": "rt-2"} | fields
    return orjson.dumps({k: v for k, v in answer.items() if v is not ...})


@pytest.mark.parametrize(
    ("body", "grant"),
    [
        (token_answer(), wire.TokenGrant("at-1", "rt-2", 899.0)),
        (token_answer(token_type="Bearer", expires_in=0.5), wire.TokenGrant("at-1", "rt-2", 0.5)),
        (
            token_answer(refresh_token=..., expires_in=..., token_type=...),
            wire.TokenGrant("at-1", None, None),
        ),
        (token_answer(refresh_token=None, expires_in=None), wire.TokenGrant("at-1", None, None)),
        (token_answer(refresh_token=""), wire.TokenGrant("at-1", None, 899.0)),
    ],
    ids=["full", "capital-bearer", "access-token-only", "nulls", "empty-refresh-token"],
)
def test_read_token_response_success(body: bytes, grant: wire.TokenGrant) -> None:
    """An OAuth2 answer becomes a TokenGrant; a missing lifetime or refresh token is None."""
    assert wire.read_token_response(wire.refresh_grant("rt-1"), 200, {}, body) == grant


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "code", "message"),
    [
        (
            400,
            {},
            b'{"error": "invalid_grant", "error_description": "Bad credentials"}',
            AuthenticationError,
            None,
            "Bad credentials",
        ),
        (401, {}, b'{"error": "invalid_client"}', AuthenticationError, None, "invalid_client"),
        (
            401,
            {},
            '{"status": 0, "error": 401, "message": "Sai mật khẩu", "data": null}'.encode(),
            AuthenticationError,
            401,
            "Sai mật khẩu",
        ),
        (
            200,
            {},
            '{"status": 0, "error": 7, "message": "Tài khoản bị khoá", "data": null}'.encode(),
            AuthenticationError,
            7,
            "Tài khoản bị khoá",
        ),
        (403, {}, b"Forbidden", AuthenticationError, None, None),
        (503, {}, b"", APIError, None, None),
        (429, {"Retry-After": "3"}, b"", RateLimitError, None, None),
    ],
    ids=[
        "400-oauth2",
        "401-oauth2-code-only",
        "401-envelope",
        "200-failure-envelope",
        "403-text",
        "503",
        "429",
    ],
)
def test_read_token_response_failure(
    status: int,
    headers: dict[str, str],
    body: bytes,
    cls: type[APIError],
    code: int | None,
    message: str | None,
) -> None:
    """Refusals (OAuth2 or envelope bodies) are AuthenticationError with the server's reason.

    Without a reason in the body, the message is the one `error_for_status` gives any request.
    """
    request = wire.password_grant(USER, PASSWORD)
    with pytest.raises(APIError) as info:
        wire.read_token_response(request, status, headers, body)
    error = info.value
    assert type(error) is cls
    assert (error.http_status, error.error_code, error.endpoint) == (status, code, wire.TOKEN)
    if message is None:
        default = wire.error_for_status(request, status, headers, body.decode())
        assert default is not None
        message = default.message
    assert error.message == message


@pytest.mark.parametrize(
    ("body", "field", "retryable"),
    [
        (b'{"access_token": "at-secr', None, True),
        (b'{"status": 1, "data": {"access_token": "at-secret"}}', None, False),
        (token_answer(access_token=""), "access_token", False),
        (token_answer(access_token=None), "access_token", False),
        (token_answer(refresh_token=["rt-secret"]), "refresh_token", False),
        (token_answer(expires_in="899"), "expires_in", False),
        (token_answer(expires_in=0), "expires_in", False),
        (token_answer(expires_in=True), "expires_in", False),
        (token_answer(token_type="mac"), "token_type", False),
    ],
    ids=[
        "truncated",
        "enveloped-token",
        "empty-access-token",
        "null-access-token",
        "list-refresh-token",
        "string-lifetime",
        "zero-lifetime",
        "bool-lifetime",
        "mac-token-type",
    ],
)
def test_read_token_response_malformed(body: bytes, field: str | None, retryable: bool) -> None:
    """A 2xx that is not a usable token is a ResponseFormatError that keeps no body."""
    with pytest.raises(ResponseFormatError) as info:
        wire.read_token_response(wire.refresh_grant("rt-1"), 200, {}, body)
    error = info.value
    assert (error.field, error.retryable, error.body) == (field, retryable, None)
    assert "secret" not in str(error)


@pytest.mark.parametrize("status", [400, 200, 500])
def test_read_token_response_blanks_out_echoed_secrets(status: int) -> None:
    """A refusal that quotes the refresh token or password sent keeps neither."""
    secret = 'rt-"ẞ'
    description = f"refresh token {secret} expired"
    doc = (
        {"status": 0, "error": 1, "message": description}
        if status == 200
        else {"error": "invalid_grant", "error_description": description}
    )
    with pytest.raises(VBotError) as info:
        wire.read_token_response(wire.refresh_grant(secret), status, {}, orjson.dumps(doc))
    assert isinstance(info.value, APIError)
    assert info.value.message == "refresh token <hidden> expired"
    assert secret not in f"{info.value} {info.value.body}"
    assert orjson.dumps(secret)[1:-1].decode() not in f"{info.value.body}"
