"""The sans-I/O core: requests built from arguments, ``(status, headers, body)`` read back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from tests._records import exported
from vbot_cdr import (
    APIError,
    AuthenticationError,
    BotConversation,
    CallFilter,
    CallRecord,
    Member,
    RateLimitError,
    ResponseFormatError,
)
from vbot_cdr import _wire as wire
from vbot_cdr._dialects import V2, V3
from vbot_cdr.testing import generate_records

UTC = dt.timezone.utc
ICT = dt.timezone(dt.timedelta(hours=7))
LIST = wire.Request(wire.GET_ALL, {}, page=3, dialect=V2)
COUNT = wire.Request(wire.COUNT_ALL, {}, dialect=V2)
CONVERSATION = wire.Request(wire.GET_BOT_CONVERSATION, {}, dialect=V2)


def envelope(data: Any = None, *, status: Any = 1, error: Any = 0, message: Any = "OK") -> bytes:
    return orjson.dumps({"status": status, "error": error, "message": message, "data": data})


# -- status → exception ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "code", "message", "retry_after"),
    [
        (200, {}, envelope(1), None, None, None, None),
        (204, {}, b"", None, None, None, None),
        (
            401,
            {},
            envelope(status=0, error=401, message="Unauthorized"),
            AuthenticationError,
            401,
            "Unauthorized",
            None,
        ),
        (403, {}, b"Forbidden", AuthenticationError, None, "Forbidden", None),
        (
            403,
            {},
            b'{"error": "invalid_token", "error_description": "token expired"}',
            AuthenticationError,
            None,
            "token expired",
            None,
        ),
        (401, {}, b'{"error": "invalid_grant"}', AuthenticationError, None, "invalid_grant", None),
        (
            429,
            {"Retry-After": "7"},
            envelope(status=0, error=429, message="Quá nhiều yêu cầu"),
            RateLimitError,
            429,
            "Quá nhiều yêu cầu",
            7.0,
        ),
        (429, {"Retry-After": "2.5"}, b"", RateLimitError, None, "Too Many Requests", 2.5),
        (
            429,
            {"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"},
            b"",
            RateLimitError,
            None,
            None,
            0.0,
        ),
        (429, {"Retry-After": "soon"}, b"", RateLimitError, None, None, None),
        (429, {}, b"", RateLimitError, None, "Too Many Requests", None),
        (
            302,
            {"Location": "https://elsewhere.example/x"},
            b"",
            APIError,
            None,
            "unexpected redirect to https://elsewhere.example/x (not followed)",
            None,
        ),
        (
            307,
            {},
            envelope(status=0, error=1, message="moved"),
            APIError,
            1,
            "unexpected redirect to ? (not followed)",
            None,
        ),
        (
            400,
            {},
            envelope(status=0, error=400, message="Sai tham số"),
            APIError,
            400,
            "Sai tham số",
            None,
        ),
        (404, {}, b"<html>not found</html>", APIError, None, "Not Found", None),
        (409, {}, b"[1, 2]", APIError, None, "Conflict", None),
        (
            500,
            {},
            envelope(status=0, error=500, message="Lỗi hệ thống"),
            APIError,
            500,
            "Lỗi hệ thống",
            None,
        ),
        (502, {}, b"Bad Gateway", APIError, None, "Bad Gateway", None),
        (503, {"Retry-After": "3"}, b"", APIError, None, "Service Unavailable", 3.0),
    ],
    ids=[
        "200-none",
        "204-none",
        "401-envelope",
        "403-text",
        "403-oauth-description",
        "401-oauth-code-only",
        "429-retry-after-seconds",
        "429-retry-after-fraction",
        "429-retry-after-past-date",
        "429-retry-after-unreadable",
        "429-no-retry-after",
        "302-location",
        "307-no-location",
        "400-envelope",
        "404-html",
        "422-json-not-object",
        "500-envelope",
        "502-text",
        "503-not-a-rate-limit-but-says-when",
    ],
)
def test_error_for_status(
    status: int,
    headers: dict[str, str],
    body: bytes,
    cls: type[APIError] | None,
    code: int | None,
    message: str | None,
    retry_after: float | None,
) -> None:
    """Each HTTP status maps to its exception class, carrying the server's code and message."""
    error = wire.error_for_status(LIST, status, headers, body.decode())
    if cls is None:
        assert error is None
        return
    assert type(error) is cls
    assert error.http_status == status
    assert error.error_code == code
    if message is not None:
        assert error.message == message
    assert (error.endpoint, error.page) == ("getAll", 3)
    assert str(error).startswith(f"getAll (page 3): HTTP {status}")
    assert error.retry_after == retry_after


