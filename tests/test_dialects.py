"""The API's dialects (v2, v3-legacy, v3): the documented examples through the client, the
requests each dialect sends, its envelopes and errors, and credentials a server echoes."""

from __future__ import annotations

import asyncio
import datetime as dt
import traceback
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import orjson
import pytest
from aiohttp import web

from tests._loopback import exception_chain, serve
from tests._records import exported
from tests.conftest import SERVED_DIALECTS, credential
from vbot_cdr import (
    APIError,
    AuthenticationError,
    BotConversation,
    CallFilter,
    PasswordAuth,
    ResponseFormatError,
    RetryPolicy,
    VBotClient,
    VBotError,
)
from vbot_cdr._dialects import Api, dialect_for
from vbot_cdr._wire import Request, read_response
from vbot_cdr.testing import FakeVBotServer, Fault

NO_WAIT = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0)
KEY = "key-S3CRET-0123456789abcdef"
TOKEN = "tok-S3CRET-fedcba9876543210"
GUARD = 30.0

# -- the documented examples, as the sources write them ------------------------------------------

#: A record of the getAll example of the seed document (API.md), its placeholders as written.
SEED_RECORD: dict[str, Any] = {
    "phone": "sample string 1",
    "name": "sample string 2",
    "customer_uid": "sample string 3",
    "duration": 4,
    "billsec": 5,
    "sip_code": "sample string 6",
    "disposition": "sample string 7",
    "input_log": "sample string 8",
    "status": 9,
    "postage": 10.1,
    "service_charge": 11.1,
    "postage_bot_service": 12.1,
    "member": {"name": "sample string 1", "color": "sample string 2", "vbot_id": "sample 3"},
    "hotline": {
        "code": "sample string 1",
        "name": "sample string 2",
        "phone_number": "sample string 3",
    },
    "call_collected_data": [
        {
            "cfkey": "sample string 1",
            "cfname": "sample string 2",
            "cfvalue": "sample string 3",
            "description": "sample string 4",
        },
        {
            "cfkey": "sample string 1",
            "cfname": "sample string 2",
            "cfvalue": "sample string 3",
            "description": "sample string 4",
        },
    ],
    "answer_at": 13,
    "end_call_at": 14,
    "campaign_name": "sample string 15",
    "campaign_code": "sample string 16",
    "campaign_group_name": "sample string 17",
    "campaign_group_code": "sample string 18",
    "template_script_name": "sample string 19",
    "template_script_code": "sample string 20",
    "voice_text": "sample string 21",
    "create_at": 22,
    "bot_id": "sample string 23",
    "trans_id": "sample string 24",
    "create_by": "sample string 25",
    "score": 26.1,
    "is_record": True,
}
#: The record of open-api/v2 and open-api/v3 campaign-cdr.md (``member`` without ``vbot_id``).
DOC_RECORD: dict[str, Any] = {
    **SEED_RECORD,
    "member": {"name": "sample string 1", "color": "sample string 2"},
}
#: v3-legacy: the same, with the documented example's epoch-millisecond time.
LEGACY_RECORD: dict[str, Any] = {**DOC_RECORD, "create_at": 1695254400000}
#: v3's new endpoints: camelCase, times in milliseconds, and v3's own fields
#: (API-VERSIONS.md, dialect D), with a documented disposition and its SIP code.
V3_RECORD: dict[str, Any] = {
    "phone": "0912345678",
    "name": "Nguyễn Văn An",
    "customerUid": "KH000123",
    "duration": 64,
    "billsec": 42,
    "sipCode": "200",
    "disposition": "ANSWER",
    "inputLog": "Vâng, tôi biết rồi.",
    "status": 1,
    "postage": 880.0,
    "serviceCharge": 200.0,
    "postageBotService": 300.5,
    "member": {"name": "Lê Minh Quân", "color": "#2980b9"},
    "hotline": {"code": "HL01", "name": "Hotline HN", "phoneNumber": "02471001234"},
    "callCollectedData": [
        {"cfkey": "xac_nhan", "cfname": "Xác nhận", "cfvalue": "Đồng ý", "description": "d"}
    ],
    "answerAt": 1695254410000,
    "endCallAt": 1695254464000,
    "campaignName": "Nhắc nợ tháng 9",
    "campaignCode": "CMP01",
    "campaignGroupName": "Nhắc nợ",
    "campaignGroupCode": "GRP01",
    "templateScriptName": "Kịch bản nhắc nợ",
    "templateScriptCode": "TPL01",
    "voiceText": "Xin chào",
    "createAt": 1695254400000,
    "botId": "BOT01",
    "transId": "TX-1695254400000",
    "createBy": "admin",
    "score": 8.5,
    "isRecord": True,
    "externalCallId": "CRM-77",
    "campaignId": 101,
    "campaignGroupId": 11,
    "templateScriptId": 1001,
    "botMemberStatusConnect": "CONNECTED",
}
#: V3_RECORD as CallRecord.to_dict() gives it: the seed's snake_case names.
V3_EXPORTED: dict[str, Any] = {
    "phone": "0912345678",
    "name": "Nguyễn Văn An",
    "customer_uid": "KH000123",
    "duration": 64,
    "billsec": 42,
    "sip_code": "200",
    "disposition": "ANSWER",
    "input_log": "Vâng, tôi biết rồi.",
    "status": 1,
    "postage": 880.0,
    "service_charge": 200.0,
    "postage_bot_service": 300.5,
    "member": {"name": "Lê Minh Quân", "color": "#2980b9", "vbot_id": None},
    "hotline": {"code": "HL01", "name": "Hotline HN", "phone_number": "02471001234"},
    "call_collected_data": [
        {"cfkey": "xac_nhan", "cfname": "Xác nhận", "cfvalue": "Đồng ý", "description": "d"}
    ],
    "answer_at": 1695254410000,
    "end_call_at": 1695254464000,
    "campaign_name": "Nhắc nợ tháng 9",
    "campaign_code": "CMP01",
    "campaign_group_name": "Nhắc nợ",
    "campaign_group_code": "GRP01",
    "template_script_name": "Kịch bản nhắc nợ",
    "template_script_code": "TPL01",
    "voice_text": "Xin chào",
    "create_at": 1695254400000,
    "bot_id": "BOT01",
    "trans_id": "TX-1695254400000",
    "create_by": "admin",
    "score": 8.5,
    "is_record": True,
    "external_call_id": "CRM-77",
    "campaign_id": 101,
    "campaign_group_id": 11,
    "template_script_id": 1001,
    "bot_member_status_connect": "CONNECTED",
}
V3_ONLY = {
    "external_call_id": None,
    "campaign_id": None,
    "campaign_group_id": None,
    "template_script_id": None,
    "bot_member_status_connect": None,
}
V3_CONVERSATION = "assistant: Xin chào anh An | user: Vâng, tôi biết rồi. | assistant: Cảm ơn anh |"


