"""Hostile answers: arbitrary statuses, headers and bodies, oversized and malformed responses.

Whatever a server sends, each endpoint returns its documented result or raises
`ResponseFormatError` or `APIError` (or a subclass); anything else escaping is a bug.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._loopback import answering, raw_server, serve
from vbot_cdr import (
    APIError,
    BotConversation,
    CallRecord,
    ResponseFormatError,
    RetryPolicy,
    TransportError,
    VBotClient,
)
from vbot_cdr._wire import parse_retry_after

#: Two attempts without waiting: enough to cross the retry path, quick per example.
TWO_QUICK = RetryPolicy(max_attempts=2, backoff=0.0, max_backoff=0.0, max_retry_after=0.0)
#: Examples per property in CI; each example is a few loopback round trips.
EXAMPLES = 100
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GUARD = 30.0

RECORD_FIELDS = [a.name for a in attrs.fields(CallRecord) if a.name != "extras"]

# -- strategies -----------------------------------------------------------------------------

#: Any JSON value the stdlib can write, including integers past 64 bits and NaN/Infinity.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Values that look like what a field might plausibly hold, wrong type or not.
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**11, 10**12, 10**17, 10**20, -(10**15), 2**63, 2**64]),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=4), max_size=3), max_size=3),
    st.dictionaries(st.sampled_from(["name", "code", "vbot_id", "x"]), st.text(max_size=4)),
)
records = st.dictionaries(
    st.sampled_from([*RECORD_FIELDS, "unknown", "extra_field"]), field_values, max_size=8
)
data_values = st.one_of(
    json_values,
    st.lists(records | json_values, max_size=5),
    st.integers(min_value=-5, max_value=10**12),
    st.text(max_size=40),
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([0, 1, 1, 1, 2, -1, True, "1", None, 1.0]),
        "error": json_values,
        "message": st.text(max_size=20) | json_values,
        "data": data_values,
    },
)


def encode(document: Any) -> bytes:
    """JSON as a lax server might write it: NaN, Infinity and huge integers included."""
    return json.dumps(document).encode()


bodies = st.one_of(
    envelopes.map(encode),
    json_values.map(encode),
    st.binary(max_size=200),
    envelopes.map(encode).map(lambda b: b[: len(b) // 2]),
)
statuses = st.sampled_from(
    [200, 200, 200, 200, 201, 202, 301, 302, 307, 400, 401, 403, 404, 409, 418, 422, 429]
) | st.sampled_from([500, 501, 502, 503, 504, 599])
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
retry_afters = st.one_of(
    st.none(),
    st.sampled_from(["0", "-1", "1e400", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", ""]),
    header_text,
)
content_types = st.sampled_from(
    ["application/json", "text/html", "text/plain; charset=utf-8", "application/octet-stream"]
)


@attrs.define
class Answer:
    """What the hostile server sends to every request."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    retry_after: str | None = None
    compress: bool = False


@asynccontextmanager
async def hostile_server(answer: Answer) -> AsyncIterator[str]:
    """A loopback server answering every request with ``answer`` (mutable between examples)."""

    async def handle(request: web.Request) -> web.Response:
        headers = {"Content-Type": answer.content_type}
        if answer.retry_after is not None:
            headers["Retry-After"] = answer.retry_after
        body = answer.body
        if answer.compress:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(status=answer.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve(app) as base_url:
        yield base_url


@pytest.fixture
async def answer() -> Answer:
    return Answer()


@pytest.fixture
async def hostile(answer: Answer) -> AsyncIterator[VBotClient]:
    """A client of a server that sends whatever `answer` says."""
    async with (
        hostile_server(answer) as base_url,
        VBotClient("tok", base_url=base_url, retry=TWO_QUICK) as client,
    ):
        yield client


Endpoint = Callable[[VBotClient], Awaitable[object]]


def check_result(name: str, result: object) -> None:
    """A returned result has the endpoint's documented type, and every record is usable."""
    if name == "count":
        assert type(result) is int
        assert result >= 0
    elif name == "page":
        assert type(result) is list
        for record in result:
            assert type(record) is CallRecord
            hash(record)
            record.to_dict()
            for when in ("created", "answered", "ended"):
                try:
                    moment = getattr(record, when)
                except ResponseFormatError:
                    continue
                assert moment is None or moment.tzinfo is not None
    else:
        assert type(result) is BotConversation
        assert type(result.raw) is str


ENDPOINTS: dict[str, Endpoint] = {
    "count": lambda client: client.count_calls(),
    "page": lambda client: client.get_calls(page=1),
    "conversation": lambda client: client.get_bot_conversation("T1"),
}


async def call(name: str, client: VBotClient) -> None:
    """Call endpoint ``name``: its result must be well-typed, its error an expected one."""
    try:
        result = await asyncio.wait_for(ENDPOINTS[name](client), GUARD)
    except (ResponseFormatError, APIError):
        return
    check_result(name, result)


# -- properties -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ENDPOINTS))
@HYPOTHESIS
@given(status=statuses, body=bodies, content_type=content_types, retry_after=retry_afters)
async def test_any_answer_gives_a_result_or_a_typed_error(
    answer: Answer,
    hostile: VBotClient,
    name: str,
    status: int,
    body: bytes,
    content_type: str,
    retry_after: str | None,
) -> None:
    """Any status, body, content type and Retry-After gives a result or a typed error."""
    answer.status, answer.body = status, body
    answer.content_type, answer.retry_after = content_type, retry_after
    await call(name, hostile)


@pytest.mark.parametrize("name", list(ENDPOINTS))
@HYPOTHESIS
@given(envelope=envelopes, compress=st.booleans())
async def test_any_envelope_with_status_200_gives_a_result_or_a_typed_error(
    answer: Answer, hostile: VBotClient, name: str, envelope: dict[str, Any], compress: bool
) -> None:
    """A 200 carrying any envelope-like JSON (gzip or not) yields a result or a typed error."""
    answer.status, answer.body, answer.compress = 200, encode(envelope), compress
    await call(name, hostile)


@HYPOTHESIS
@given(page=st.lists(records, max_size=6))
async def test_any_record_shapes_give_records_or_format_error(
    answer: Answer, hostile: VBotClient, page: list[dict[str, Any]]
) -> None:
    """A page of records with any field values gives usable records or a ResponseFormatError."""
    answer.status = 200
    answer.body = encode({"status": 1, "error": 0, "message": "OK", "data": page})
    await call("page", hostile)


@given(value=retry_afters)
def test_retry_after_is_never_negative_nor_an_exception(value: str | None) -> None:
    """Any Retry-After header value reads as None or a non-negative number of seconds."""
    seconds = parse_retry_after(value)
    assert seconds is None or (seconds >= 0 and not math.isnan(seconds))


# -- chosen hostile cases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("create_at", 10**17), ("answer_at", 2**63 - 1), ("end_call_at", -(10**15))],
    ids=["year-out-of-range", "largest-int64", "before-year-1"],
)
async def test_out_of_range_times_raise_a_typed_error(
    answer: Answer, hostile: VBotClient, field: str, value: int
) -> None:
    """An epoch no datetime can hold raises ResponseFormatError when read, not OSError."""
    answer.body = encode({"status": 1, "error": 0, "message": "", "data": [{field: value}]})
    [record] = await hostile.get_calls(page=1)
    assert getattr(record, field) == value
    when = {"create_at": "created", "answer_at": "answered", "end_call_at": "ended"}[field]
    with pytest.raises(ResponseFormatError, match=str(value)):
        getattr(record, when)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * 20_000 + b"\r\n\r\n",
        b"\x00\xff\xfe garbage",
        b"",
    ],
    ids=["bad-length", "bad-status", "not-http", "bad-chunk", "huge-header", "binary", "empty"],
)
async def test_malformed_http_is_transport_error(raw: bytes) -> None:
    """A reply that is not valid HTTP is retried, then raised as a TransportError."""
    async with (
        raw_server(answering(raw)) as server,
        VBotClient("tok", base_url=server.url, retry=TWO_QUICK) as c,
    ):
        with pytest.raises(TransportError):
            await asyncio.wait_for(c.count_calls(), GUARD)
    # aiohttp itself may resend a GET once when the connection closes without an answer.
    assert TWO_QUICK.max_attempts <= server.connections <= 2 * TWO_QUICK.max_attempts