def test_error_for_status_reads_headers_case_insensitively() -> None:
    """Retry-After is found in aiohttp's case-insensitive headers however the server spelt it."""
    headers = CIMultiDictProxy(CIMultiDict({"retry-after": "9"}))
    error = wire.error_for_status(COUNT, 429, headers, "")
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 9.0


def test_error_for_status_future_http_date_is_a_positive_wait() -> None:
    """A Retry-After HTTP date in the future becomes a positive number of seconds."""
    error = wire.error_for_status(COUNT, 429, {"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}, "")
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None
    assert error.retry_after > 365 * 86400


def test_error_keeps_only_the_start_of_a_long_body() -> None:
    """An error keeps a bounded excerpt of the body, never the whole of a huge one."""
    error = wire.error_for_status(COUNT, 500, {}, "x" * 100_000)
    assert error is not None
    assert error.body is not None
    assert error.body.startswith("xxx")
    assert len(error.body) < 300


NOW = dt.datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 09:28:00 +0200", 30.0),
        ("", None),
        ("later", None),
        ("nan", None),
        ("1e400", None),
    ],
    ids=[
        "absent",
        "zero",
        "seconds",
        "padded",
        "fraction",
        "negative-is-now",
        "http-date",
        "http-date-no-zone-is-utc",
        "http-date-past-is-now",
        "http-date-offset",
        "empty",
        "garbage",
        "not-a-number",
        "infinite",
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After in delta-seconds or as an HTTP date becomes a non-negative wait in seconds."""
    assert wire.parse_retry_after(value, now=NOW) == expected


# -- the envelope -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (envelope(42), 42),
        (envelope([]), []),
        (envelope("chuỗi"), "chuỗi"),
        (envelope(None), None),
        (b'{"status": 1, "data": [1]}', [1]),
        (b'{"status": 1, "error": 0, "message": "x", "data": 3, "extra": true}', 3),
    ],
    ids=["int", "empty-array", "string", "null", "minimal", "extra-keys"],
)
def test_read_response_returns_data(body: bytes, data: Any) -> None:
    """A success envelope gives back its data unchanged."""
    assert wire.read_response(COUNT, 200, {}, body) == data


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (envelope(status=0, error=1001, message="Sai mã dự án"), 1001, "Sai mã dự án"),
        (envelope(status=0, error="E1", message="x"), None, "x"),
        (envelope(status=0, error=7, message=""), 7, "failure envelope"),
        (b'{"status": 0}', None, "failure envelope"),
    ],
    ids=["code-and-message", "non-int-code", "empty-message", "bare"],
)
def test_failure_envelope_is_api_error(body: bytes, code: int | None, message: str) -> None:
    """A failure envelope (status 0) under HTTP 200 is an APIError with the server's words."""
    with pytest.raises(APIError) as info:
        wire.read_response(LIST, 200, {}, body)
    assert type(info.value) is APIError
    assert info.value.error_code == code
    assert info.value.message == message
    assert info.value.http_status == 200
    assert (info.value.endpoint, info.value.page) == ("getAll", 3)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>upstream error</html>",
        b'{"status": 1, "data": [',
        b"[1, 2, 3]",
        b'"ok"',
        b'{"data": 1}',
        b'{"status": 2, "data": 1}',
        b'{"status": "1", "data": 1}',
        b'{"status": true, "data": 1}',
        b'{"status": 1.0, "data": 1}',
        b'{"status": null, "data": 1}',
        b'{"status": 1, "error": 0, "message": "OK"}',
    ],
    ids=[
        "empty",
        "html",
        "truncated-json",
        "array",
        "string",
        "no-status",
        "status-2",
        "status-string",
        "status-bool",
        "status-float",
        "status-null",
        "missing-data",
    ],
)
def test_unreadable_body_is_retryable_format_error(body: bytes) -> None:
    """A body that is not JSON or not the envelope is a ResponseFormatError marked retryable."""
    with pytest.raises(ResponseFormatError) as info:
        wire.read_response(LIST, 200, {}, body)
    assert info.value.retryable is True
    assert info.value.body == body.decode()
    assert (info.value.endpoint, info.value.page) == ("getAll", 3)


