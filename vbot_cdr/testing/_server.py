"""`FakeVBotServer`: the three call-history endpoints on loopback, with faults on demand.

It follows ``shared/spec/API.md``: ``GET /api/campaignCall/cdr/{countAll,getAll,
getBotConversation}``, the ``{status, error, message, data}`` envelope, and the Bearer check
(a missing or wrong token is HTTP 401 with a failure envelope), and ``POST /token`` to log in
(`FakeTokenEndpoint`, whose valid tokens the API accepts too). ``api="v3-legacy"`` and
``api="v3"`` speak the later dialects of ``shared/spec/API-VERSIONS.md`` instead (an
``X-API-Key`` checked against `api_key`, their paths, envelopes, field names and values; see
`vbot_cdr.testing._dialects`), and ``envelope_status=False`` the v2 envelope without
``status``. Where the documents are silent, the fake chooses and says so here:

- records are served newest first: ``create_at`` descending, then ``trans_id`` ascending;
- ``start_date`` and ``end_date`` bound ``create_at`` **inclusively on both ends**, compared
  as plain numbers in the records' own unit (seconds for generated data unless the server is
  made with ``time_unit="ms"``);
- ``member`` matches the member's name or VBot id; ``hotline`` the hotline's code or phone
  number; ``key`` a case-insensitive substring of the phone, the name or the customer id;
  ``input_log_search`` a case-insensitive substring of ``input_log``; ``bot_id``,
  ``campaign_code``, ``template_script_code``, ``disposition`` and ``status`` match exactly;
- a criterion sent as an empty string is ignored; ``vbot_id``, ``project_code`` and unknown
  parameters are accepted and ignored (the fake serves one customer);
- ``page`` counts from ``first_page``; a missing or non-integer ``page``/``size``, a page below
  ``first_page``, a ``size`` outside ``1..max_page_size``, or a non-integer date or status is
  a failure envelope (HTTP 200, ``status`` 0, ``error`` 400); a page past the end is ``[]``;
- `PagingHabits` makes ``getAll`` page as some real servers do (size caps, empty deep pages,
  shuffled ties, ignored ``page``);
- ``countAll`` ignores ``page`` and ``size``;
- v3's ``min_postage`` and ``max_postage`` bound ``postage`` inclusively;
- ``echo_credentials=True`` makes every error body echo the credential the request carried
  (as a careless server does): failure envelopes' messages, and an HTML page listing the
  request headers for an HTTP error status;
- ``getBotConversation`` answers a JSON array of ``{"speaker", "text"}`` turns as a string
  (``"[]"`` for a call that was not answered), or a failure envelope with ``error`` 404 for an
  unknown ``trans_id``;
- each answer is computed when its request arrives (as a database query would be); the
  latency is the time it then takes to come back.

Data: ``FakeVBotServer(count=n, seed=s)`` serves ``n`` generated records (see
`generate_records`) computed from their index on demand, so a million records cost no memory
until they are asked for. ``FakeVBotServer(records)`` serves the records given. Calls written
later (`add_records`, `arrive`, `insert_after`, a `FaultMix` with ``arrivals``) take their
place in the order; the served data never holds more than those extra records in memory.

Faults, for resilience tests: `inject` queues explicit `Fault`\\ s for the next requests of an
endpoint or a page; a `FaultMix` draws faults at given rates from a seeded generator;
``max_in_flight`` answers 429 past a number of concurrent requests. Counters: `requests`
(every request, in arrival order, with the fault it got), `count`, `counts`, `in_flight`,
`peak_in_flight`, `faults_served`, and `wait_for_requests` to wait for a request to arrive
(and `wait_idle` for none to be in flight) without sleeping.

Run it standalone with ``vbot-cdr serve-fake`` (or ``python -m vbot_cdr serve-fake``).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Protocol

import attrs
import orjson
from aiohttp import web

from .._dialects import Api
from .._recordings import RECORDING
from .._wire import COUNT_ALL, GET_ALL, GET_BOT_CONVERSATION, TOKEN
from ._data import RecordGenerator
from ._dialects import ServedDialect, served_dialect
from ._pusher import PushHabits, WebhookPusher
from ._recordings import RECORDING_PREFIX, RecordingHabits, Recordings, served_recording
from ._token import FakeTokenEndpoint

__all__ = ["ENDPOINTS", "FakeVBotServer", "Fault", "FaultMix", "RecordedRequest"]

#: The endpoint names, as `RecordedRequest.endpoint`, `inject` and `FaultMix` know them.
ENDPOINTS: Final = frozenset({COUNT_ALL, GET_ALL, GET_BOT_CONVERSATION, RECORDING, TOKEN})
_SERVER_ERRORS: Final = (500, 502, 503, 504)
#: How many filtered views (lists of matching positions) the server keeps.
_VIEW_CACHE_SIZE: Final = 32


# -- faults ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Fault:
    """One misbehaviour, served instead of (or on top of) the normal answer.

    The fields combine: ``Fault(status=429, retry_after="2")`` is a rate limit,
    ``Fault(truncate=True, hang=True)`` a body that stalls halfway.

    Args:
        status: The HTTP status to answer with (``None``: the normal one). A status of 400 or
            more comes with a failure envelope carrying it as ``error``.
        retry_after: A ``Retry-After`` header value to send.
        envelope_error: Answer HTTP 200 with a failure envelope with this ``error`` code.
        message: The failure envelope's message.
        body: Raw bytes to send as the body instead of the normal one.
        truncate: Promise the whole body (``Content-Length``) but send only its first half,
            then hang up (or stall, with ``hang``).
        disconnect: Close the connection without answering (a connection reset).
        hang: Never answer: hold the connection open until the client gives up or the server
            stops.
        delay: Seconds to wait before answering, on top of the server's latency.
    """

    status: int | None = None
    retry_after: str | None = None
    envelope_error: int | None = None
    message: str = "Lỗi hệ thống"
    body: bytes | None = None
    truncate: bool = False
    disconnect: bool = False
    hang: bool = False
    delay: float = 0.0

    @property
    def kind(self) -> str:
        """A short name of what this fault does (``"503"``, ``"truncate"``, ``"hang"``...)."""
        if self.disconnect:
            return "disconnect"
        if self.truncate:
            return "stall" if self.hang else "truncate"
        if self.hang:
            return "hang"
        if self.envelope_error is not None:
            return "envelope"
        if self.status is not None:
            return str(self.status)
        return "body" if self.body is not None else "delay"


def _rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen(kw_only=True)
class PagingHabits:
    """How a server pages when it does not page as the client assumes (all off by default).

    Real servers cap sizes without saying so, stop serving deep offsets, order calls that
    share a ``create_at`` differently on every request (an ``ORDER BY create_at`` without a
    tie-breaker under OFFSET paging), or ignore ``page``. ``countAll`` is affected only by
    ``count_excess``.

    Attributes:
        size_cap: Answer at most this many records per page, whatever ``size`` asks.
        deep_cap: Answer ``[]`` for a page starting at or past this offset.
        shuffle_ties: Order calls that share a ``create_at`` anew on every request.
        past_end_last: Answer a page past the end with the last page instead of ``[]``.
        ignore_page: Answer every page with the first one.
        everything: Answer every page with every matching record, whatever ``page`` and
            ``size`` ask.
        seed: The seed of the tie shuffles.
        count_excess: ``countAll`` says this many calls more than the pages hold (a count
            that cannot be trusted).
    """

    size_cap: int | None = None
    deep_cap: int | None = None
    shuffle_ties: bool = False
    past_end_last: bool = False
    ignore_page: bool = False
    everything: bool = False
    seed: int = 0
    count_excess: int = 0


@attrs.frozen(kw_only=True)
class FaultMix:
    """Faults drawn at random, one draw per request, from a generator seeded with ``seed``.

    Each request of the ``endpoints`` that has no injected fault draws one number: with
    probability ``server_error`` it gets HTTP 500, 502, 503 or 504 (evenly); ``rate_limit``,
    HTTP 429 with ``Retry-After: retry_after`` (no header if ``None``); ``truncate``, a body
    cut in half; ``disconnect``, a connection closed without an answer; ``envelope``, a
    failure envelope (HTTP 200, ``error`` 500, which clients must not retry); otherwise the
    normal answer. Each also waits a delay drawn uniformly from ``[min_delay, max_delay]``.
    Before each ``getAll``, with probability ``arrivals``, ``arrival_size`` new calls are
    written (`FakeVBotServer.arrive`).

    The draws follow the order in which requests arrive: the same seed and the same arrival
    order give the same faults.

    Raises:
        ValueError: A rate outside ``[0, 1]``, rates summing past 1, or bad delays.
    """

    seed: int = 0
    server_error: float = attrs.field(default=0.0, validator=_rate)
    rate_limit: float = attrs.field(default=0.0, validator=_rate)
    retry_after: str | None = "0"
    truncate: float = attrs.field(default=0.0, validator=_rate)
    disconnect: float = attrs.field(default=0.0, validator=_rate)
    envelope: float = attrs.field(default=0.0, validator=_rate)
    min_delay: float = 0.0
    max_delay: float = 0.0
    arrivals: float = attrs.field(default=0.0, validator=_rate)
    arrival_size: int = 1
    endpoints: frozenset[str] = attrs.field(default=ENDPOINTS, converter=frozenset)

    def __attrs_post_init__(self) -> None:
        total = self.server_error + self.rate_limit + self.truncate + self.disconnect
        if total + self.envelope > 1.0:
            raise ValueError("the fault rates must sum to at most 1")
        if not 0.0 <= self.min_delay <= self.max_delay:
            raise ValueError("delays must satisfy 0 <= min_delay <= max_delay")
        if self.arrival_size < 1:
            raise ValueError(f"arrival_size must be >= 1, got {self.arrival_size!r}")
        unknown = self.endpoints - ENDPOINTS
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; known: {sorted(ENDPOINTS)}")

    def draw(self, rng: random.Random) -> Fault | None:
        """The fault for one request, drawn from ``rng`` (``None``: answer normally)."""
        roll = rng.random()
        delay = rng.uniform(self.min_delay, self.max_delay) if self.max_delay else 0.0
        fault: Fault | None = None
        if roll < self.server_error:
            fault = Fault(status=rng.choice(_SERVER_ERRORS), delay=delay)
        elif (roll := roll - self.server_error) < self.rate_limit:
            fault = Fault(status=429, retry_after=self.retry_after, delay=delay)
        elif (roll := roll - self.rate_limit) < self.truncate:
            fault = Fault(truncate=True, delay=delay)
        elif (roll := roll - self.truncate) < self.disconnect:
            fault = Fault(disconnect=True, delay=delay)
        elif roll - self.disconnect < self.envelope:
            fault = Fault(envelope_error=500, delay=delay)
        elif delay:
            fault = Fault(delay=delay)
        return fault


@attrs.define
class RecordedRequest:
    """What the fake saw of one request.

    Attributes:
        endpoint: The endpoint's seed name (``"getAll"``, ... in every dialect).
        params: The query parameters.
        authorized: Whether the request carried the right credential (Bearer token or key).
        received_at: The event loop's clock (``loop.time()``) when it arrived.
        fault: The `Fault.kind` it was served, or ``None`` for a normal answer.
    """

    endpoint: str
    params: dict[str, str]
    authorized: bool
    received_at: float = 0.0
    fault: str | None = None


# -- the records -------------------------------------------------------------------------------


def _sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    return (-(record.get("create_at") or 0), str(record.get("trans_id") or ""))


class _Base(Protocol):
    """Records in the server's order, read by position, never changed."""

    def __len__(self) -> int: ...
    def record(self, position: int) -> dict[str, Any]: ...
    def created(self, position: int) -> int: ...
    def sort_key(self, position: int) -> tuple[int, str]: ...
    def position_of(self, trans_id: str) -> int | None: ...


