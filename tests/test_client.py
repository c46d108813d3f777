"""VBotClient across the wire: the loopback fake server, mocked transports, and raw sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from tests._loopback import closed_port, exception_chain, raw_server, serve
from tests._records import exported
from tests.conftest import answered, identity, wire_name
from vbot_cdr import (
    AiohttpTransport,
    APIError,
    AuthenticationError,
    BotConversation,
    CallFilter,
    CallRecord,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    Transport,
    TransportError,
    VBotClient,
    VBotError,
)
from vbot_cdr.testing import FakeVBotServer, Fault, instant_retries

MakeClient = Callable[..., VBotClient]
UTC = dt.timezone.utc
API = "https://api.example.vn"
NO_WAIT = RetryPolicy(max_attempts=4, backoff=0.0, max_backoff=0.0)
#: Long enough for any healthy run; a hang fails the test instead of stalling the suite.
HANG_GUARD = 60.0


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits between retries, recorded instead of slept."""
    with instant_retries() as recorded:
        yield recorded


async def within_guard(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, HANG_GUARD)


# -- each endpoint on the wire ----------------------------------------------------------


async def test_count_calls_request_and_result(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """count_calls GETs countAll with the credential, identity and filter, and returns the int."""
    server = any_server
    client = make_client(server, **identity(server))
    expected = sum(1 for r in server.records if r["campaign_code"] == "CMP_XACNHAN_DON")
    assert 0 < expected < 250

    count = await client.count_calls(campaign_code="CMP_XACNHAN_DON")

    assert count == expected
    [request] = server.requests
    assert request.endpoint == "countAll"
    assert request.authorized
    assert request.params == {**identity(server), "campaign_code": "CMP_XACNHAN_DON"}


async def test_get_calls_request_and_result(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """get_calls GETs one getAll page with page and size, and returns typed CallRecords."""
    server = any_server
    client = make_client(server, **identity(server))

    calls = await client.get_calls(page=2, size=30, disposition=answered(server))

    answered_calls = [r for r in server.records if r["disposition"] == answered(server)]
    assert all(type(call) is CallRecord for call in calls)
    assert [call.to_dict() for call in calls] == [exported(r) for r in answered_calls[30:60]]
    [request] = server.requests
    assert request.endpoint == "getAll"
    assert request.authorized
    assert request.params == {
        **identity(server),
        wire_name(server, "disposition"): answered(server),
        "page": "2",
        "size": "30",
    }


async def test_get_calls_uses_the_client_page_size(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """Without size, get_calls asks for the client's page_size."""
    server = any_server
    client = make_client(server, page_size=17)
    calls = await client.get_calls(page=1)
    assert len(calls) == 17
    assert server.requests[0].params == {"page": "1", "size": "17"}


async def test_get_calls_counts_pages_from_first_page(make_client: MakeClient) -> None:
    """With first_page=0 the first page is page 0, sent as such."""
    async with FakeVBotServer(count=30, first_page=0) as server:
        client = make_client(server, first_page=0)
        calls = await client.get_calls(page=0, size=10)
        assert [c.to_dict() for c in calls] == [exported(r) for r in server.records[:10]]
        assert server.requests[0].params["page"] == "0"


async def test_get_bot_conversation_request_and_result(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """get_bot_conversation GETs getBotConversation and returns the raw string with its turns."""
    server = any_server
    client = make_client(server, **identity(server))
    record = next(r for r in server.records if r["disposition"] == answered(server))

    conversation = await client.get_bot_conversation(record["trans_id"], bot_id=record["bot_id"])

    assert type(conversation) is BotConversation
    assert conversation.trans_id == record["trans_id"]
    assert conversation.turns
    assert isinstance(conversation.raw, str)
    [request] = server.requests
    assert request.endpoint == "getBotConversation"
    assert request.authorized
    assert request.params == {
        **identity(server),
        "bot_id": record["bot_id"],
        "trans_id": record["trans_id"],
    }


@pytest.mark.parametrize(
    ("time_unit", "start", "end"),
    [("s", "1764547200", "1764550800"), ("ms", "1764547200000", "1764550800000")],
    ids=["seconds", "milliseconds"],
)
async def test_datetime_filters_are_sent_in_the_time_unit(
    server: FakeVBotServer, make_client: MakeClient, time_unit: str, start: str, end: str
) -> None:
    """Aware datetimes in a filter go on the wire as epoch numbers in the client's time_unit."""
    client = make_client(server, time_unit=time_unit)
    since = dt.datetime(2025, 12, 1, tzinfo=UTC)
    call_filter = CallFilter(start_date=since, end_date=since + dt.timedelta(hours=1), key="")
    await client.count_calls(call_filter)
    assert server.requests[0].params == {"start_date": start, "end_date": end}


async def test_filters_select_on_the_server(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A CallFilter and the same criteria as keywords send the same request and agree."""
    server = any_server
    client = make_client(server)
    start = 1_764_550_000 * (1000 if client.time_unit == "ms" else 1)
    criteria: dict[str, Any] = {"bot_id": "BOT_NHACNO", "status": 1, "start_date": start}
    by_object = await client.count_calls(CallFilter(**criteria))
    by_keywords = await client.count_calls(**criteria)
    assert by_object == by_keywords
    assert server.requests[0].params == server.requests[1].params
    assert server.requests[0].params == {
        "bot_id": "BOT_NHACNO",
        "status": "1",
        "start_date": str(start),
    }


async def test_many_requests_share_one_client(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """Concurrent calls on one client all succeed and each gets its own page."""
    server = any_server
    client = make_client(server)
    pages = await asyncio.gather(*(client.get_calls(page=p, size=10) for p in range(1, 11)))
    flat = [call.trans_id for page in pages for call in page]
    assert flat == [r["trans_id"] for r in server.records[:100]]


# -- errors, each in its case -----------------------------------------------------------


async def test_failure_envelope_is_api_error(
    any_server: FakeVBotServer, make_client: MakeClient, waits: list[float]
) -> None:
    """A failure envelope is an APIError with the server's code and message, never retried."""
    server, client = any_server, make_client(any_server)
    server.inject(Fault(envelope_error=1001, message="Sai mã dự án"), endpoint="countAll")
    with pytest.raises(APIError) as info:
        await client.count_calls()
    assert type(info.value) is APIError
    assert (info.value.error_code, info.value.message) == (1001, "Sai mã dự án")
    assert info.value.http_status == 200
    assert info.value.endpoint == "countAll"
    assert server.count("countAll") == 1
    assert waits == []


async def test_deep_page_refusal_is_api_error_not_truncation(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A page the server refuses with a failure envelope raises, rather than returning nothing."""
    server = any_server
    client = make_client(server)
    with pytest.raises(APIError) as info:
        await client.get_calls(page=1, size=server.max_page_size + 1)
    assert info.value.error_code == 400
    assert info.value.page == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_persistent_server_error_ends_in_api_error(
    server: FakeVBotServer, client: VBotClient, waits: list[float], status: int
) -> None:
    """A 5xx that persists is tried max_attempts times, then raised with the server's words."""
    server.inject(*[Fault(status=status, message="Lỗi hệ thống")] * 10)
    with pytest.raises(APIError) as info:
        await within_guard(client.get_calls(page=3))
    assert info.value.http_status == status
    assert (info.value.error_code, info.value.message) == (status, "Lỗi hệ thống")
    assert (info.value.endpoint, info.value.page) == ("getAll", 3)
    assert server.count("getAll") == NO_WAIT.max_attempts
    assert len(waits) == NO_WAIT.max_attempts - 1


@pytest.mark.parametrize("failures", [1, 2, 3], ids=["one", "two", "three"])
async def test_transient_errors_are_retried_to_success(
    server: FakeVBotServer, client: VBotClient, waits: list[float], failures: int
) -> None:
    """After transient failures within the budget the request succeeds, one request per attempt."""
    faults = [Fault(status=503), Fault(status=500), Fault(truncate=True)][:failures]
    server.inject(*faults, endpoint="countAll")
    assert await client.count_calls() == 250
    assert server.count("countAll") == failures + 1


async def test_persistent_429_is_rate_limit_error(
    server: FakeVBotServer, client: VBotClient, waits: list[float]
) -> None:
    """A 429 that outlasts the retries is a RateLimitError with retry_after, its waits honoured."""
    server.inject(*[Fault(status=429, retry_after="7", message="Chậm lại")] * 10)
    with pytest.raises(RateLimitError) as info:
        await within_guard(client.get_calls(page=1))
    assert info.value.retry_after == 7.0
    assert info.value.http_status == 429
    assert (info.value.error_code, info.value.message) == (429, "Chậm lại")
    assert server.count("getAll") == NO_WAIT.max_attempts
    assert waits == [7.0] * (NO_WAIT.max_attempts - 1)


async def test_retry_after_is_honoured_above_max_backoff(
    server: FakeVBotServer, client: VBotClient, waits: list[float]
) -> None:
    """The server's Retry-After is waited as given, though the policy's backoff is zero."""
    server.inject(Fault(status=429, retry_after="12"), Fault(status=503), endpoint="countAll")
    assert await client.count_calls() == 250
    assert waits == [12.0, 0.0]
    assert server.count("countAll") == 3


async def test_retry_after_above_cap_raises_at_once(
    server: FakeVBotServer, make_client: MakeClient, waits: list[float]
) -> None:
    """A Retry-After above max_retry_after raises RateLimitError after one request, unslept."""
    policy = RetryPolicy(max_attempts=4, backoff=0.0, max_retry_after=60.0)
    client = make_client(server, retry=policy)
    server.inject(Fault(status=429, retry_after="3600"), endpoint="countAll")
    with pytest.raises(RateLimitError) as info:
        await client.count_calls()
    assert info.value.retry_after == 3600.0
    assert server.count("countAll") == 1
    assert waits == []


async def test_wrong_token_is_authentication_error(
    server: FakeVBotServer, make_client: MakeClient, waits: list[float]
) -> None:
    """A 401 is an AuthenticationError with the server's code and message, never retried."""
    client = make_client(server, token="not-the-token")
    with pytest.raises(AuthenticationError) as info:
        await client.count_calls()
    assert info.value.http_status == 401
    assert (info.value.error_code, info.value.message) == (401, "Unauthorized")
    assert server.count("countAll") == 1
    assert not server.requests[0].authorized
    assert waits == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, AuthenticationError), (400, APIError), (404, APIError), (422, APIError)],
    ids=["403", "400", "404", "422"],
)
async def test_client_errors_are_not_retried(
    server: FakeVBotServer, client: VBotClient, status: int, cls: type[APIError]
) -> None:
    """403 and other 4xx are raised after one request, with the server's code and message."""
    server.inject(Fault(status=status, message="Từ chối"), endpoint="getBotConversation")
    with pytest.raises(cls) as info:
        await client.get_bot_conversation(server.records[0]["trans_id"])
    assert type(info.value) is cls
    assert (info.value.http_status, info.value.error_code) == (status, status)
    assert info.value.message == "Từ chối"
    assert server.count("getBotConversation") == 1


async def test_truncated_body_is_retried(
    server: FakeVBotServer, client: VBotClient, waits: list[float]
) -> None:
    """A body cut short by a dropped connection is retried, and the retry's page is returned."""
    server.inject(Fault(truncate=True))
    calls = await client.get_calls(page=1, size=50)
    assert [c.to_dict() for c in calls] == [exported(r) for r in server.records[:50]]
    assert server.count("getAll") == 2


async def test_persistently_truncated_body_is_transport_error(
    server: FakeVBotServer, client: VBotClient, waits: list[float]
) -> None:
    """A body cut short on every attempt ends in TransportError after max_attempts."""
    server.inject(*[Fault(truncate=True)] * 10)
    with pytest.raises(TransportError) as info:
        await within_guard(client.get_calls(page=2))
    assert (info.value.endpoint, info.value.page) == ("getAll", 2)
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    assert server.count("getAll") == NO_WAIT.max_attempts


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", b'{"status": 1, "data": [', b'{"ok": true}'],
    ids=["html", "truncated-json", "not-envelope"],
)
async def test_unreadable_body_is_retried_then_format_error(
    server: FakeVBotServer, client: VBotClient, waits: list[float], body: bytes
) -> None:
    """A 200 whose body is not the envelope is retried, then raised as ResponseFormatError."""
    server.inject(*[Fault(body=body)] * 10, endpoint="countAll")
    with pytest.raises(ResponseFormatError) as info:
        await within_guard(client.count_calls())
    assert info.value.retryable
    assert server.count("countAll") == NO_WAIT.max_attempts


async def test_record_of_wrong_shape_names_the_field(make_client: MakeClient) -> None:
    """A record with a field of the wrong type is a ResponseFormatError naming it, not retried."""
    records = [
        {"trans_id": "A", "create_at": 3, "duration": 10},
        {"trans_id": "B", "create_at": 2, "duration": "10"},
    ]
    async with FakeVBotServer(records) as server:
        client = make_client(server)
        with pytest.raises(ResponseFormatError) as info:
            await client.get_calls(page=1)
        assert info.value.field == "data[1].duration"
        assert (info.value.endpoint, info.value.page) == ("getAll", 1)
        assert server.count("getAll") == 1


async def test_records_with_missing_and_unknown_fields_parse(make_client: MakeClient) -> None:
    """Records with nulls, missing fields and new fields come back typed, extras kept."""
    records = [
        {"trans_id": "A", "create_at": 1_764_547_200_000, "member": None, "new": 1},
        {"trans_id": "B"},
    ]
    async with FakeVBotServer(records) as server:
        calls = await make_client(server).get_calls(page=1)
    assert [c.trans_id for c in calls] == ["A", "B"]
    assert calls[0].created == dt.datetime(2025, 12, 1, tzinfo=UTC)
    assert calls[0].extras == {"new": 1}
    assert calls[1].member is None


# -- the token --------------------------------------------------------------------------


class Provider:
    """An async token provider that hands out the given tokens in turn (the last repeats)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = tokens
        self.calls = 0

    async def __call__(self) -> str:
        token = self.tokens[min(self.calls, len(self.tokens) - 1)]
        self.calls += 1
        return token


async def test_provider_is_asked_before_each_request(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A token provider is asked for the current token before every request."""
    provider = Provider(server.token)
    client = make_client(server, token=provider)
    await client.count_calls()
    await client.get_calls(page=1)
    assert provider.calls == 2
    assert all(r.authorized for r in server.requests)


async def test_401_renews_the_token_once_and_retries(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """After a 401 the provider is asked once more and the request is retried with its token."""
    provider = Provider("expired", server.token)
    client = make_client(server, token=provider)
    assert await client.count_calls() == 250
    assert provider.calls == 2
    assert [r.authorized for r in server.requests] == [False, True]


async def test_renewal_refused_again_is_authentication_error(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A renewed token refused again raises AuthenticationError: one renewal, one retry."""
    provider = Provider("expired", "also-wrong", "never-asked")
    client = make_client(server, token=provider)
    with pytest.raises(AuthenticationError) as info:
        await client.count_calls()
    assert info.value.http_status == 401
    assert provider.calls == 2
    assert server.count("countAll") == 2


async def test_same_token_after_401_is_not_resent(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """When the provider has nothing newer than the refused token, the 401 is raised at once."""
    provider = Provider("expired")
    client = make_client(server, token=provider)
    with pytest.raises(AuthenticationError):
        await client.count_calls()
    assert provider.calls == 2
    assert server.count("countAll") == 1


async def test_static_token_401_is_not_retried(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """With a fixed token a 401 has no cure, so it is raised after one request."""
    client = make_client(server, token="expired")
    with pytest.raises(AuthenticationError):
        await client.count_calls()
    assert server.count("countAll") == 1


async def test_403_does_not_renew(server: FakeVBotServer, make_client: MakeClient) -> None:
    """A 403 (forbidden, not unauthenticated) is raised without asking for a new token."""
    provider = Provider(server.token, "other")
    client = make_client(server, token=provider)
    server.inject(Fault(status=403), endpoint="countAll")
    with pytest.raises(AuthenticationError) as info:
        await client.count_calls()
    assert info.value.http_status == 403
    assert provider.calls == 1
    assert server.count("countAll") == 1


SECRET = "tok-S3CRET-0123456789abcdef"


async def failures_with_secret_token(make_client: MakeClient) -> list[VBotError]:
    """One error of every kind, each raised by a client whose token is SECRET."""
    errors: list[VBotError] = []

    async def collect(call: Awaitable[Any]) -> None:
        with pytest.raises(VBotError) as info:
            await call
        errors.append(info.value)

    async with FakeVBotServer(count=20, token=SECRET) as server:
        client = make_client(server)
        server.inject(Fault(envelope_error=9, message="Sai tham số"))
        await collect(client.get_calls(page=1))
        server.inject(*[Fault(status=500)] * 4, endpoint="countAll")
        await collect(client.count_calls())
        server.inject(*[Fault(status=429, retry_after="0")] * 4, endpoint="countAll")
        await collect(client.count_calls())
        server.inject(Fault(status=403), endpoint="countAll")
        await collect(client.count_calls())
        server.inject(*[Fault(truncate=True)] * 4)
        await collect(client.get_calls(page=1))
        server.inject(*[Fault(body=b"<html>")] * 4, endpoint="countAll")
        await collect(client.count_calls())
        await collect(client.get_calls(page=1, size=10**6))
        provider = Provider("wrong-" + SECRET, "still-wrong-" + SECRET)
        await collect(make_client(server, token=provider).count_calls())
    async with FakeVBotServer(records=[{"duration": "x"}], token=SECRET) as server:
        await collect(make_client(server).get_calls(page=1))
    dead = VBotClient(SECRET, base_url=f"http://127.0.0.1:{closed_port()}", retry=NO_WAIT)
    async with dead:
        await collect(dead.count_calls())
    return errors


async def test_token_never_in_exceptions(make_client: MakeClient, waits: list[float]) -> None:
    """No exception, nor any exception it chains to, shows the token in its str or repr."""
    errors = await failures_with_secret_token(make_client)
    kinds = {type(e) for e in errors}
    assert kinds == {
        APIError,
        AuthenticationError,
        RateLimitError,
        TransportError,
        ResponseFormatError,
    }
    for error in errors:
        for link in exception_chain(error):
            assert SECRET not in str(link), repr(link)
            assert SECRET not in repr(link)
            assert SECRET not in repr(vars(link))


async def test_token_never_in_logs(
    make_client: MakeClient, waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """No log record at any level, from any logger, contains the token."""
    caplog.set_level(logging.DEBUG)
    await failures_with_secret_token(make_client)
    assert any(r.name == "vbot_cdr" for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
        assert SECRET not in (record.exc_text or "")


@pytest.mark.parametrize("kind", ["string", "provider"])
async def test_token_never_in_client_repr(kind: str) -> None:
    """repr and str of a client, before and after use, never show the token."""
    token: Any = SECRET if kind == "string" else Provider(SECRET)
    async with FakeVBotServer(count=3, token=SECRET) as server:
        client = VBotClient(token, base_url=server.base_url, vbot_id="VB1")
        shown = [repr(client), str(client)]
        async with client:
            assert await client.count_calls() == 3
            shown += [repr(client), str(client)]
    shown += [repr(client), str(client)]
    assert "VB1" in shown[0]
    for text in shown:
        assert SECRET not in text


# -- lifecycle --------------------------------------------------------------------------


async def test_own_session_is_made_lazily_and_closed(server: FakeVBotServer) -> None:
    """A client without a session opens one on first use and closes it in aclose."""
    client = VBotClient(server.token, base_url=server.base_url)
    transport = client._transport
    assert isinstance(transport, AiohttpTransport)
    assert transport.session is None
    await client.count_calls()
    session = transport.session
    assert isinstance(session, aiohttp.ClientSession)
    assert not session.closed
    await client.aclose()
    assert session.closed


class Recording:
    """A transport that records what goes out and answers from memory: no socket."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str]]] = []
        self.closed = False

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: float,
    ) -> tuple[int, Mapping[str, str], bytes]:
        self.sent.append((method, url, dict(params or {})))
        return 200, {"Content-Type": "application/json"}, b'{"status":1,"error":0,"data":7}'

    async def aclose(self) -> None:
        self.closed = True


async def test_a_transport_replaces_the_network_and_is_left_open() -> None:
    """A given transport carries every request as (status, headers, body); the caller closes it."""
    transport = Recording()
    checked: Transport = transport  # the Protocol types a user's fake
    async with VBotClient("tok", base_url="https://api.example.vn", transport=checked) as client:
        assert await client.count_calls(bot_id="B1") == 7
    assert transport.sent == [
        ("GET", "https://api.example.vn/api/campaignCall/cdr/countAll", {"bot_id": "B1"})
    ]
    assert not transport.closed


def test_a_transport_and_a_session_together_are_refused() -> None:
    with pytest.raises(ValueError, match="transport or a session"):
        VBotClient("tok", base_url="https://a.vn", transport=Recording(), session=object())  # type: ignore[arg-type]


async def test_injected_session_is_used_and_left_open(server: FakeVBotServer) -> None:
    """An injected session carries the requests and is still open after the client closes."""
    started: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        started.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with VBotClient(server.token, base_url=server.base_url, session=session) as client:
            await client.count_calls()
        assert started == ["/api/campaignCall/cdr/countAll"]
        assert not session.closed
        await client.aclose()
        assert not session.closed
        async with session.get(server.base_url + "/api/campaignCall/cdr/countAll") as response:
            assert response.status == 401


async def test_aclose_is_idempotent(server: FakeVBotServer) -> None:
    """aclose may be called any number of times, before or after use."""
    unused = VBotClient(server.token, base_url=server.base_url)
    await unused.aclose()
    await unused.aclose()
    client = VBotClient(server.token, base_url=server.base_url)
    async with client:
        await client.count_calls()
    await client.aclose()
    await client.aclose()
    assert server.count("countAll") == 1


async def test_use_after_close_is_runtime_error(server: FakeVBotServer) -> None:
    """A closed client refuses requests and re-entry with RuntimeError, sending nothing."""
    client = VBotClient(server.token, base_url=server.base_url)
    async with client:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        await client.count_calls()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_calls(page=1)
    with pytest.raises(RuntimeError, match="closed"):
        await client.__aenter__()
    assert server.requests == []


async def test_context_manager_returns_the_client(server: FakeVBotServer) -> None:
    """async with gives back the client itself."""
    client = VBotClient(server.token, base_url=server.base_url)
    async with client as entered:
        assert entered is client


# -- bad input raises before any request ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": -1}, ValueError),
        ({"page_size": 0}, ValueError),
        ({"first_page": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": -1.0}, ValueError),
        ({"time_unit": "us"}, ValueError),
        ({"max_response_bytes": 0}, ValueError),
        ({"retry": {"max_attempts": 1}}, TypeError),
        ({"base_url": "http://api.example.vn"}, ValueError),
        ({"base_url": "ftp://127.0.0.1"}, ValueError),
        ({"base_url": "api.example.vn"}, ValueError),
        ({"base_url": "https://api.example.vn/?x=1"}, ValueError),
        ({"token": ""}, ValueError),
        ({"token": 12345}, TypeError),
    ],
    ids=[
        "zero-concurrency",
        "negative-concurrency",
        "zero-page-size",
        "negative-first-page",
        "zero-timeout",
        "negative-timeout",
        "bad-time-unit",
        "zero-max-response",
        "retry-not-policy",
        "http-to-remote",
        "not-http",
        "no-scheme",
        "query-in-base-url",
        "empty-token",
        "token-not-string",
    ],
)
async def test_bad_settings_raise_at_construction(
    server: FakeVBotServer, options: dict[str, Any], error: type[Exception]
) -> None:
    """A client with an impossible setting cannot be made, and nothing is sent."""
    options = {"token": server.token, "base_url": server.base_url, **options}
    token = options.pop("token")
    with pytest.raises(error):
        VBotClient(token, **options)
    assert server.requests == []


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:1", "http://localhost:8080", "http://[::1]:8080", "https://api.example.vn/"],
    ids=["ipv4-loopback", "localhost", "ipv6-loopback", "https"],
)
def test_https_and_loopback_http_are_accepted(base_url: str) -> None:
    """https:// anywhere and plain http:// to loopback are accepted base URLs."""
    VBotClient("token", base_url=base_url)


def test_insecure_http_needs_opting_in() -> None:
    """Plain http:// to a remote host is allowed only with allow_insecure_http."""
    VBotClient("token", base_url="http://api.example.vn", allow_insecure_http=True)


NAIVE = dt.datetime(2025, 1, 1)
AWARE = dt.datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.get_calls(page=0), ValueError),
        (lambda c: c.get_calls(page=-1), ValueError),
        (lambda c: c.get_calls(page=1, size=0), ValueError),
        (lambda c: c.get_calls(page=1, size=-10), ValueError),
        (lambda c: c.get_calls(page=True), ValueError),
        (lambda c: c.count_calls(start_date=NAIVE), ValueError),
        (lambda c: c.get_calls(page=1, end_date=NAIVE), ValueError),
        (lambda c: c.count_calls(CallFilter(start_date=AWARE), end_date=AWARE), TypeError),
        (lambda c: c.count_calls(start_date=AWARE, end_date=AWARE - dt.timedelta(1)), ValueError),
        (lambda c: c.count_calls(campaign="CMP"), TypeError),
        (lambda c: c.count_calls({"bot_id": "B"}), TypeError),
        (lambda c: c.count_calls(status="1"), TypeError),
        (lambda c: c.get_bot_conversation(""), ValueError),
    ],
    ids=[
        "page-below-first",
        "negative-page",
        "zero-size",
        "negative-size",
        "bool-page",
        "naive-start",
        "naive-end",
        "filter-and-keywords",
        "start-after-end",
        "unknown-criterion",
        "dict-as-filter",
        "status-not-int",
        "empty-trans-id",
    ],
)
async def test_bad_arguments_raise_before_any_request(
    server: FakeVBotServer,
    client: VBotClient,
    call: Callable[[VBotClient], Awaitable[Any]],
    error: type[Exception],
) -> None:
    """A bad argument raises its error without a single request reaching the server."""
    with pytest.raises(error):
        await call(client)
    assert server.requests == []