def test_status_error_comes_before_body_decoding() -> None:
    """A non-2xx status is an APIError even when its body is not JSON."""
    with pytest.raises(APIError) as info:
        wire.read_response(COUNT, 500, {}, b"<html>oops</html>")
    assert info.value.http_status == 500


def test_undecodable_bytes_do_not_crash_the_error() -> None:
    """Invalid UTF-8 in a body is kept as replacement characters, not raised as a decode error."""
    with pytest.raises(ResponseFormatError) as info:
        wire.read_response(COUNT, 200, {}, b"\xff\xfe garbage")
    assert info.value.body is not None
    assert "garbage" in info.value.body


def test_a_success_envelope_that_is_not_utf8_is_a_format_error() -> None:
    """A success envelope whose bytes are not UTF-8 is no data, and the error says why."""
    body = b'{"status": 1, "error": 0, "message": "OK", "data": "\xff"}'
    with pytest.raises(ResponseFormatError, match="not UTF-8") as info:
        wire.read_response(COUNT, 200, {}, body)
    assert info.value.retryable
    assert info.value.body is not None
    assert "\ufffd" in info.value.body


# -- per-endpoint readers ---------------------------------------------------------------


@pytest.mark.parametrize("data", [0, 1, 250, 10**12], ids=["zero", "one", "some", "huge"])
def test_read_count(data: int) -> None:
    """countAll's data is returned as the int it is."""
    assert wire.read_count(COUNT, data) == data


@pytest.mark.parametrize(
    "data",
    [-1, 1.0, "5", None, True, [1], {"count": 1}],
    ids=["negative", "float", "string", "null", "bool", "array", "object"],
)
def test_read_count_refuses_anything_but_a_count(data: Any) -> None:
    """countAll's data that is not a non-negative int is a ResponseFormatError naming data."""
    with pytest.raises(ResponseFormatError) as info:
        wire.read_count(COUNT, data)
    assert info.value.field == "data"
    assert info.value.retryable is False


def test_read_records_gives_typed_records() -> None:
    """getAll's data becomes CallRecords with nested members and collected fields typed."""
    raw = generate_records(5, seed=3)
    records = wire.read_records(LIST, raw)
    assert [type(r) for r in records] == [CallRecord] * 5
    assert [r.trans_id for r in records] == [r["trans_id"] for r in raw]
    assert isinstance(records[0].member, Member)
    assert records[0].member.name == raw[0]["member"]["name"]
    assert [r.to_dict() for r in records] == [exported(r) for r in raw]


def test_read_records_of_empty_page() -> None:
    """An empty array is an empty page."""
    assert wire.read_records(LIST, []) == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"duration": "12"}, "data[2].duration"),
        ({"member": {"name": 5}}, "data[2].member.name"),
        ({"member": "Lan"}, "data[2].member"),
        ({"call_collected_data": [{}, {"cfvalue": 3}]}, "data[2].call_collected_data[1].cfvalue"),
        ({"call_collected_data": "x"}, "data[2].call_collected_data"),
        ({"is_record": 1}, "data[2].is_record"),
    ],
    ids=["int-as-string", "nested", "object-as-string", "array-item", "array-as-string", "bool"],
)
def test_read_records_names_the_bad_field(bad: dict[str, Any], field: str) -> None:
    """A record with a field of the wrong type is a ResponseFormatError naming that field."""
    data: list[Any] = [{"trans_id": "a"}, {"trans_id": "b"}, {"trans_id": "c", **bad}]
    with pytest.raises(ResponseFormatError) as info:
        wire.read_records(LIST, data)
    assert info.value.field == field
    assert field in str(info.value)
    assert info.value.retryable is False
    assert (info.value.endpoint, info.value.page) == ("getAll", 3)