class _ListBase:
    """Records given as a list, sorted once."""

    def __init__(self, records: Iterable[Mapping[str, Any]]):
        self._records = sorted((dict(r) for r in records), key=_sort_key)
        self._positions: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def record(self, position: int) -> dict[str, Any]:
        return self._records[position]

    def created(self, position: int) -> int:
        return self._records[position].get("create_at") or 0

    def sort_key(self, position: int) -> tuple[int, str]:
        return _sort_key(self._records[position])

    def position_of(self, trans_id: str) -> int | None:
        if self._positions is None:
            self._positions = {
                r["trans_id"]: p for p, r in enumerate(self._records) if r.get("trans_id")
            }
        return self._positions.get(trans_id)


class _GeneratedBase:
    """``count`` generated records, computed from their index when asked for.

    Record ``i`` is created after record ``i - 1``, so position ``p`` (newest first) holds
    record ``count - 1 - p``.
    """

    def __init__(self, generator: RecordGenerator, count: int):
        self._generator = generator
        self._count = count

    def __len__(self) -> int:
        return self._count

    def record(self, position: int) -> dict[str, Any]:
        return self._generator.record(self._count - 1 - position)

    def created(self, position: int) -> int:
        return self._generator.created(self._count - 1 - position)

    def sort_key(self, position: int) -> tuple[int, str]:
        index = self._count - 1 - position
        return (-self._generator.created(index), self._generator.trans_id(index))

    def position_of(self, trans_id: str) -> int | None:
        index = self._generator.index_of(trans_id)
        return None if index is None or index >= self._count else self._count - 1 - index