@attrs.frozen
class Example:
    """One dialect's documented answers (list, count, conversation) and what they read as."""

    api: str
    paths: tuple[str, str, str]  # getAll, countAll, getBotConversation
    records: bytes
    count: bytes
    conversation: bytes
    exported: dict[str, Any]


def _v2(data: Any, **envelope: Any) -> bytes:
    return orjson.dumps({**envelope, "message": "sample string 3", "data": data})


EXAMPLES = {
    "v2-seed": Example(
        "v2",
        (
            "/api/campaignCall/cdr/getAll",
            "/api/campaignCall/cdr/countAll",
            "/api/campaignCall/cdr/getBotConversation",
        ),
        _v2([SEED_RECORD], status=1, error=0),
        _v2(4, status=1, error=0),
        _v2("sample string 4", status=1, error=0),
        {**SEED_RECORD, **V3_ONLY},
    ),
    "v2": Example(
        "v2",
        (
            "/api/campaignCall/cdr/getAll",
            "/api/campaignCall/cdr/countAll",
            "/api/campaignCall/cdr/getBotConversation",
        ),
        _v2([DOC_RECORD], error=0),
        _v2(4, error=0),
        _v2("sample string 4", error=0),
        {**DOC_RECORD, "member": {**DOC_RECORD["member"], "vbot_id": None}, **V3_ONLY},
    ),
    "v3-legacy": Example(
        "v3-legacy",
        (
            "/api/campaignCall/cdr/getAll",
            "/api/campaignCall/cdr/countAll",
            "/api/campaignCall/cdr/getBotConversation",
        ),
        _v2([LEGACY_RECORD], error=0),
        _v2(4, error=0),
        _v2("sample string 4", error=0),
        {**LEGACY_RECORD, "member": {**DOC_RECORD["member"], "vbot_id": None}, **V3_ONLY},
    ),
    "v3": Example(
        "v3",
        (
            "/m-auto-call/api/cdr/get-all",
            "/m-auto-call/api/cdr/count",
            "/m-auto-call/api/cdr/get-bot-conversation",
        ),
        orjson.dumps({"status": 200, "msg": "success", "errorCode": 0, "data": [V3_RECORD]}),
        orjson.dumps({"status": 200, "msg": "success", "errorCode": 0, "data": 4}),
        orjson.dumps({"status": 200, "msg": "success", "errorCode": 0, "data": V3_CONVERSATION}),
        V3_EXPORTED,
    ),
}


