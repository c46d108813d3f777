"""`FakeVBotServer`: the three call-history endpoints on loopback, with faults on demand.

It follows ``shared/spec/API.md``: ``GET /api/campaignCall/cdr/{countAll,getAll,
getBotConversation}``, the ``{status, error, message, data}`` envelope, and the Bearer check.
Where the API document is silent, the fake chooses and says so here:

- records are served newest first (``create_at`` descending, then ``trans_id``);
- ``start_date``/``end_date`` bound ``create_at`` inclusively, in the records' own unit;
- ``member`` matches the member's name or VBot id, ``hotline`` the hotline's code or
  number, ``key`` a substring of the phone, name or customer id, ``input_log_search`` a
  substring of ``input_log``; the other criteria match exactly;
- ``page`` counts from ``first_page``; a page below it, or a ``size`` outside
  ``1..max_page_size``, is a failure envelope (HTTP 200, ``status`` 0, ``error`` 400).
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import attrs
import orjson
from aiohttp import web

from ._data import generate_records, make_conversation

__all__ = ["FakeVBotServer", "Fault"]

API_PREFIX = "/api/campaignCall/cdr/"
_STRING_CRITERIA = ("bot_id", "campaign_code", "template_script_code", "disposition")


@attrs.frozen(kw_only=True)
class Fault:
    """One misbehaviour, served instead of (or on top of) a normal answer.

    Args:
        status: The HTTP status to answer with (``None``: the normal status, 200).
        retry_after: A ``Retry-After`` header value to send.
        envelope_error: Answer a failure envelope with this ``error`` code (and ``message``).
        message: The failure envelope's message.
        body: Raw bytes to send as the body instead of the normal one.
        truncate: Send only the first half of the normal body.
        delay: Seconds to wait before answering (on top of the server's latency).
    """

    status: int | None = None
    retry_after: str | None = None
    envelope_error: int | None = None
    message: str = "Lỗi hệ thống"
    body: bytes | None = None
    truncate: bool = False
    delay: float = 0.0


@attrs.define
class RecordedRequest:
    """What the fake saw of one request."""

    endpoint: str
    params: dict[str, str]
    authorized: bool


def _envelope(data: Any, *, status: int = 1, error: int = 0, message: str = "Thành công") -> bytes:
    return orjson.dumps({"status": status, "error": error, "message": message, "data": data})


def _sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    return (-(record.get("create_at") or 0), str(record.get("trans_id") or ""))


def _matches(record: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    for name in _STRING_CRITERIA:
        if name in params and record.get(name) != params[name]:
            return False
    if "status" in params and str(record.get("status")) != params["status"]:
        return False
    created = record.get("create_at") or 0
    if "start_date" in params and created < int(params["start_date"]):
        return False
    if "end_date" in params and created > int(params["end_date"]):
        return False
    if "member" in params:
        member = record.get("member") or {}
        if params["member"] not in (member.get("name"), member.get("vbot_id")):
            return False
    if "hotline" in params:
        hotline = record.get("hotline") or {}
        if params["hotline"] not in (hotline.get("code"), hotline.get("phone_number")):
            return False
    if "key" in params:
        key = params["key"]
        if not any(key in str(record.get(f) or "") for f in ("phone", "name", "customer_uid")):
            return False
    return "input_log_search" not in params or params["input_log_search"] in str(
        record.get("input_log") or ""
    )


class FakeVBotServer:
    """A loopback VBot call-history server for tests, demos and resilience drills.

    Usage::

        async with FakeVBotServer(count=250, latency=0.02) as server:
            async with VBotClient(server.token, base_url=server.base_url) as client:
                assert await client.count_calls() == 250

    Args:
        records: The call records to serve (API shape); ``None`` generates ``count`` of them.
        count: How many records to generate when ``records`` is ``None``.
        seed: The seed of the generated records.
        token: The Bearer token the server accepts.
        first_page: The number of the first page.
        latency: Seconds every request waits before it is answered.
        max_page_size: The largest ``size`` accepted.
        host, port: Where to listen (loopback, any free port by default).

    Attributes:
        requests: Every request seen, in arrival order.
        in_flight, peak_in_flight: Requests being answered now, and the most at once.
    """

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] | None = None,
        *,
        count: int = 1000,
        seed: int = 0,
        token: str = "fake-vbot-token",
        first_page: int = 1,
        latency: float = 0.0,
        max_page_size: int = 1000,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        source = generate_records(count, seed=seed) if records is None else records
        self._records: list[dict[str, Any]] = sorted((dict(r) for r in source), key=_sort_key)
        self.token = token
        self.first_page = first_page
        self.latency = latency
        self.max_page_size = max_page_size
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._faults: dict[str, deque[Fault]] = {}
        self._page_faults: dict[int, deque[Fault]] = {}
        self._inserts: list[tuple[int, list[dict[str, Any]]]] = []
        self._filtered: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.base_url = ""

    # -- data ------------------------------------------------------------------------------

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records served now, in the server's order."""
        return list(self._records)

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write calls now, each at its place in the server's order (as late CDRs arrive)."""
        for record in records:
            bisect.insort(self._records, dict(record), key=_sort_key)
        self._filtered.clear()

    def remove_records(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        """Delete the records ``predicate`` selects; return how many."""
        before = len(self._records)
        self._records = [r for r in self._records if not predicate(r)]
        self._filtered.clear()
        return before - len(self._records)

    def insert_after(self, requests: int, records: Iterable[Mapping[str, Any]]) -> None:
        """Write ``records`` when the ``requests``-th ``getAll`` arrives, before it is read."""
        self._inserts.append((requests, [dict(r) for r in records]))

    def _select(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        key = tuple(sorted((k, v) for k, v in params.items() if k not in ("page", "size")))
        selected = self._filtered.get(key)
        if selected is None:
            selected = self._filtered[key] = [r for r in self._records if _matches(r, params)]
        return selected

    # -- faults and counters ---------------------------------------------------------------

    def inject(self, *faults: Fault, endpoint: str = "getAll", page: int | None = None) -> None:
        """Serve ``faults``, one per request, to the next requests of ``endpoint`` (or ``page``)."""
        queue = (
            self._page_faults.setdefault(page, deque())
            if page is not None
            else self._faults.setdefault(endpoint, deque())
        )
        queue.extend(faults)

    def count(self, endpoint: str) -> int:
        """How many requests of ``endpoint`` arrived."""
        return sum(1 for r in self.requests if r.endpoint == endpoint)

    def counts(self) -> Counter[str]:
        """Requests per endpoint."""
        return Counter(r.endpoint for r in self.requests)

    def _next_fault(self, endpoint: str, params: Mapping[str, str]) -> Fault | None:
        if endpoint == "getAll" and params.get("page", "").lstrip("-").isdigit():
            queue = self._page_faults.get(int(params["page"]))
            if queue:
                return queue.popleft()
        queue = self._faults.get(endpoint)
        return queue.popleft() if queue else None

    # -- HTTP ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (to mount elsewhere, or run with ``aiohttp.web.run_app``)."""
        app = web.Application()
        app.router.add_get(API_PREFIX + "{endpoint}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        params = dict(request.query)
        authorized = request.headers.get("Authorization") == f"Bearer {self.token}"
        self.requests.append(RecordedRequest(endpoint, params, authorized))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if endpoint == "getAll":
                arrived = self.count("getAll")
                for records in [r for after, r in self._inserts if after == arrived]:
                    self.add_records(records)
            fault = self._next_fault(endpoint, params)
            # The answer is read when the request arrives, as a database query would be;
            # latency is the time it takes to travel back.
            status, body = self._answer(endpoint, params, authorized)
            delay = self.latency + (fault.delay if fault else 0.0)
            if delay:
                await asyncio.sleep(delay)
            headers = {"Content-Type": "application/json"}
            if fault is not None:
                status, body = self._apply(fault, status, body, headers)
            if fault is not None and fault.truncate:
                return await self._send_truncated(request, status, headers, body)
            return web.Response(status=status, body=body, headers=headers)
        finally:
            self.in_flight -= 1

    def _answer(
        self, endpoint: str, params: Mapping[str, str], authorized: bool
    ) -> tuple[int, bytes]:
        if not authorized:
            return 401, _envelope(None, status=0, error=401, message="Unauthorized")
        if endpoint == "countAll":
            return 200, _envelope(len(self._select(params)))
        if endpoint == "getAll":
            return 200, self._page(params)
        if endpoint == "getBotConversation":
            return 200, self._conversation(params)
        return 404, _envelope(None, status=0, error=404, message=f"no endpoint {endpoint}")

    def _page(self, params: Mapping[str, str]) -> bytes:
        try:
            page, size = int(params["page"]), int(params["size"])
        except (KeyError, ValueError):
            return _envelope(None, status=0, error=400, message="page và size là bắt buộc")
        if page < self.first_page or not 1 <= size <= self.max_page_size:
            return _envelope(
                None,
                status=0,
                error=400,
                message=f"page >= {self.first_page}, 1 <= size <= {self.max_page_size}",
            )
        offset = (page - self.first_page) * size
        return _envelope(self._select(params)[offset : offset + size])

    def _conversation(self, params: Mapping[str, str]) -> bytes:
        trans_id = params.get("trans_id")
        for record in self._records:
            if record.get("trans_id") == trans_id:
                return _envelope(make_conversation(record))
        return _envelope(None, status=0, error=404, message="Không tìm thấy cuộc gọi")

    @staticmethod
    def _apply(
        fault: Fault, status: int, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.envelope_error is not None:
            body = _envelope(None, status=0, error=fault.envelope_error, message=fault.message)
        elif fault.status is not None and fault.status >= 400:
            body = _envelope(None, status=0, error=fault.status, message=fault.message)
        if fault.body is not None:
            body = fault.body
        return (fault.status if fault.status is not None else status), body

    @staticmethod
    async def _send_truncated(
        request: web.Request, status: int, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse:
        # Promise the whole body, send half, and hang up: what a dropped connection looks like.
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on loopback; `base_url` is set once this returns."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeVBotServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