@pytest.mark.parametrize(
    ("data", "field"),
    [({"trans_id": "a"}, "data"), ("[]", "data"), (None, "data"), ([{}, "x"], "data[1]")],
    ids=["object", "string", "null", "item-not-object"],
)
def test_read_records_refuses_non_arrays(data: Any, field: str) -> None:
    """getAll's data that is not an array of objects is a ResponseFormatError."""
    with pytest.raises(ResponseFormatError) as info:
        wire.read_records(LIST, data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("raw", "turns"),
    [
        ('[{"role": "bot", "text": "Xin chào"}]', ({"role": "bot", "text": "Xin chào"},)),
        ("Bot: Xin chào\nKhách: Dạ", ()),
        ('{"turns": []}', ()),
        ("", ()),
    ],
    ids=["json-array", "plain-text", "json-object", "empty"],
)
def test_conversation_reader(raw: str, turns: tuple[Any, ...]) -> None:
    """getBotConversation's string is kept verbatim; turns are parsed only from a JSON array."""
    conversation = wire.conversation_reader("TX1")(CONVERSATION, raw)
    assert conversation == BotConversation(trans_id="TX1", raw=raw, turns=turns)


@pytest.mark.parametrize("data", [None, 5, ["a"], {"a": 1}], ids=["null", "int", "array", "object"])
def test_conversation_reader_refuses_non_strings(data: Any) -> None:
    """getBotConversation's data that is not a string is a ResponseFormatError naming data."""
    with pytest.raises(ResponseFormatError) as info:
        wire.conversation_reader("TX1")(CONVERSATION, data)
    assert info.value.field == "data"


# -- request building -------------------------------------------------------------------


def test_paths() -> None:
    """Each endpoint has its documented path."""
    assert COUNT.path == "/api/campaignCall/cdr/countAll"
    assert LIST.path == "/api/campaignCall/cdr/getAll"
    assert CONVERSATION.path == "/api/campaignCall/cdr/getBotConversation"


@pytest.mark.parametrize(
    ("vbot_id", "project_code", "expected"),
    [
        ("VB1", "PRJ", {"vbot_id": "VB1", "project_code": "PRJ"}),
        ("VB1", None, {"vbot_id": "VB1"}),
        (None, "PRJ", {"project_code": "PRJ"}),
        (None, None, {}),
        ("", "", {}),
    ],
    ids=["both", "vbot-id", "project-code", "neither", "empty-strings"],
)
def test_identity_goes_with_every_request(
    vbot_id: str | None, project_code: str | None, expected: dict[str, str]
) -> None:
    """vbot_id and project_code are sent with every endpoint when set, never as None or ""."""
    ident: dict[str, Any] = {"vbot_id": vbot_id, "project_code": project_code}
    count = wire.count_request(CallFilter(), time_unit="s", dialect=V2, **ident)
    page = wire.list_request(count, page=1, size=10)
    conversation = wire.conversation_request("TX1", bot_id=None, dialect=V2, **ident)
    assert dict(count.params) == expected
    assert dict(page.params) == expected | {"page": "1", "size": "10"}
    assert dict(conversation.params) == expected | {"trans_id": "TX1"}


def test_count_request_sends_set_filters_only() -> None:
    """countAll carries the set criteria and no page or size."""
    request = wire.count_request(
        CallFilter(campaign_code="CMP01", status=0, key=""),
        vbot_id=None,
        project_code=None,
        time_unit="s",
        dialect=V2,
    )
    assert (request.endpoint, request.page) == ("countAll", None)
    assert dict(request.params) == {"campaign_code": "CMP01", "status": "0"}


def test_list_request_sends_page_and_size() -> None:
    """getAll carries what countAll counts, the page and the size, and remembers the page."""
    count = wire.count_request(
        CallFilter(bot_id="BOT", hotline="HL1"),
        vbot_id="VB1",
        project_code=None,
        time_unit="s",
        dialect=V2,
    )
    request = wire.list_request(count, page=4, size=50)
    assert (request.endpoint, request.page) == ("getAll", 4)
    assert dict(request.params) == {
        "vbot_id": "VB1",
        "bot_id": "BOT",
        "hotline": "HL1",
        "page": "4",
        "size": "50",
    }


def test_list_request_keeps_the_dialect_of_its_count() -> None:
    """A page of a v3 search goes to v3's path with v3's parameter names."""
    count = wire.count_request(
        CallFilter(key="Lan"), vbot_id=None, project_code="PRJ", time_unit="ms", dialect=V3
    )
    request = wire.list_request(count, page=2, size=10)
    assert request.dialect is V3
    assert request.path == "/m-auto-call/api/cdr/get-all"
    assert dict(request.params) == {
        "project_code": "PRJ",
        "key_search": "Lan",
        "page": "2",
        "size": "10",
    }