@attrs.define
class Seen:
    """What the example server saw: the path, query and credential headers of each request."""

    requests: list[tuple[str, dict[str, str], dict[str, str]]] = attrs.field(factory=list)


@asynccontextmanager
async def answering_paths(answers: dict[str, bytes]) -> AsyncIterator[tuple[str, Seen]]:
    """A loopback server answering each path with its body (404 for any other path)."""
    seen = Seen()

    async def handle(request: web.Request) -> web.Response:
        credentials = {
            k: v for k, v in request.headers.items() if k in ("Authorization", "X-API-Key")
        }
        seen.requests.append((request.path, dict(request.query), credentials))
        body = answers.get(request.path)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    async with serve(app) as url:
        yield url, seen


def client_for(api: str, base_url: str, **options: Any) -> VBotClient:
    if api == "v2":
        return VBotClient(TOKEN, base_url=base_url, retry=NO_WAIT, **options)
    api_name = dialect_for(api).name
    return VBotClient(api_key=KEY, base_url=base_url, api=api_name, retry=NO_WAIT, **options)


@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_documented_examples_read_into_every_field(name: str) -> None:
    """Each dialect's documented answers, through the client, give every field as documented,
    under the seed's names, from the dialect's paths with the dialect's header."""
    example = EXAMPLES[name]
    list_path, count_path, conversation_path = example.paths
    answers = {
        list_path: example.records,
        count_path: example.count,
        conversation_path: example.conversation,
    }
    async with answering_paths(answers) as (url, seen), client_for(example.api, url) as client:
        [call] = await client.get_calls(page=1, size=10)
        count = await client.count_calls()
        conversation = await client.get_bot_conversation("T1")
    assert call.to_dict() == exported(example.exported)
    assert call.extras == {}
    assert count == 4
    assert conversation.raw == orjson.loads(example.conversation)["data"]
    assert [path for path, _, _ in seen.requests] == [list_path, count_path, conversation_path]
    expected_header = (
        {"Authorization": f"Bearer {TOKEN}"} if example.api == "v2" else {"X-API-Key": KEY}
    )
    assert all(headers == expected_header for _, _, headers in seen.requests)
    if example.api == "v3":
        assert conversation.turns == (
            {"role": "assistant", "content": "Xin chào anh An"},
            {"role": "user", "content": "Vâng, tôi biết rồi."},
            {"role": "assistant", "content": "Cảm ơn anh"},
        )
        assert call.created == dt.datetime(2023, 9, 21, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("api", ["v2", "v3-legacy"])
async def test_the_documented_example_envelope_is_a_failure(api: str) -> None:
    """The v2/v3 documents' example answer has ``error: 2``: without ``status`` that is a
    failure, read as an APIError with the server's code and message, not as records."""
    body = orjson.dumps({"error": 2, "message": "sample string 3", "data": [DOC_RECORD]})
    async with (
        answering_paths({"/api/campaignCall/cdr/getAll": body}) as (url, _),
        client_for(api, url) as client,
    ):
        with pytest.raises(APIError) as info:
            await client.get_calls(page=1)
    assert type(info.value) is APIError
    assert (info.value.error_code, info.value.message) == (2, "sample string 3")


@pytest.mark.parametrize(
    ("api", "body", "kind", "code"),
    [
        ("v3", {"status": 500, "msg": "error", "errorCode": 803, "data": None}, "auth", 803),
        ("v3", {"status": 500, "msg": "error", "errorCode": 500, "data": None}, "api", 500),
        ("v2", {"error": 401, "message": "Token hết hạn", "data": None}, "auth", 401),
        ("v2", {"status": 0, "error": 403, "message": "Không có quyền", "data": None}, "auth", 403),
        ("v3-legacy", {"error": 403, "message": "Sai API key", "data": None}, "auth", 403),
        ("v3-legacy", {"error": -1, "message": "Sai tham số", "data": None}, "api", -1),
    ],
    ids=["v3-803", "v3-500", "v2-401", "v2-seed-403", "v3-legacy-403", "v3-legacy-bad-param"],
)
async def test_failure_envelopes_are_typed_errors(
    api: str, body: dict[str, Any], kind: str, code: int
) -> None:
    """A failure envelope of any dialect is an APIError with the code and message; 401, 403 and
    v3's 803 ("not allowed to view") are AuthenticationError."""
    path = EXAMPLES["v3" if api == "v3" else "v2"].paths[1]
    async with (
        answering_paths({path: orjson.dumps(body)}) as (url, seen),
        client_for(api, url) as client,
    ):
        with pytest.raises(APIError) as info:
            await client.count_calls()
    assert isinstance(info.value, AuthenticationError) == (kind == "auth")
    assert info.value.error_code == code
    assert info.value.message == body.get("msg", body.get("message"))
    assert len(seen.requests) == 1  # a failure envelope is the server's answer: not retried


async def test_a_refusal_code_is_authentication_error_whatever_the_status() -> None:
    """v3's 803 sent with HTTP 500 is an AuthenticationError at once, not a retried 5xx."""
    body = orjson.dumps({"status": 500, "msg": "not allowed", "errorCode": 803, "data": None})

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/m-auto-call/api/cdr/count", refuse)
    async with serve(app) as url, client_for("v3", url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.count_calls()
    assert (info.value.error_code, info.value.http_status) == (803, 500)
    assert info.value.message == "not allowed"


# -- requests per dialect ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "renamed", "lacking"),
    [
        ("v2", {}, {"min_postage", "max_postage"}),
        ("v3-legacy", {}, {"min_postage", "max_postage"}),
        ("v3", {"key": "key_search", "disposition": "disposition_search"}, set()),
    ],
)
def test_each_dialect_has_every_criterion_of_call_filter_but_those_it_lacks(
    api: str, renamed: dict[str, str], lacking: set[str]
) -> None:
    """A dialect's filter table is CallFilter's fields, in order, each under its own name
    unless the dialect renames it, without the criteria it lacks."""
    fields = [a.name for a in attrs.fields(CallFilter)]
    expected = {name: renamed.get(name, name) for name in fields if name not in lacking}
    table = dialect_for(api).filters
    assert list(table.items()) == list(expected.items())



@pytest.mark.parametrize(
    ("api", "expected"),
    [
        ("v2", {"key": "0912", "disposition": "answer", "start_date": "1764547200"}),
        (
            "v3-legacy",
            {"key": "0912", "disposition": "answer", "start_date": "1764547200000"},
        ),
        (
            "v3",
            {
                "key_search": "0912",
                "disposition_search": "ANSWER",
                "min_postage": "100.0",
                "max_postage": "1000.5",
                "start_date": "1764547200000",
            },
        ),
    ],
)
async def test_filters_go_under_each_dialects_names_and_units(
    api: str, expected: dict[str, str]
) -> None:
    """key and disposition are key_search and disposition_search in v3; a datetime goes in
    the dialect's unit (milliseconds in v3 and v3-legacy) unless time_unit says otherwise."""
    since = dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc)
    criteria: dict[str, Any] = {"key": "0912", "start_date": since}
    criteria["disposition"] = "ANSWER" if api == "v3" else "answer"
    if api == "v3":
        criteria |= {"min_postage": 100.0, "max_postage": 1000.5}
    path = EXAMPLES["v3" if api == "v3" else "v2"].paths[1]
    count = orjson.dumps({"status": 200, "msg": "ok", "errorCode": 0, "data": 1})
    if api != "v3":
        count = _v2(1, error=0)
    async with answering_paths({path: count}) as (url, seen):
        async with client_for(api, url) as client:
            assert await client.count_calls(**criteria) == 1
        async with client_for(api, url, time_unit="s") as seconds:
            await seconds.count_calls(start_date=since)
    assert seen.requests[0][1] == expected
    assert seen.requests[1][1] == {"start_date": "1764547200"}