def test_bad_iteration_settings_raise_at_once(server: FakeVBotServer) -> None:
    """iter_calls with a concurrency or page size below one raises before it is iterated."""
    client = VBotClient(server.token, base_url=server.base_url)
    for options in ({"concurrency": 0}, {"concurrency": -2}, {"page_size": 0}):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            client.iter_calls(**options)
    assert server.requests == []


# -- mocked transport -------------------------------------------------------------------


class MockedResponse(aiohttp.ClientResponse):
    """aioresponses' response class, made to build under aiohttp 3.14.

    aioresponses 0.7.9 does not pass the ``stream_writer`` that aiohttp 3.14 made required
    (pnuckowski/aioresponses#289, fix pending in #288); aiohttp only reads its output_size.
    """

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
            kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(method, url, **kwargs)


def endpoint_url(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(API)}/api/campaignCall/cdr/{name}(\?.*)?$")


def sent(mocked: aioresponses) -> list[tuple[str, Any]]:
    """Every (url, kwargs) the client sent through the mock, in order."""
    return [
        (str(url), call.kwargs) for (_, url), calls in mocked.requests.items() for call in calls
    ]


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as mock:
        yield mock


@asynccontextmanager
async def mock_client(**options: Any) -> AsyncIterator[VBotClient]:
    options.setdefault("retry", NO_WAIT)
    async with VBotClient(options.pop("token", "tok"), base_url=API, **options) as client:
        yield client