def test_list_request_refuses_what_is_not_a_count_request() -> None:
    """Only a countAll request names a search to page through."""
    with pytest.raises(ValueError, match="countAll"):
        wire.list_request(LIST, page=1, size=10)


def test_a_request_has_no_default_dialect() -> None:
    """A request without a dialect is a TypeError, never silently v2."""
    with pytest.raises(TypeError, match="dialect"):
        wire.Request(wire.COUNT_ALL, {})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="dialect"):
        wire.count_request(  # type: ignore[call-arg]
            CallFilter(), vbot_id=None, project_code=None, time_unit="s"
        )


@pytest.mark.parametrize(
    ("bot_id", "expected"),
    [
        ("BOT1", {"bot_id": "BOT1", "trans_id": "TX9"}),
        (None, {"trans_id": "TX9"}),
        ("", {"trans_id": "TX9"}),
    ],
    ids=["bot-id", "none", "empty"],
)
def test_conversation_request(bot_id: str | None, expected: dict[str, str]) -> None:
    """getBotConversation carries trans_id, and bot_id only when set."""
    request = wire.conversation_request(
        "TX9", bot_id=bot_id, vbot_id=None, project_code=None, dialect=V2
    )
    assert request.endpoint == "getBotConversation"
    assert dict(request.params) == expected


ALL_CRITERIA: dict[str, Any] = {
    "bot_id": "BOT",
    "campaign_code": "CMP",
    "member": "Lan",
    "template_script_code": "TPL",
    "disposition": "ANSWERED",
    "key": "0901",
    "start_date": 1_700_000_000,
    "end_date": 1_700_086_400,
    "hotline": "HL1",
    "input_log_search": "thanh toán",
    "status": 1,
}


def test_every_criterion_goes_on_the_wire_as_a_string() -> None:
    """Every filter criterion, when set, is sent under its documented name as a string."""
    params = CallFilter(**ALL_CRITERIA).to_params("s")
    assert params == {name: str(value) for name, value in ALL_CRITERIA.items()}


@pytest.mark.parametrize("name", sorted(ALL_CRITERIA), ids=sorted(ALL_CRITERIA))
def test_unset_criteria_are_never_sent(name: str) -> None:
    """A criterion left None is absent from the parameters, and so is an empty string."""
    criteria = {k: v for k, v in ALL_CRITERIA.items() if k != name}
    assert name not in CallFilter(**criteria).to_params("s")
    if isinstance(ALL_CRITERIA[name], str):
        assert name not in CallFilter(**criteria, **{name: ""}).to_params("s")


def test_no_criteria_no_params() -> None:
    """An empty filter sends nothing; no parameter is ever None or an empty string."""
    assert CallFilter().to_params("s") == {}
    assert CallFilter().to_params("ms") == {}


@pytest.mark.parametrize(
    ("value", "unit", "sent"),
    [
        (dt.datetime(2025, 1, 1, tzinfo=UTC), "s", "1735689600"),
        (dt.datetime(2025, 1, 1, tzinfo=UTC), "ms", "1735689600000"),
        (dt.datetime(2025, 1, 1, 7, tzinfo=ICT), "s", "1735689600"),
        (dt.datetime(2025, 1, 1, 0, 0, 0, 999_000, tzinfo=UTC), "s", "1735689600"),
        (dt.datetime(2025, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC), "ms", "1735689600123"),
        (1_735_689_600, "ms", "1735689600"),
        (1_735_689_600_000, "s", "1735689600000"),
    ],
    ids=[
        "utc-seconds",
        "utc-milliseconds",
        "offset-zone-is-same-instant",
        "seconds-drop-fraction",
        "milliseconds-keep-fraction",
        "int-verbatim-in-ms-client",
        "int-verbatim-in-s-client",
    ],
)
def test_dates_are_converted_to_the_time_unit(
    value: int | dt.datetime, unit: Any, sent: str
) -> None:
    """An aware datetime is sent as epoch in the client's unit; an int is sent verbatim."""
    params = CallFilter(start_date=value, end_date=value).to_params(unit)
    assert params == {"start_date": sent, "end_date": sent}


def test_auth_headers_carry_the_bearer_token() -> None:
    """Every v2 request asks for JSON and carries the token as a Bearer credential."""
    assert V2.auth_headers("abc") == {"Authorization": "Bearer abc", "Accept": "application/json"}