@pytest.mark.parametrize(
    ("api", "criteria"),
    [
        ("v2", {"min_postage": 1.0}),
        ("v2", {"max_postage": 5}),
        ("v3-legacy", {"min_postage": 1.0}),
    ],
)
async def test_a_filter_the_dialect_lacks_is_refused_before_any_request(
    api: str, criteria: dict[str, Any]
) -> None:
    """min_postage and max_postage exist in v3 only: elsewhere a ValueError, nothing sent."""
    async with answering_paths({}) as (url, seen), client_for(api, url) as client:
        with pytest.raises(ValueError, match=r"no (min|max)_postage filter"):
            await client.count_calls(**criteria)
        with pytest.raises(ValueError, match="postage"):
            client.iter_calls(**criteria)
        with pytest.raises(ValueError, match="postage"):
            await client.get_calls(CallFilter(**criteria), page=1)
    assert seen.requests == []


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({}, TypeError),
        ({"token": TOKEN, "api_key": KEY}, TypeError),
        ({"api_key": KEY, "api": "v2"}, TypeError),
        ({"token": TOKEN, "api": "v3"}, TypeError),
        ({"token": PasswordAuth("alice", "pw"), "api": "v3-legacy"}, TypeError),
        ({"api_key": KEY, "api": "v4"}, ValueError),
        ({"api_key": KEY, "vbot_id": "VB1"}, ValueError),
        ({"api_key": KEY, "api": "v3-legacy", "project_code": "P"}, ValueError),
        ({"api_key": KEY, "api": "v3-legacy", "vbot_id": "VB1"}, ValueError),
        ({"api_key": ""}, ValueError),
        ({"api_key": 42}, TypeError),
    ],
    ids=[
        "no-credential",
        "both-credentials",
        "key-for-v2",
        "token-for-v3",
        "password-for-v3-legacy",
        "unknown-api",
        "vbot-id-in-v3",
        "project-code-in-v3-legacy",
        "vbot-id-in-v3-legacy",
        "empty-key",
        "key-not-a-string",
    ],
)
def test_credentials_and_identity_are_checked_at_construction(
    arguments: dict[str, Any], error: type[Exception]
) -> None:
    """Exactly one credential, one the dialect takes, and only the identity it has."""
    with pytest.raises(error):
        VBotClient(base_url="https://api.example.vn", **arguments)