async def test_request_on_the_wire(mocked: aioresponses) -> None:
    """The request goes to the endpoint URL with the query, the Bearer header and the timeout."""
    envelope = {"status": 1, "error": 0, "message": "OK", "data": 5}
    mocked.get(endpoint_url("countAll"), payload=envelope, response_class=MockedResponse)
    async with mock_client(timeout=2.5, project_code="PRJ") as client:
        assert await client.count_calls(bot_id="B1") == 5
    [(url, kwargs)] = sent(mocked)
    assert url.startswith(f"{API}/api/campaignCall/cdr/countAll?")
    assert kwargs["params"] == {"project_code": "PRJ", "bot_id": "B1"}
    assert kwargs["headers"]["Authorization"] == "Bearer tok"
    assert kwargs["timeout"].total == 2.5
    assert kwargs["allow_redirects"] is False


@pytest.mark.parametrize(
    "exception",
    [
        aiohttp.ClientConnectionError("connection refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("cut"),
    ],
    ids=["refused", "disconnected", "payload"],
)
async def test_connection_errors_end_in_transport_error(
    mocked: aioresponses, waits: list[float], exception: Exception
) -> None:
    """A connection that keeps failing is tried max_attempts times, then TransportError."""
    mocked.get(endpoint_url("getAll"), exception=exception, repeat=True)
    async with mock_client() as client:
        with pytest.raises(TransportError) as info:
            await within_guard(client.get_calls(page=4))
    assert info.value.__cause__ is exception
    assert (info.value.endpoint, info.value.page) == ("getAll", 4)
    assert len(sent(mocked)) == NO_WAIT.max_attempts
    assert len(waits) == NO_WAIT.max_attempts - 1


async def test_timeouts_end_in_transport_error(mocked: aioresponses, waits: list[float]) -> None:
    """An attempt past the timeout is retried like a connection error, then TransportError."""
    mocked.get(endpoint_url("countAll"), exception=asyncio.TimeoutError(), repeat=True)
    async with mock_client(timeout=2.5) as client:
        with pytest.raises(TransportError, match=r"2\.5s"):
            await within_guard(client.count_calls())
    assert len(sent(mocked)) == NO_WAIT.max_attempts


async def test_timeout_then_success(mocked: aioresponses, waits: list[float]) -> None:
    """One timed-out attempt is followed by a retry whose answer is returned."""
    mocked.get(endpoint_url("countAll"), exception=asyncio.TimeoutError())
    mocked.get(
        endpoint_url("countAll"),
        payload={"status": 1, "error": 0, "message": "", "data": 3},
        response_class=MockedResponse,
    )
    async with mock_client() as client:
        assert await client.count_calls() == 3
    assert len(sent(mocked)) == 2


async def test_redirect_is_not_followed(mocked: aioresponses) -> None:
    """A redirect is an APIError naming its target, and the target is never asked."""
    elsewhere = "https://elsewhere.example/collect"
    mocked.get(
        endpoint_url("countAll"),
        status=302,
        headers={"Location": elsewhere},
        response_class=MockedResponse,
    )
    mocked.get(elsewhere, payload={"status": 1, "data": 1}, response_class=MockedResponse)
    async with mock_client() as client:
        with pytest.raises(APIError) as info:
            await client.count_calls()
    assert info.value.http_status == 302
    assert elsewhere in info.value.message
    assert [url for url, _ in sent(mocked)] == [f"{API}/api/campaignCall/cdr/countAll"]


@pytest.mark.parametrize("size", [1001, 50_000], ids=["just-over", "far-over"])
async def test_response_over_max_bytes_is_refused(mocked: aioresponses, size: int) -> None:
    """A body larger than max_response_bytes is a ResponseFormatError, not buffered, not retried."""
    mocked.get(endpoint_url("getAll"), body=b"x" * size, repeat=True, response_class=MockedResponse)
    async with mock_client(max_response_bytes=1000) as client:
        with pytest.raises(ResponseFormatError, match="max_response_bytes") as info:
            await client.get_calls(page=1)
    assert not info.value.retryable
    assert len(sent(mocked)) == 1


# -- raw loopback servers ---------------------------------------------------------------


async def test_chunked_response_over_max_bytes_is_refused() -> None:
    """A body without Content-Length is cut off as soon as it passes max_response_bytes."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"x" * 1000)
        return response

    app = web.Application()
    app.router.add_get("/api/campaignCall/cdr/countAll", endless)
    async with serve(app) as base_url:
        client = VBotClient("tok", base_url=base_url, max_response_bytes=2500, retry=NO_WAIT)
        async with client:
            with pytest.raises(ResponseFormatError, match="max_response_bytes"):
                await client.count_calls()


async def test_redirect_to_another_host_does_not_carry_the_token() -> None:
    """A redirect over real HTTP is not followed: the other host receives nothing."""
    seen_elsewhere: list[str | None] = []

    async def collect(request: web.Request) -> web.Response:
        seen_elsewhere.append(request.headers.get("Authorization"))
        return web.json_response({"status": 1, "error": 0, "message": "", "data": 1})

    other = web.Application()
    other.router.add_get("/steal", collect)
    async with serve(other) as other_url:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(other_url + "/steal")

        origin = web.Application()
        origin.router.add_get("/api/campaignCall/cdr/countAll", redirect)
        async with (
            serve(origin) as origin_url,
            VBotClient(SECRET, base_url=origin_url, retry=NO_WAIT) as client,
        ):
            with pytest.raises(APIError) as info:
                await client.count_calls()
    assert info.value.http_status == 302
    assert seen_elsewhere == []


async def test_connection_refused_is_transport_error(waits: list[float]) -> None:
    """A port nobody listens on gives TransportError after max_attempts, not a hang."""
    base_url = f"http://127.0.0.1:{closed_port()}"
    async with VBotClient("tok", base_url=base_url, retry=NO_WAIT) as client:
        with pytest.raises(TransportError) as info:
            await within_guard(client.count_calls())
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
    assert len(waits) == NO_WAIT.max_attempts - 1


async def test_trickling_body_counts_against_the_timeout() -> None:
    """The timeout covers the whole body read: a body that stops half-way times the attempt out."""
    release = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"status": 1, ')
        await release.wait()
        return response

    app = web.Application()
    app.router.add_get("/api/campaignCall/cdr/countAll", trickle)
    policy = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0)
    async with serve(app) as base_url:
        try:
            async with VBotClient("tok", base_url=base_url, timeout=0.2, retry=policy) as client:
                with pytest.raises(TransportError, match=r"0\.2s") as info:
                    await within_guard(client.count_calls())
        finally:
            # Lets the handlers end, so that the server shuts down at once.
            release.set()
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)


async def test_silent_server_times_out_each_attempt() -> None:
    """A server that never answers costs one timeout per attempt, then TransportError."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and hangs up

    policy = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0)
    async with (
        raw_server(silent) as server,
        VBotClient("tok", base_url=server.url, timeout=0.2, retry=policy) as client,
    ):
        with pytest.raises(TransportError, match=r"0\.2s") as info:
            await within_guard(client.count_calls())
    assert isinstance(info.value.__cause__, asyncio.TimeoutError)
    assert server.connections == 2


async def test_trace_configs_see_every_request() -> None:
    """VBotClient(trace_configs=...) passes aiohttp TraceConfigs to the session it opens."""
    seen: list[str] = []

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with (
        FakeVBotServer(count=30, token="tok") as fake,
        VBotClient("tok", base_url=fake.base_url, trace_configs=[trace]) as client,
    ):
        assert await client.count_calls() == 30
        assert len([c async for c in client.iter_calls(page_size=10)]) == 30
    assert seen.count("/api/campaignCall/cdr/countAll") == 2
    assert seen.count("/api/campaignCall/cdr/getAll") >= 3
