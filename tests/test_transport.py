"""`AiohttpTransport` on loopback: what it sends and returns, its size cap, its errors.

The transport alone, without the client: against the fake server, small aiohttp apps and raw
TCP servers that answer what a real server might (a redirect, a gzip body, garbage, nothing).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests._loopback import answering, closed_port, exception_chain, raw_server, serve
from vbot_cdr import AiohttpTransport, ResponseFormatError, TransportError
from vbot_cdr.testing import FakeVBotServer, Fault

COUNT_ALL = "/api/campaignCall/cdr/countAll"
GUARD = 30.0


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    transport = AiohttpTransport()
    yield transport
    await transport.aclose()


async def test_a_request_comes_back_as_status_headers_and_body(
    transport: AiohttpTransport,
) -> None:
    """The method, URL, query and headers go out as given; the whole answer comes back."""
    async with FakeVBotServer(count=30) as server:
        status, headers, body = await transport.send(
            "GET",
            server.base_url + COUNT_ALL,
            headers={"Authorization": f"Bearer {server.token}"},
            params={"campaign_code": "CMP_XACNHAN_DON"},
            timeout=GUARD,
        )
    [request] = server.requests
    assert (request.endpoint, request.params, request.authorized) == (
        "countAll",
        {"campaign_code": "CMP_XACNHAN_DON"},
        True,
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    expected = sum(r["campaign_code"] == "CMP_XACNHAN_DON" for r in server.records)
    assert orjson.loads(body)["data"] == expected


async def test_a_post_sends_its_body_and_an_error_status_is_returned_not_raised(
    transport: AiohttpTransport,
) -> None:
    """The transport judges nothing: a 4xx or 5xx is an answer like any other."""
    received: list[bytes] = []

    async def token(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=503, body=b"busy", headers={"Retry-After": "3"})

    app = web.Application()
    app.router.add_post("/token", token)
    async with serve(app) as url:
        status, headers, body = await transport.send(
            "POST", url + "/token", headers={}, data=b"grant_type=password", timeout=GUARD
        )
    assert received == [b"grant_type=password"]
    assert (status, headers["Retry-After"], body) == (503, "3", b"busy")


async def test_a_redirect_is_returned_not_followed(transport: AiohttpTransport) -> None:
    """A 3xx comes back as is: the credential is never sent on to another host."""
    followed: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.Response(text="followed")

    app = web.Application()
    app.router.add_get("/moved", moved)
    app.router.add_get("/elsewhere", elsewhere)
    async with serve(app) as url:
        status, headers, _ = await transport.send("GET", url + "/moved", headers={}, timeout=GUARD)
    assert (status, headers["Location"]) == (302, "/elsewhere")
    assert followed == []


# -- the size cap ------------------------------------------------------------------------------


def app_answering(body: bytes, *, chunked: bool = False, gzipped: bool = False) -> web.Application:
    async def answer(request: web.Request) -> web.StreamResponse:
        payload = gzip.compress(body) if gzipped else body
        response = web.StreamResponse()
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(payload)
        await response.prepare(request)
        for start in range(0, len(payload), 1000):
            await response.write(payload[start : start + 1000])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", answer)
    return app


@pytest.mark.parametrize(
    ("chunked", "gzipped"),
    [(False, False), (True, False), (False, True)],
    ids=["announced", "chunked", "gzip"],
)
async def test_a_body_up_to_the_cap_is_read_whole(chunked: bool, gzipped: bool) -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes
    transport = AiohttpTransport(max_response_bytes=len(body))
    try:
        async with serve(app_answering(body, chunked=chunked, gzipped=gzipped)) as url:
            status, _, received = await transport.send("GET", url + "/", headers={}, timeout=GUARD)
    finally:
        await transport.aclose()
    assert (status, received) == (200, body)


@pytest.mark.parametrize(
    ("chunked", "gzipped"),
    [(False, False), (True, False), (False, True)],
    ids=["announced", "chunked", "gzip-inflating-past-the-cap"],
)
async def test_a_body_past_the_cap_is_refused(chunked: bool, gzipped: bool) -> None:
    """Announced, counted as it comes, or inflated from a small gzip: one byte past the cap
    is a ResponseFormatError naming the cap, not retried, and the body is not kept."""
    body = b"x" * 10_001
    transport = AiohttpTransport(max_response_bytes=10_000)
    try:
        async with serve(app_answering(body, chunked=chunked, gzipped=gzipped)) as url:
            with pytest.raises(ResponseFormatError, match="max_response_bytes=10000") as info:
                await transport.send("GET", url + "/", headers={}, timeout=GUARD)
    finally:
        await transport.aclose()
    assert not info.value.retryable
    assert b"x" * 100 not in (info.value.body or b"")


# -- failures ----------------------------------------------------------------------------------


async def test_nothing_listening_is_a_transport_error(transport: AiohttpTransport) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(TransportError, match="ClientConnectorError"):
        await transport.send("GET", url, headers={}, timeout=GUARD)


async def test_no_answer_within_the_timeout_is_a_transport_error(
    transport: AiohttpTransport,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns when the client hangs up

    async with raw_server(silent) as server:
        with pytest.raises(TransportError, match=r"no complete answer within 0\.2s"):
            await transport.send("GET", server.url, headers={}, timeout=0.2)


@pytest.mark.parametrize(
    "fault", [Fault(disconnect=True), Fault(truncate=True)], ids=["reset", "truncated"]
)
async def test_a_broken_answer_is_a_transport_error(
    transport: AiohttpTransport, fault: Fault
) -> None:
    async with FakeVBotServer(count=5) as server:
        # aiohttp itself sends an idempotent request again once after a reset: two faults.
        server.inject(fault, fault, endpoint="countAll")
        with pytest.raises(TransportError):
            await transport.send(
                "GET",
                server.base_url + COUNT_ALL,
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=GUARD,
            )


async def test_an_unparsable_answer_keeps_the_request_headers_out_of_the_error(
    transport: AiohttpTransport,
) -> None:
    """aiohttp's error holds the request's headers (the token): it is described, not chained."""
    secret = "Bearer tok-never-shown-91c2"
    async with raw_server(answering(b"NOT HTTP AT ALL\r\n\r\n")) as server:
        with pytest.raises(TransportError) as info:
            await transport.send(
                "GET", server.url, headers={"Authorization": secret}, timeout=GUARD
            )
    chain = list(exception_chain(info.value))
    assert chain == [info.value]
    assert "tok-never-shown" not in f"{info.value} {info.value!r}"


# -- sessions ----------------------------------------------------------------------------------


async def test_its_own_session_is_opened_on_first_use_and_closed_by_aclose() -> None:
    transport = AiohttpTransport(connections=3)
    assert transport.session is None
    async with FakeVBotServer(count=1) as server:
        await transport.send("GET", server.base_url + COUNT_ALL, headers={}, timeout=GUARD)
        session = transport.session
        assert session is not None
        assert not session.closed
        assert isinstance(session.connector, aiohttp.TCPConnector)
        assert session.connector.limit == 3
        await transport.aclose()
        await transport.aclose()  # idempotent
    assert session.closed
    assert transport.session is None


async def test_an_injected_session_is_used_and_left_open() -> None:
    async with aiohttp.ClientSession() as session, FakeVBotServer(count=1) as server:
        transport = AiohttpTransport(session=session)
        status, _, _ = await transport.send(
            "GET", server.base_url + COUNT_ALL, headers={}, timeout=GUARD
        )
        await transport.aclose()
        assert transport.session is session
        assert not session.closed
    assert status == 401  # no credential: the fake says so, and the transport returns it