def test_the_dialect_is_inferred_from_the_credential() -> None:
    """An API key means v3, a token (or PasswordAuth) v2; the repr never shows either."""
    by_key = VBotClient(api_key=KEY, base_url="https://api.example.vn", project_code="P")
    by_token = VBotClient(TOKEN, base_url="https://api.example.vn", vbot_id="VB1")
    assert "api='v3'" in repr(by_key)
    assert "api='v2'" in repr(by_token)
    assert KEY not in repr(by_key)
    assert TOKEN not in repr(by_token)


@pytest.mark.parametrize("api", ["v3", "v3-legacy"])
async def test_an_api_key_provider_is_asked_again_after_a_401(api: Api) -> None:
    """An async key provider is asked before each request and once more after a 401."""
    keys = iter(["old-key", "new-key"])

    async def provider() -> str:
        return next(keys)

    async with (
        FakeVBotServer(count=7, api=api, api_key="new-key") as server,
        VBotClient(api_key=provider, base_url=server.base_url, api=api) as client,
    ):
        assert await client.count_calls() == 7
    assert [r.authorized for r in server.requests] == [False, True]


# -- auth in the envelope --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SERVED_DIALECTS))
async def test_an_envelope_401_renews_the_credential_and_retries_once(name: str) -> None:
    """A failure envelope with code 401 (HTTP 200) renews the token or key and retries once."""
    calls = 0

    async def provider() -> str:
        """The server's credential; from the second call on, a new one (the server's too)."""
        nonlocal calls
        calls += 1
        if calls > 1:
            server.token, server.api_key = f"token-{calls}", f"key-{calls}"
        return server.api_key if server.api != "v2" else server.token

    async with FakeVBotServer(count=9, **SERVED_DIALECTS[name]) as server:
        server.inject(Fault(envelope_error=401, message="Unauthorized"), endpoint="countAll")
        kind = "token" if server.api == "v2" else "api_key"
        options = {kind: provider, "api": server.api}
        async with VBotClient(base_url=server.base_url, retry=NO_WAIT, **options) as client:
            assert await client.count_calls() == 9
        assert server.count("countAll") == 2
        assert calls == 2
        server.inject(Fault(envelope_error=403, message="Forbidden"), endpoint="countAll")
        async with VBotClient(base_url=server.base_url, retry=NO_WAIT, **options) as client:
            with pytest.raises(AuthenticationError) as info:
                await client.count_calls()
        assert info.value.error_code == 403  # not allowed: renewing would not help
        assert calls == 3