# -- response size cap ----------------------------------------------------------------------

CAP = 4096


async def endless_body(writer: asyncio.StreamWriter, chunked: bool) -> int:
    """Write body bytes until the client hangs up; return how many were written."""
    written = 0
    chunk = b"[" * 1024
    while not writer.is_closing():
        if chunked:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            writer.write(chunk)
        written += len(chunk)
        try:
            await writer.drain()
        except ConnectionError:
            break
        if written > 64 * CAP * 1024:  # the client clearly buffers without bound
            break
    return written


@pytest.mark.parametrize("framing", ["content-length", "chunked", "until-close"])
async def test_oversized_body_is_refused_while_streaming(framing: str) -> None:
    """A body past max_response_bytes is refused whatever its framing, long before it ends."""
    written: list[int] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if framing == "content-length":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n"
        elif framing == "chunked":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        writer.write(head)
        written.append(await endless_body(writer, framing == "chunked"))

    async with raw_server(respond) as server:
        client = VBotClient("tok", base_url=server.url, retry=TWO_QUICK, max_response_bytes=CAP)
        async with client:
            with pytest.raises(ResponseFormatError, match="max_response_bytes") as info:
                await asyncio.wait_for(client.get_calls(page=1), GUARD)
        await asyncio.wait_for(server.ended.wait(), GUARD)
    assert not info.value.retryable
    assert len(written) == 1  # refused at once, not retried
    assert written[0] < 64 * CAP * 1024


async def test_declared_oversized_body_is_refused_before_reading(answer: Answer) -> None:
    """A Content-Length past the cap is refused from the headers, without reading the body."""
    async with hostile_server(answer) as base_url:
        answer.body = b" " * (CAP + 1)
        client = VBotClient("tok", base_url=base_url, retry=TWO_QUICK, max_response_bytes=CAP)
        async with client:
            with pytest.raises(ResponseFormatError, match="max_response_bytes"):
                await client.count_calls()
            answer.body = encode({"status": 1, "error": 0, "message": "", "data": 7})
            assert await client.count_calls() == 7


async def test_compressed_bomb_is_refused(answer: Answer) -> None:
    """A small gzip body that inflates past the cap is refused: the cap counts decoded bytes."""
    async with hostile_server(answer) as base_url:
        answer.body, answer.compress = b" " * (CAP * 256), True
        client = VBotClient("tok", base_url=base_url, retry=TWO_QUICK, max_response_bytes=CAP)
        async with client:
            with pytest.raises(ResponseFormatError, match="max_response_bytes"):
                await client.get_calls(page=1)


async def test_body_at_the_cap_is_accepted(answer: Answer) -> None:
    """A body of exactly max_response_bytes is read normally."""
    document = encode({"status": 1, "error": 0, "message": "", "data": 3})
    async with hostile_server(answer) as base_url:
        answer.body = document
        client = VBotClient(
            "tok", base_url=base_url, retry=TWO_QUICK, max_response_bytes=len(document)
        )
        async with client:
            assert await client.count_calls() == 3