class _BadRequest(Exception):
    """A request the server answers with a failure envelope, error 400."""


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(f"{name} phải là số nguyên, nhận được {value!r}") from None


def _float_param(params: Mapping[str, str], name: str) -> float | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise _BadRequest(f"{name} phải là số, nhận được {value!r}") from None


_EXACT: Final = ("bot_id", "campaign_code", "template_script_code", "disposition")


@attrs.frozen
class _Query:
    """The criteria of one request, parsed; hashable, so views are cached by it."""

    start: int | None = None
    end: int | None = None
    exact: tuple[tuple[str, str], ...] = ()
    status: int | None = None
    member: str | None = None
    hotline: str | None = None
    key: str | None = None
    input_log: str | None = None
    min_postage: float | None = None
    max_postage: float | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> _Query:
        """Read the criteria of ``params``; empty values are ignored.

        Raises:
            _BadRequest: A date or the status is not an integer, a postage not a number.
        """
        key, input_log = params.get("key"), params.get("input_log_search")
        return cls(
            start=_int_param(params, "start_date"),
            end=_int_param(params, "end_date"),
            exact=tuple((name, params[name]) for name in _EXACT if params.get(name)),
            status=_int_param(params, "status"),
            member=params.get("member") or None,
            hotline=params.get("hotline") or None,
            key=key.casefold() if key else None,
            input_log=input_log.casefold() if input_log else None,
            min_postage=_float_param(params, "min_postage"),
            max_postage=_float_param(params, "max_postage"),
        )

    @property
    def beyond_dates(self) -> bool:
        """Whether any criterion other than the dates is set."""
        return bool(
            self.exact
            or self.status is not None
            or self.member
            or self.hotline
            or self.key
            or self.input_log
            or self.min_postage is not None
            or self.max_postage is not None
        )

    def in_dates(self, record: Mapping[str, Any]) -> bool:
        created = record.get("create_at") or 0
        return (self.start is None or created >= self.start) and (
            self.end is None or created <= self.end
        )

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` meets every criterion but the dates."""
        if any(record.get(name) != value for name, value in self.exact):
            return False
        if self.status is not None and record.get("status") != self.status:
            return False
        if self.member:
            member = record.get("member") or {}
            if self.member not in (member.get("name"), member.get("vbot_id")):
                return False
        if self.hotline:
            hotline = record.get("hotline") or {}
            if self.hotline not in (hotline.get("code"), hotline.get("phone_number")):
                return False
        if self.key and not any(
            self.key in str(record.get(f) or "").casefold()
            for f in ("phone", "name", "customer_uid")
        ):
            return False
        postage = record.get("postage") or 0.0
        if self.min_postage is not None and postage < self.min_postage:
            return False
        if self.max_postage is not None and postage > self.max_postage:
            return False
        return not self.input_log or self.input_log in str(record.get("input_log") or "").casefold()


_EVERYTHING: Final = _Query()


class _Store:
    """The records served: a base, minus removed positions, plus calls written later.

    A *view* is the sequence of references to the records matching a query, in the server's
    order: a base position (>= 0) or ``~i`` for ``extras[i]``. A query on dates alone over an
    unchanged base is a `range` (no memory); otherwise the references are listed once in an
    `array` and cached until the data changes.
    """

    def __init__(self, base: _Base):
        self._base = base
        self._extras: list[dict[str, Any]] = []
        self._removed: set[int] = set()
        self._views: OrderedDict[_Query, Sequence[int]] = OrderedDict()

    def record(self, ref: int) -> dict[str, Any]:
        return self._base.record(ref) if ref >= 0 else self._extras[~ref]

    def span(self) -> tuple[int, int] | None:
        """The oldest and newest ``create_at`` of the base, or ``None`` if it is empty."""
        if not len(self._base):
            return None
        return self._base.created(len(self._base) - 1), self._base.created(0)

    def find(self, trans_id: str) -> dict[str, Any] | None:
        position = self._base.position_of(trans_id)
        if position is not None and position not in self._removed:
            return self._base.record(position)
        return next((r for r in self._extras if r.get("trans_id") == trans_id), None)

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            bisect.insort(self._extras, dict(record), key=_sort_key)
        self._views.clear()

    def remove(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        removed = 0
        for position in range(len(self._base)):
            if position not in self._removed and predicate(self._base.record(position)):
                self._removed.add(position)
                removed += 1
        kept = [r for r in self._extras if not predicate(r)]
        removed += len(self._extras) - len(kept)
        self._extras = kept
        self._views.clear()
        return removed

    def view(self, query: _Query) -> Sequence[int]:
        """The references of the records matching ``query``, in the server's order."""
        cached = self._views.get(query)
        if cached is not None:
            self._views.move_to_end(query)
            return cached
        selected = self._select_base(query)
        extras = [~i for i, r in enumerate(self._extras) if query.in_dates(r) and query.matches(r)]
        view = self._merge(selected, extras) if extras else selected
        self._views[query] = view
        if len(self._views) > _VIEW_CACHE_SIZE:
            self._views.popitem(last=False)
        return view

    def _select_base(self, query: _Query) -> Sequence[int]:
        base = self._base
        positions = range(len(base))

        def newest_first(position: int) -> int:
            return -base.created(position)

        # The base is sorted by create_at descending: a date range is a slice of positions.
        low = (
            0 if query.end is None else bisect.bisect_left(positions, -query.end, key=newest_first)
        )
        high = (
            len(base)
            if query.start is None
            else bisect.bisect_right(positions, -query.start, key=newest_first)
        )
        selected = range(low, max(low, high))
        if not self._removed and not query.beyond_dates:
            return selected
        removed = self._removed
        return array(
            "q",
            (
                p
                for p in selected
                if p not in removed and (not query.beyond_dates or query.matches(base.record(p)))
            ),
        )

    def _merge(self, selected: Sequence[int], extras: list[int]) -> Sequence[int]:
        """``selected`` base positions with the ``extras`` references put in their places."""
        merged = array("q")
        done = 0
        for ref in extras:
            key = _sort_key(self._extras[~ref])
            place = bisect.bisect_left(selected, key, lo=done, key=self._base.sort_key)
            merged.extend(selected[done:place])
            merged.append(ref)
            done = place
        merged.extend(selected[done:])
        return merged


# -- the server --------------------------------------------------------------------------------

#: The request headers that carry a credential, which `echo_credentials` echoes.
_CREDENTIAL_HEADERS: Final = frozenset({"Authorization", "X-API-Key"})


def _echo_page(status: int, request: web.Request) -> bytes:
    """The HTML error page of a careless proxy: it lists the request's headers."""
    headers = "".join(f"<li>{k}: {v}</li>" for k, v in request.headers.items())
    return f"<html><body><h1>Error {status}</h1><ul>{headers}</ul></body></html>".encode()


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


class FakeVBotServer:
    """A loopback VBot call-history server for tests, demos and resilience drills.

    Usage::

        async with FakeVBotServer(count=250, latency=0.02) as server:
            async with VBotClient(server.token, base_url=server.base_url) as client:
                assert await client.count_calls() == 250

    The module docstring states how the fake filters, sorts and pages.

    Args:
        records: The call records to serve (the seed's shape, which the dialect renders);
            ``None`` generates ``count`` of them.
        count: How many records to generate when ``records`` is ``None``; they are computed
            on demand, so any count costs the same memory.
        seed: The seed of the generated records (and of the calls `arrive` writes).
        token: The Bearer token the server accepts (v2).
        api: The dialect spoken: ``"v2"`` (the seed's), ``"v3-legacy"`` or ``"v3"``.
        api_key: The ``X-API-Key`` the server accepts (v3-legacy, v3).
        envelope_status: v2: send the seed's ``status`` field (``False``: the envelope
            served since 2026-04, without it).
        echo_credentials: Echo the request's credential in every error body.
        first_page: The number of the first page (0 or 1, or any other).
        latency: Seconds every request waits before it is answered.
        max_page_size: The largest ``size`` accepted.
        max_in_flight: Answer HTTP 429 (without ``Retry-After``) to a request that arrives
            while this many are being answered; ``None``: no limit.
        fault_mix: Random faults for every request (see `FaultMix`); settable later.
        paging: How ``getAll`` pages (see `PagingHabits`); settable later.
        time_unit: The unit of the generated records' times, ``"s"`` or ``"ms"``; ``None``:
            the dialect's (seconds for v2, milliseconds for v3 and v3-legacy).
        recordings: How the calls' recordings are served (`RecordingHabits()` if ``None``).
        host, port: Where to listen (loopback, any free port by default).
        webhook_url: Post each call written from now on (`add_records`, `arrive`,
            `arrive_now`, ``insert_after``, a `FaultMix`'s arrivals) to this URL as
            ``AUTO_CALL_COMPLETE``, as VBot's webhook does (see `WebhookPusher`).
        webhook_header: The static header those posts carry, ``"Name: value"``.
        webhook_habits: How the posts misbehave (`PushHabits`; none by default).

    Attributes:
        token, api_key, first_page, latency, max_page_size, max_in_flight, echo_credentials:
            As given; may be changed while the server runs.
        recordings: The `RecordingHabits`; may be changed while the server runs.
        api: The dialect spoken.
        base_url: ``http://host:port`` once started.
        requests: Every request seen since the last `reset_counters`, in arrival order.
        in_flight, peak_in_flight: Requests being answered now, and the most at once.
        token_endpoint: ``POST /token`` (`FakeTokenEndpoint`): its users, the tokens it
            issued (which the API accepts besides ``token``), and their expiry.
        webhooks: The `WebhookPusher` posting to ``webhook_url``, or ``None``; `stop`
            waits for its posts (`WebhookPusher.drain` waits for them meanwhile).
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
        max_in_flight: int | None = None,
        fault_mix: FaultMix | None = None,
        paging: PagingHabits = PagingHabits(),
        time_unit: Literal["s", "ms"] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api: Api = "v2",
        api_key: str = "fake-vbot-api-key",
        envelope_status: bool = True,
        echo_credentials: bool = False,
        recordings: RecordingHabits | None = None,
        webhook_url: str | None = None,
        webhook_header: str | None = None,
        webhook_habits: PushHabits | None = None,
    ):
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        self._dialect: ServedDialect = served_dialect(api, envelope_status=envelope_status)
        self.api: Api = api
        self.api_key = api_key
        self.echo_credentials = echo_credentials
        time_unit = time_unit or self._dialect.dialect.time_unit
        generator = RecordGenerator(seed=seed, time_unit=time_unit)
        base: _Base = _GeneratedBase(generator, count) if records is None else _ListBase(records)
        self._store = _Store(base)
        self._late = RecordGenerator(seed=seed, time_unit=time_unit, id_prefix="LATE")
        self._arrived_calls = 0
        self._arrival_rng = random.Random(f"arrivals-{seed}")
        self.token = token
        self.first_page = first_page
        self.latency = latency
        self.max_page_size = max_page_size
        self.max_in_flight = max_in_flight
        self.fault_mix = fault_mix
        self.paging = paging
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._faults: dict[str, list[Fault]] = {}
        self._page_faults: dict[int, list[Fault]] = {}
        self._conversation_faults: dict[str, Fault] = {}
        self._inserts: list[tuple[int, list[dict[str, Any]]]] = []
        self._arrivals: Counter[str] = Counter()
        self._waiters: list[tuple[str | None, int, asyncio.Future[None]]] = []
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._idle = asyncio.Event()
        self.base_url = ""
        self.token_endpoint = FakeTokenEndpoint()
        self.recordings = recordings or RecordingHabits()
        self._recordings = Recordings()
        self.webhooks = (
            None
            if webhook_url is None
            else WebhookPusher(webhook_url, webhook_header, webhook_habits or PushHabits())
        )

    def _write(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` into the store, and push them if a webhook is set."""
        self._store.add(records)
        if self.webhooks is not None:
            self.webhooks.push(records)

    @property
    def fault_mix(self) -> FaultMix | None:
        """The random fault mix; setting one restarts its seeded sequence."""
        return self._fault_mix

    @fault_mix.setter
    def fault_mix(self, mix: FaultMix | None) -> None:
        self._fault_mix = mix
        self._fault_rng = random.Random(mix.seed if mix is not None else 0)

    @property
    def paging(self) -> PagingHabits:
        """How ``getAll`` pages; setting it restarts the seeded tie shuffles."""
        return self._paging

    @paging.setter
    def paging(self, habits: PagingHabits) -> None:
        self._paging = habits
        self._tie_rng = random.Random(habits.seed)

    # -- data ----------------------------------------------------------------------------------

    @property
    def records(self) -> list[dict[str, Any]]:
        """A copy of every record served now, in the server's order, with the dialect's
        values under snake_case names (as ``CallRecord.to_dict()`` gives them back).

        This builds every record: on a store of millions, page through the API instead.
        """
        store, dialect = self._store, self._dialect
        served = [dialect.served(store.record(ref)) for ref in store.view(_EVERYTHING)]
        copy: list[dict[str, Any]] = orjson.loads(orjson.dumps(served))
        return copy

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write calls now, each at its place in the server's order (as late CDRs arrive)."""
        self._write([dict(record) for record in records])

    def remove_records(self, predicate: Callable[[Mapping[str, Any]], bool]) -> int:
        """Delete the records ``predicate`` selects; return how many.

        ``predicate`` sees every record, so on a generated store this builds each one once.
        """
        return self._store.remove(predicate)

    def arrive(self, count: int = 1) -> list[dict[str, Any]]:
        """Write ``count`` new calls now and return them.

        They are generated like the others, with ``trans_id`` ``LATE<seed>-<n>``, and created
        at random times within the span of the generated or given records: CDRs are written
        when calls end, so new records land among the old ones and shift the offsets of every
        page after them. The same seed gives the same calls in the same order.
        """
        span = self._store.span() or (self._late.created(0), self._late.created(0))
        calls = []
        for _ in range(count):
            created = self._arrival_rng.randint(*span)
            calls.append(self._late.record(self._arrived_calls, created=created))
            self._arrived_calls += 1
        self._write(calls)
        return calls

    def arrive_now(self, count: int = 1) -> list[dict[str, Any]]:
        """Write ``count`` new calls created now, as a live feed does, and return them.

        They are generated like `arrive`'s (``trans_id`` ``LATE<seed>-<n>``, numbered on from
        them), with ``create_at`` the current time: a ``sync`` run after them picks them up.
        """
        scale = 1000 if self._late.time_unit == "ms" else 1
        created = int(time.time() * scale)
        calls = []
        for _ in range(count):
            calls.append(self._late.record(self._arrived_calls, created=created))
            self._arrived_calls += 1
        self._write(calls)
        return calls

    def insert_after(self, requests: int, records: Iterable[Mapping[str, Any]]) -> None:
        """Write ``records`` when the ``requests``-th ``getAll`` arrives, before it is read."""
        self._inserts.append((requests, [dict(r) for r in records]))

    # -- faults and counters -------------------------------------------------------------------

    def inject(self, *faults: Fault, endpoint: str = GET_ALL, page: int | None = None) -> None:
        """Serve ``faults``, one per request, to the next requests of ``endpoint`` (or ``page``).

        Faults queued for a ``getAll`` page are served before those queued for the endpoint.

        Raises:
            ValueError: An unknown endpoint.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; known: {sorted(ENDPOINTS)}")
        if page is not None:
            self._page_faults.setdefault(page, []).extend(faults)
        else:
            self._faults.setdefault(endpoint, []).extend(faults)

    def fail_conversation(self, trans_id: str, fault: Fault | None) -> None:
        """Serve ``fault`` to every ``getBotConversation`` of ``trans_id``, however often it is
        asked, until called again with ``None`` (a call whose conversation cannot be had)."""
        if fault is None:
            self._conversation_faults.pop(trans_id, None)
        else:
            self._conversation_faults[trans_id] = fault

    def count(self, endpoint: str) -> int:
        """How many requests of ``endpoint`` arrived since the last `reset_counters`."""
        return self._arrivals[endpoint]

    def counts(self) -> Counter[str]:
        """Requests per endpoint since the last `reset_counters`."""
        return Counter(self._arrivals)

    def faults_served(self) -> Counter[str]:
        """How many of each `Fault.kind` were served since the last `reset_counters`."""
        return Counter(r.fault for r in self.requests if r.fault is not None)

    def reset_counters(self) -> None:
        """Forget the requests seen; the peak restarts from the requests in flight now."""
        self.requests.clear()
        self._arrivals.clear()
        self.peak_in_flight = self.in_flight

    async def wait_for_requests(self, count: int, *, endpoint: str | None = None) -> None:
        """Return once ``count`` requests (of ``endpoint``, or of any) have arrived.

        Lets a test act at a precise point of a client's paging without sleeping; bound it
        with ``asyncio.wait_for`` or ``asyncio.timeout``.
        """
        if self._seen(endpoint) >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((endpoint, count, waiter))
        try:
            await waiter
        finally:
            self._waiters.remove((endpoint, count, waiter))

    async def wait_idle(self) -> None:
        """Return once no request is being answered (`in_flight` is 0).

        A client that gives up on requests closes their connections; the server notices a
        moment later and stops answering them. This waits for that, without sleeping.
        """
        while self.in_flight:
            self._idle.clear()
            await self._idle.wait()

    def _seen(self, endpoint: str | None) -> int:
        return len(self.requests) if endpoint is None else self._arrivals[endpoint]

    def _record_arrival(self, request: web.Request, endpoint: str) -> RecordedRequest:
        seen = RecordedRequest(
            endpoint,
            dict(request.query),
            self._authorized(request),
            asyncio.get_running_loop().time(),
        )
        self.requests.append(seen)
        self._arrivals[endpoint] += 1
        for wanted, count, waiter in self._waiters:
            if not waiter.done() and self._seen(wanted) >= count:
                waiter.set_result(None)
        return seen

    def _write_due_calls(self) -> None:
        """The calls due before the ``getAll`` that just arrived is read."""
        arrived = self._arrivals[GET_ALL]
        for after, records in self._inserts:
            if after == arrived:
                self.add_records(records)
        mix = self._fault_mix
        if (
            mix is not None
            and GET_ALL in mix.endpoints
            and mix.arrivals
            and self._fault_rng.random() < mix.arrivals
        ):
            self.arrive(mix.arrival_size)

    def _choose_fault(self, endpoint: str, params: Mapping[str, str]) -> Fault | None:
        if self.max_in_flight is not None and self.in_flight > self.max_in_flight:
            return Fault(status=429, message="Quá nhiều yêu cầu")
        if endpoint == GET_BOT_CONVERSATION:
            broken = self._conversation_faults.get(params.get("trans_id", ""))
            if broken is not None:
                return broken
        page = params.get("page", "")
        if endpoint == GET_ALL and page.lstrip("-").isdigit():
            queue = self._page_faults.get(int(page))
            if queue:
                return queue.pop(0)
        queue = self._faults.get(endpoint)
        if queue:
            return queue.pop(0)
        mix = self._fault_mix
        if mix is not None and endpoint in mix.endpoints:
            return mix.draw(self._fault_rng)
        return None

    # -- HTTP ----------------------------------------------------------------------------------

    def _routes(self) -> list[web.RouteDef]:
        """The routes served; every one gets the counters, latency and faults."""
        return [
            web.get(self._dialect.prefix + "{endpoint}", self._api),
            web.get(RECORDING_PREFIX + "{trans_id}", self._recording),
            web.post("/" + TOKEN, self.token_endpoint.handle),
        ]

    def app(self) -> web.Application:
        """The aiohttp application (to mount elsewhere, or run with ``aiohttp.web.run_app``)."""
        # Each route's handler is wrapped instead of giving the app a middleware: aiohttp keeps
        # built middleware chains in a process-wide cache of 1,024 handlers, which would keep
        # every stopped server alive, with its data (megabytes each) and its request log.
        routes = [
            web.RouteDef(route.method, route.path, self._instrumented(route.handler), route.kwargs)
            for route in self._routes()
        ]
        app = web.Application()
        app.router.add_routes(routes)
        return app

    def _instrumented(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def instrumented(request: web.Request) -> web.StreamResponse:
            return await self._instrument(request, handler)

        return instrumented

    def _authorized(self, request: web.Request) -> bool:
        """Whether ``request`` carries a credential the server accepts."""
        credential = self._dialect.credential(request.headers)
        if self._dialect.dialect.api_key:
            return credential == self.api_key
        return credential == f"Bearer {self.token}" or self.token_endpoint.accepts(credential)

    def _endpoint(self, request: web.Request) -> str:
        """The seed name of the endpoint ``request`` asks for (its last segment if unknown)."""
        if request.path.startswith(RECORDING_PREFIX):
            return RECORDING
        segment = request.path.rsplit("/", 1)[-1]
        if request.path.startswith(self._dialect.prefix):
            return self._dialect.endpoints.get(segment, segment)
        return segment

    def _echo(self, request: web.Request) -> str:
        """What a careless server adds to an error: the credential the request carried."""
        if not self.echo_credentials:
            return ""
        sent = [f"{k}: {v}" for k, v in request.headers.items() if k in _CREDENTIAL_HEADERS]
        return " (request headers: " + "; ".join(sent) + ")"

    def _failure(
        self, request: web.Request, code: int, message: str, *, status: int = 200
    ) -> web.Response:
        return _json(self._dialect.failure(code, message + self._echo(request)), status)

    async def _instrument(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        endpoint = self._endpoint(request)
        seen = self._record_arrival(request, endpoint)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if endpoint == GET_ALL:
                self._write_due_calls()
            fault = self._choose_fault(endpoint, request.query)
            response = await handler(request)
            delay = self.latency + (fault.delay if fault is not None else 0.0)
            if delay:
                await asyncio.sleep(delay)
            if fault is None:
                return response
            seen.fault = fault.kind
            return await self._misbehave(request, fault, response)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _api(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._failure(request, 401, "Unauthorized", status=401)
        endpoint = self._endpoint(request)
        params = self._dialect.seed_params(request.query)
        dialect = self._dialect
        try:
            if endpoint == COUNT_ALL:
                count = len(self._store.view(_Query.parse(params))) + self.paging.count_excess
                return _json(dialect.envelope(count))
            if endpoint == GET_ALL:
                return _json(self._page(params))
            if endpoint == GET_BOT_CONVERSATION:
                return self._conversation(request, params)
        except _BadRequest as exc:
            return self._failure(request, 400, str(exc))
        return self._failure(request, 404, f"không có endpoint {endpoint}", status=404)

    def _page(self, params: Mapping[str, str]) -> bytes:
        page, size = _int_param(params, "page"), _int_param(params, "size")
        if page is None or size is None:
            raise _BadRequest("page và size là bắt buộc")
        if page < self.first_page or not 1 <= size <= self.max_page_size:
            raise _BadRequest(f"page >= {self.first_page}, 1 <= size <= {self.max_page_size}")
        store, habits = self._store, self.paging
        view = store.view(_Query.parse(params))
        dialect = self._dialect
        refs: Sequence[int]
        if habits.everything:
            refs = view
        else:
            offset = 0 if habits.ignore_page else (page - self.first_page) * size
            if habits.past_end_last and view and offset >= len(view):
                offset = (len(view) - 1) // size * size
            end = offset + (size if habits.size_cap is None else min(size, habits.size_cap))
            if habits.deep_cap is not None and offset >= habits.deep_cap:
                refs = []
            elif habits.shuffle_ties:
                refs = self._shuffled_ties(view, offset, end)
            else:
                refs = view[offset:end]
        return dialect.envelope(
            [dialect.wire_record(dialect.served(store.record(ref))) for ref in refs]
        )

    def _shuffled_ties(self, view: Sequence[int], start: int, end: int) -> list[int]:
        """``view[start:end]`` after shuffling, anew, each run of calls sharing a create_at."""
        store = self._store

        def created(index: int) -> Any:
            return store.record(view[index]).get("create_at")

        low, high = start, min(end, len(view))
        while 0 < low < len(view) and created(low - 1) == created(low):
            low -= 1
        while 0 < high < len(view) and created(high) == created(high - 1):
            high += 1
        segment = list(view[low:high])
        ordered: list[int] = []
        run: list[int] = []
        for ref in segment:
            if run and store.record(run[0]).get("create_at") != store.record(ref).get("create_at"):
                self._tie_rng.shuffle(run)
                ordered += run
                run = []
            run.append(ref)
        self._tie_rng.shuffle(run)
        ordered += run
        return ordered[start - low : end - low]

    def _conversation(self, request: web.Request, params: Mapping[str, str]) -> web.Response:
        trans_id = params.get("trans_id")
        if not trans_id:
            raise _BadRequest("trans_id là bắt buộc")
        record = self._store.find(trans_id)
        if record is None:
            return self._failure(request, 404, "Không tìm thấy cuộc gọi")
        return _json(self._dialect.envelope(self._dialect.conversation(record)))

    # -- recordings (see `vbot_cdr.testing._recordings`) ----------------------------------------

    async def _recording(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._failure(request, 401, "Unauthorized", status=401)
        trans_id = request.match_info["trans_id"]
        delay = self._recordings.delay(trans_id, self.recordings)
        if delay:
            await asyncio.sleep(delay)
        not_found = self._failure(request, 404, "recording not found", status=404)
        record = self._store.find(trans_id)
        return self._recordings.answer(trans_id, record, self.recordings, not_found)

    def recording(self, trans_id: str) -> tuple[str, bytes] | None:
        """The media type and bytes of the recording of ``trans_id``, as served (faults
        aside); ``None`` when the call has none (or is unknown)."""
        return served_recording(self._store.find(trans_id), self.recordings)

    # -- misbehaviour ----------------------------------------------------------------------------

    async def _misbehave(
        self, request: web.Request, fault: Fault, response: web.StreamResponse
    ) -> web.StreamResponse:
        if fault.disconnect or (fault.hang and not fault.truncate):
            if fault.hang:
                await self._stopping.wait()
            return self._hang_up(request)
        status = response.status if fault.status is None else fault.status
        body = response.body if isinstance(response, web.Response) else None
        message = fault.message + self._echo(request)
        if fault.envelope_error is not None:
            body = self._dialect.failure(fault.envelope_error, message)
        elif fault.status is not None and fault.status >= 400 and self.echo_credentials:
            body = _echo_page(fault.status, request)
        elif fault.status is not None and fault.status >= 400:
            body = self._dialect.failure(fault.status, message)
        if fault.body is not None:
            body = fault.body
        if not isinstance(body, bytes):
            body = b""
        # A fault that keeps the normal body keeps its type (a recording cut short is audio).
        kept = isinstance(response, web.Response) and body is response.body
        headers = {"Content-Type": response.content_type if kept else "application/json"}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if not fault.truncate:
            return web.Response(status=status, body=body, headers=headers)
        # Promise the whole body, send half, then hang up (or stall): a dropped connection.
        partial = web.StreamResponse(status=status, headers=headers)
        partial.content_length = len(body)
        await partial.prepare(request)
        await partial.write(body[: len(body) // 2])
        if fault.hang:
            await self._stopping.wait()
        return self._hang_up(request)

    @staticmethod
    def _hang_up(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        # aiohttp sees the closed transport and sends nothing of this response.
        return web.Response(status=499)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on loopback; `base_url` is set once this returns."""
        self._stopping.clear()
        # Cancel a handler when its client disconnects, so `in_flight` counts only the
        # requests a client still waits for.
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Release hanging requests, stop listening and close every connection."""
        self._stopping.set()
        if self.webhooks is not None:
            await self.webhooks.close()
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