async def test_an_envelope_401_logs_in_again_with_password_auth() -> None:
    """With PasswordAuth, an envelope 401 gets a new token from /token, then one retry."""
    async with FakeVBotServer(count=5, envelope_status=False) as server:
        server.token_endpoint.users["alice"] = "pw-1"
        async with VBotClient(PasswordAuth("alice", "pw-1"), base_url=server.base_url) as client:
            assert await client.count_calls() == 5
            server.inject(Fault(envelope_error=401, message="Token hết hạn"), endpoint="countAll")
            assert await client.count_calls() == 5
        assert server.count("token") == 2
        assert server.count("countAll") == 3


# -- secrets a server echoes -----------------------------------------------------------------------


def assert_hidden(error: BaseException, *secrets: str) -> None:
    texts = ["".join(traceback.format_exception(error))]
    for link in exception_chain(error):
        texts += [str(link), repr(link), repr(link.args), repr(vars(link))]
        texts.append(str(getattr(link, "body", "")))
    for text in texts:
        for secret in secrets:
            assert secret not in text


@pytest.mark.parametrize("name", list(SERVED_DIALECTS))
async def test_echoed_credentials_never_reach_an_error(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that echoes the credential (401 body, failure message, HTML page of request
    headers) has it blanked out of every error, body and log line, in every dialect."""
    caplog.set_level("DEBUG", logger="vbot_cdr")
    errors: list[VBotError] = []

    async def collect(call: Awaitable[Any]) -> None:
        with pytest.raises(VBotError) as info:
            await asyncio.wait_for(call, GUARD)
        errors.append(info.value)

    options = SERVED_DIALECTS[name]
    async with FakeVBotServer(
        count=5, token=TOKEN, api_key=KEY, echo_credentials=True, **options
    ) as server:
        secret = TOKEN if server.api == "v2" else KEY
        wrong = "wrong-" + secret
        refused = {**credential(server), ("token" if server.api == "v2" else "api_key"): wrong}
        async with VBotClient(base_url=server.base_url, retry=NO_WAIT, **refused) as client:
            await collect(client.count_calls())
        async with VBotClient(
            base_url=server.base_url, retry=NO_WAIT, **credential(server)
        ) as client:
            server.inject(Fault(envelope_error=9, message="Sai tham số"))
            await collect(client.get_calls(page=1))
            server.inject(*[Fault(status=503)] * 2, endpoint="countAll")
            await collect(client.count_calls())
            server.inject(Fault(status=401), endpoint="countAll")
            await collect(client.count_calls())
    assert isinstance(errors[0], AuthenticationError)
    assert "<hidden>" in (errors[0].body or "")
    assert "<hidden>" in errors[1].message  # the echo was there, and was blanked out
    assert "<hidden>" in (errors[2].body or "")
    for error in errors:
        assert_hidden(error, secret, wrong)
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert wrong not in record.getMessage()


async def test_v3_conversations_keep_their_text() -> None:
    """The fake's v3 conversation is the documented text format; raw is kept as sent."""
    async with FakeVBotServer(count=20, api="v3") as server:
        record = next(r for r in server.records if r["disposition"] == "ANSWER")
        async with VBotClient(api_key=server.api_key, base_url=server.base_url) as client:
            conversation = await client.get_bot_conversation(record["trans_id"])
    assert type(conversation) is BotConversation
    assert conversation.raw.startswith("assistant: ")
    assert conversation.raw.endswith("|")
    assert conversation.turns[0]["role"] == "assistant"
    assert {t["role"] for t in conversation.turns} == {"assistant", "user"}
    assert len(conversation.turns) == conversation.raw.count("|")


async def test_v3_windows_and_dates_count_in_milliseconds() -> None:
    """Against v3 (times in ms), a windowed iteration from a datetime yields every call since
    then exactly once: dates and window widths go in the dialect's unit."""
    since = dt.datetime(2025, 12, 1, 1, tzinfo=dt.timezone.utc)
    async with FakeVBotServer(count=300, api="v3") as server:
        expected = [
            r["trans_id"] for r in server.records if r["create_at"] >= since.timestamp() * 1000
        ]
        async with VBotClient(api_key=server.api_key, base_url=server.base_url) as client:
            assert client.time_unit == "ms"
            calls = client.iter_calls(
                start_date=since,
                end_date=since + dt.timedelta(days=1),
                window=dt.timedelta(hours=1),
                page_size=25,
            )
            async with calls:
                ids = [call.trans_id async for call in calls]
    assert 0 < len(expected) < 300
    assert sorted(ids) == sorted(expected)
    assert calls.stats.windows > 1


# -- the wire, without sockets -------------------------------------------------------------------


def _request(api: str) -> Request:
    return Request("countAll", {}, dialect=dialect_for(api))


@pytest.mark.parametrize(
    ("api", "body", "data"),
    [
        ("v2", {"status": 1, "error": 0, "message": "ok", "data": 3}, 3),
        ("v2", {"status": 1, "error": 7, "message": "ok", "data": 3}, 3),  # status decides
        ("v2", {"error": 0, "message": "ok", "data": 3}, 3),
        ("v2", {"error": 0, "data": None}, None),
        ("v3-legacy", {"error": 0, "message": "ok", "data": [1]}, [1]),
        ("v3", {"status": 200, "msg": "success", "errorCode": 0, "data": "x"}, "x"),
    ],
    ids=["seed", "seed-status-decides", "no-status", "null-data", "legacy", "v3"],
)
def test_success_envelopes(api: str, body: dict[str, Any], data: Any) -> None:
    """Each dialect's success envelope gives its data."""
    assert read_response(_request(api), 200, {}, orjson.dumps(body)) == data


@pytest.mark.parametrize(
    ("api", "body"),
    [
        ("v2", {"status": 2, "error": 0, "data": 1}),
        ("v2", {"message": "ok", "data": 1}),
        ("v2", {"error": "0", "data": 1}),
        ("v2", {"status": 200, "msg": "success", "errorCode": 0, "data": 1}),
        ("v3", {"error": 0, "message": "ok", "data": 1}),
        ("v3", {"status": 200, "msg": "success", "errorCode": "0", "data": 1}),
        ("v3", {"status": 200, "msg": "success", "errorCode": 0}),
        ("v3", [0]),
    ],
    ids=[
        "bad-status",
        "no-code",
        "string-code",
        "v3-envelope-to-v2",
        "v2-envelope-to-v3",
        "v3-string-code",
        "v3-no-data",
        "not-an-object",
    ],
)
def test_what_is_not_the_dialects_envelope_is_a_format_error(api: str, body: Any) -> None:
    """A body that is not the dialect's success or failure envelope is a retryable
    ResponseFormatError, never data."""
    with pytest.raises(ResponseFormatError) as info:
        read_response(_request(api), 200, {}, orjson.dumps(body))
    assert info.value.retryable


@pytest.mark.parametrize(
    "secret",
    ["plain-S3CRET", 'quo"te/S3CRET\\x', "khóa-bí-mật S3CRET+&="],
    ids=["plain", "json-escaped", "url-encoded"],
)
def test_an_echoed_secret_is_blanked_out_of_the_error(secret: str) -> None:
    """A failure envelope that echoes the credential (as sent, JSON-escaped or URL-encoded)
    gives an error whose message and body hide it."""
    forms = [secret, urllib.parse.quote(secret), urllib.parse.quote_plus(secret)]
    echo = orjson.dumps({"error": 5, "message": f"bad key {' | '.join(forms)}", "data": None})
    with pytest.raises(APIError) as info:
        read_response(_request("v2"), 200, {}, echo, secrets=(secret,))
    error = info.value
    assert error.message.count("<hidden>") == len(forms)
    for form in forms:
        assert form not in error.message
        assert form not in (error.body or "")
    assert orjson.dumps(secret).decode()[1:-1] not in (error.body or "")
