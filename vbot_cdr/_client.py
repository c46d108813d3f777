"""`VBotClient`: the client, its lifecycle, its endpoints and the port its iterations use.

A request is *built* in `_wire` (sans-I/O), *sent* by a `_transport.Transport` (through
`VBotClient._transmit`), *retried* by `_retry.call_with_retries`, and *read* back by
`_wire.read_response` and a per-endpoint reader. Iteration runs in `_iteration`, which
gets one port from the client (`_IterationPort`): count a range, and fetch a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import functools
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, Union

import aiohttp
import aiolimiter

from . import _wire
from ._auth import ApiKey, Credential, PasswordAuth, TokenSource, api_key_source, token_source
from ._config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_RETRY,
    DEFAULT_SETTLE,
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
    RetryPolicy,
    normalize_base_url,
)
from ._conversations import ConversationIterator
from ._decoding import CallRow, build_records
from ._dialects import V2, V3, Api, Dialect, dialect_for
from ._errors import AuthenticationError, ResponseFormatError, TransportError
from ._iteration import CallIterator, CallPageIterator, Iteration, OpenIteration
from ._models import BotConversation, CallFilter, CallRecord, TimeUnit, to_epoch
from ._port import InFlightSlot
from ._recordings import (
    DEFAULT_MAX_RECORDING_BYTES,
    ReadStream,
    Recording,
    RecordingDownload,
    RecordingRequest,
    RecordingWriter,
    recording_request,
)
from ._retry import call_with_retries
from ._stats import IterationStats
from ._sync import CallSync, FileStateStore, StateStore, open_sync
from ._transport import AiohttpTransport, Answer, Stream, StreamingTransport, Transport
from ._windows import plan_windows, to_units

__all__ = ["VBotClient"]

T = TypeVar("T")
P = ParamSpec("P")


#: Reads one answer ``(status, headers, body)`` to a request: `_wire.read_response` gives the
#: envelope's ``data``; `_wire.read_record_page` gives a page's records in one go.
class ReadAnswer(Protocol):
    def __call__(
        self,
        request: _wire.Request,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secrets: tuple[str, ...],
    ) -> Any: ...


def _already_read(_: _wire.Request, value: T) -> T:
    """The reader of a value its `ReadAnswer` has read in full."""
    return value


logger = logging.getLogger("vbot_cdr")
#: No in-flight limit: the slot of a lone request (not part of an iteration).
_NO_LIMIT: InFlightSlot = contextlib.nullcontext()


class _Deadline:
    """An overall deadline of ``seconds``, counted from its first use (``None``: no deadline).

    An iteration's clock starts at its first request, not when the iterator is made; a chain
    of iterations over time windows shares one.
    """

    def __init__(self, seconds: float | None):
        self._seconds = _positive_seconds("deadline", seconds)
        self._at: float | None = None

    def at(self) -> float | None:
        """The deadline in event-loop time (fixed on the first call)."""
        if self._seconds is None:
            return None
        if self._at is None:
            self._at = asyncio.get_running_loop().time() + self._seconds
        return self._at


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    """A whole body as a stream of one chunk."""
    yield body


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


def _deadline_passed(request: _wire.Request) -> TransportError:
    return TransportError(
        "deadline passed before the request could be sent",
        endpoint=request.endpoint,
        page=request.page,
    )


def _time_left(request: _wire.Request, deadline: float) -> float:
    """Seconds until ``deadline`` (event-loop time); `TransportError` if it has passed."""
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise _deadline_passed(request)
    return left


def _positive_seconds(name: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0 seconds or None, got {value!r}")
    return value


def _dialect(token: Credential | None, api_key: ApiKey | None, api: Api | None) -> Dialect:
    """The dialect to speak: ``api``, or the one the credential implies.

    Raises:
        TypeError: Both credentials or neither, or one the dialect does not take.
        ValueError: An unknown ``api``.
    """
    if (token is None) == (api_key is None):
        raise TypeError(
            "give exactly one credential: token= (v2: a token, a token provider or "
            "PasswordAuth) or api_key= (v3: the API key from the VBot console)"
        )
    dialect = (V2 if api_key is None else V3) if api is None else dialect_for(api)
    if dialect.api_key and api_key is None:
        raise TypeError(f"the {dialect.name} API authenticates with api_key=, not a token")
    if not dialect.api_key and token is None:
        raise TypeError(f"the {dialect.name} API authenticates with token=, not an API key")
    return dialect


def _pages_of(iter_calls: Callable[P, CallIterator]) -> Callable[P, CallPageIterator]:
    """`VBotClient.iter_call_pages` made from ``iter_calls``: its arguments, its ``pages()``."""

    def iter_call_pages(*args: P.args, **kwargs: P.kwargs) -> CallPageIterator:
        """`iter_calls`, a ``list[CallRecord]`` per page (for batch loads): an alias of
        ``client.iter_calls(...).pages()``, with the same arguments and errors."""
        return iter_calls(*args, **kwargs).pages()

    iter_call_pages.__signature__ = inspect.signature(  # type: ignore[attr-defined]
        iter_calls
    ).replace(return_annotation="CallPageIterator")
    return iter_call_pages


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class _IterationPort:
    """What an iteration gets from the client: count, and fetch a page, each with retries.

    Every request counts in ``stats`` and is bounded by the iteration's one deadline of
    ``deadline`` seconds, which starts at its first request.

    Raises:
        ValueError: ``deadline`` is not > 0 seconds (before any request).
    """

    def __init__(self, client: VBotClient, stats: IterationStats, deadline: float | None):
        self._client = client
        self._stats = stats
        self._deadline = _Deadline(deadline)

    async def count(self, filter: CallFilter) -> int:
        client = self._client
        return await client._call(
            client._count_request(filter),
            _wire.read_count,
            stats=self._stats,
            deadline=self._deadline.at(),
        )

    async def fetch(
        self, filter: CallFilter, page: int, size: int, in_flight: InFlightSlot
    ) -> list[CallRow]:
        client = self._client
        return await client._call(
            client._list_request(filter, page, size),
            _already_read,
            in_flight=in_flight,
            stats=self._stats,
            deadline=self._deadline.at(),
            read_answer=_wire.read_record_page,
        )


class VBotClient:
    """An async client of the VBot campaign call-history API.

    Usage::

        async with VBotClient(api_key=key, base_url="https://open-api-h01.vbot.vn/v3.0") as client:
            total = await client.count_calls(campaign_code="CMP01")
            async for call in client.iter_calls(campaign_code="CMP01"):
                print(call.trans_id, call.disposition, call.created)

    Give exactly one credential: ``token`` (v2) or ``api_key`` (v3).

    Args:
        token: The access token (sent as ``Authorization: Bearer``); an async callable
            returning the current one (asked before each request, and once more after a 401);
            or a `PasswordAuth`, to log in at ``{base_url}/token`` and renew the token as it
            expires.
        api_key: The API key made in the VBot console (sent as ``X-API-Key``), or an async
            callable returning it. A secret exactly as a token is.
        base_url: ``https://<host>[/<version>]``; the endpoint paths are appended. Plain
            ``http://`` is refused except to loopback, unless ``allow_insecure_http``.
        api: The API dialect: ``"v2"`` (token; ``/api/campaignCall/cdr/*``), ``"v3-legacy"``
            (API key, the same paths) or ``"v3"`` (API key, ``/m-auto-call/api/cdr/*``).
            ``None``: ``"v3"`` with an ``api_key``, ``"v2"`` with a ``token``.
        vbot_id: Sent with every request when set (v2 only).
        project_code: Sent with every request when set (v2 and v3, not v3-legacy).
        session: An aiohttp session to use as is; never closed by the client. Without one,
            the client opens its own on first use and closes it in `aclose`.
        concurrency: Default most requests in flight for `iter_calls`.
        page_size: Default records per ``getAll`` page.
        first_page: The number the server gives its first page (0 or 1; VBot's examples use 1).
        retry: How transient failures are retried.
        timeout: Seconds one attempt may take: connect, send and read the whole body.
        time_unit: The unit of epoch dates sent for datetime filters (``"s"`` or ``"ms"``);
            ``None``: the dialect's (seconds for v2, milliseconds for v3 and v3-legacy).
        allow_insecure_http: Allow ``http://`` to a non-loopback host.
        max_response_bytes: A larger response body is refused instead of buffered.
        rate_limit: Most requests per second, evenly spaced, across every call of the client
            (``None``: no limit).
        deadline: Seconds one call may take in all, retries and waits included (``None``:
            bounded only by the retry policy). No retry is scheduled past it.
        clock: Returns the current time as an aware datetime (UTC now by default). Read once
            when a time-windowed iteration or a sync is made, to fix its upper bound.
        trace_configs: aiohttp ``TraceConfig`` objects for the session the client opens (for
            tracing, e.g. OpenTelemetry); ignored with ``session`` or ``transport``.
        transport: Sends the requests (`Transport`); an `AiohttpTransport` of its own by
            default. One given is never closed by the client; ``session``,
            ``max_response_bytes`` and ``trace_configs`` then do not apply.

    Raises:
        TypeError: Both ``token`` and ``api_key``, or neither; or a credential the dialect
            does not take (an API key for v2, a token for v3).
        ValueError: A setting is out of range, or ``vbot_id``/``project_code`` where the
            dialect has none (before any request is sent).
    """

    def __init__(
        self,
        token: Credential | None = None,
        *,
        api_key: ApiKey | None = None,
        base_url: str,
        api: Api | None = None,
        vbot_id: str | None = None,
        project_code: str | None = None,
        session: aiohttp.ClientSession | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        page_size: int = DEFAULT_PAGE_SIZE,
        first_page: int = 1,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        time_unit: Literal["s", "ms"] | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        rate_limit: float | None = None,
        deadline: float | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        transport: Transport | None = None,
    ):
        self._dialect = _dialect(token, api_key, api)
        self._auth: TokenSource = (
            api_key_source(api_key)
            if api_key is not None
            else token_source(token, self._exchange_token)  # type: ignore[arg-type]
        )
        self._base_url = normalize_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self._dialect.check_identity(vbot_id, project_code)
        self._vbot_id = vbot_id
        self._project_code = project_code
        self._concurrency = _positive_int("concurrency", concurrency)
        self._page_size = _positive_int("page_size", page_size)
        self._first_page = _positive_int("first_page", first_page, minimum=0)
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self._retry = retry
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self._timeout = float(timeout)
        if time_unit not in ("s", "ms", None):
            raise ValueError(f"time_unit must be 's', 'ms' or None, got {time_unit!r}")
        self._time_unit: TimeUnit = time_unit or self._dialect.time_unit
        self._max_response_bytes = _positive_int("max_response_bytes", max_response_bytes)
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 requests per second, got {rate_limit!r}")
        # One request per 1/rate seconds, no bursts: a steady rate, shared by every call.
        self._rate_limiter = (
            None if rate_limit is None else aiolimiter.AsyncLimiter(1, 1.0 / rate_limit)
        )
        self._deadline = _positive_seconds("deadline", deadline)
        self._clock = clock
        if transport is not None and session is not None:
            raise ValueError("give a transport or a session, not both")
        self._owns_transport = transport is None
        self._transport: Transport = transport or AiohttpTransport(
            session=session,
            max_response_bytes=self._max_response_bytes,
            connections=max(100, self._concurrency),
            trace_configs=trace_configs,
        )
        self._state = _State.UNOPENED

    @classmethod
    def from_password(
        cls, username: str, password: str, *, base_url: str, **client_options: Any
    ) -> VBotClient:
        """A client that logs in with ``username`` and ``password``; see `PasswordAuth`.

        ``client_options`` are the other keyword arguments of `VBotClient`.

        Raises:
            ValueError: ``username`` or ``password`` is empty, or a setting is out of range.
        """
        return cls(PasswordAuth(username, password), base_url=base_url, **client_options)

    @property
    def api(self) -> Api:
        """The API dialect the client speaks (given, or inferred from the credential)."""
        return self._dialect.name

    @property
    def time_unit(self) -> TimeUnit:
        """The unit of the epoch dates the client sends (given, or the dialect's)."""
        return self._time_unit

    def __repr__(self) -> str:
        return (
            f"VBotClient(base_url={self._base_url!r}, api={self._dialect.name!r}, "
            f"vbot_id={self._vbot_id!r}, "
            f"project_code={self._project_code!r}, state={self._state.value})"
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> VBotClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own transport (an injected one, or session, is left open).

        Idempotent.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_transport:
            await self._transport.aclose()

    def _open(self) -> Transport:
        if self._state is _State.CLOSED:
            raise RuntimeError("this VBotClient is closed; create a new one")
        self._state = _State.OPEN
        return self._transport

    # -- one request -----------------------------------------------------------------------

    async def _send(
        self,
        request: _wire.Request,
        token: str,
        in_flight: InFlightSlot,
        deadline: float | None,
        read_answer: ReadAnswer = _wire.read_response,
    ) -> Any:
        """One attempt: send ``request`` and return what ``read_answer`` reads of the answer
        (the envelope's ``data`` by default).

        The in-flight slot is held while the request is on the wire and its answer is read,
        so an in-flight limit that adapts to the server (`InFlightLimit`) sees a 429 as the
        exception it raises. The waits for the slot and the rate limiter count against
        ``deadline``: the attempt's timeout is what is left of it once they are over.
        """
        async with in_flight:
            timeout = await self._pace(request, deadline)
            headers = self._dialect.auth_headers(token)
            answer = await self._transmit(
                "GET", request, timeout, params=request.params, headers=headers
            )
            return read_answer(request, *answer, secrets=(token,))

    async def _pace(self, request: _wire.Request, deadline: float | None) -> float:
        """Wait for the rate limiter (within ``deadline``); return the attempt's timeout."""
        if self._rate_limiter is not None:
            if deadline is None:
                await self._rate_limiter.acquire()
            else:
                try:
                    await asyncio.wait_for(
                        self._rate_limiter.acquire(), _time_left(request, deadline)
                    )
                except asyncio.TimeoutError:
                    raise _deadline_passed(request) from None
        if deadline is None:
            return self._timeout
        return min(self._timeout, _time_left(request, deadline))

    @contextlib.asynccontextmanager
    async def _stream(
        self, request: RecordingRequest, token: str, deadline: float | None
    ) -> AsyncIterator[Stream]:
        """One paced attempt of ``request``, its body streamed (through `Transport.send`,
        whole, when the transport cannot stream). The timeout (cut to ``deadline``) bounds
        connecting and each wait for a chunk, not the whole body: a long recording may
        take longer.

        Raises:
            TransportError, ResponseFormatError: As `_transmit`.
        """
        timeout = await self._pace(request, deadline)
        headers = self._dialect.auth_headers(token)
        transport = self._open()
        if not isinstance(transport, StreamingTransport):
            status, answer_headers, body = await self._transmit(
                "GET", request, timeout, headers=headers
            )
            yield status, answer_headers, _one_chunk(body)
            return
        try:
            async with transport.stream(
                "GET", self._base_url + request.path, headers=headers, timeout=timeout
            ) as (status, answer_headers, chunks):
                yield status, answer_headers, chunks
        except TransportError as exc:
            raise TransportError(exc.args[0], endpoint=request.endpoint) from exc.__cause__

    async def _exchange_token(self, request: _wire.TokenRequest) -> _wire.TokenGrant:
        """POST a token request (with the client's retries) and return the grant."""

        async def attempt() -> _wire.TokenGrant:
            answer = await self._transmit(
                "POST", request, self._timeout, data=request.body, headers=request.headers
            )
            return _wire.read_token_response(request, *answer)

        return await call_with_retries(attempt, self._retry)

    async def _transmit(
        self,
        method: str,
        request: Union[_wire.Request, _wire.TokenRequest],
        timeout: float,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        """Send one request through the transport; its failures name the endpoint and page.

        Raises:
            TransportError: No complete answer (connection failure, or past ``timeout``).
            ResponseFormatError: The body is larger than the transport accepts.
        """
        transport = self._open()
        endpoint, page = request.endpoint, request.page
        try:
            return await transport.send(
                method,
                self._base_url + request.path,
                headers=headers,
                params=params,
                data=data,
                timeout=timeout,
            )
        except TransportError as exc:
            raise TransportError(exc.args[0], endpoint=endpoint, page=page) from exc.__cause__
        except ResponseFormatError as exc:
            raise ResponseFormatError(
                exc.args[0],
                field=exc.field,
                retryable=exc.retryable,
                body=exc.body,
                endpoint=endpoint,
                page=page,
            ) from exc.__cause__

    async def _call(
        self,
        request: _wire.Request,
        read: Callable[[_wire.Request, Any], T],
        *,
        in_flight: InFlightSlot = _NO_LIMIT,
        stats: IterationStats | None = None,
        deadline: float | None = None,
        read_answer: ReadAnswer = _wire.read_response,
    ) -> T:
        """Send ``request`` with retries (and one token renewal after a 401); ``read`` its data
        (what ``read_answer`` reads of the answer).

        ``deadline`` (event-loop time) bounds the whole call together with the client's own
        per-call ``deadline``: each attempt's timeout is cut to the time left, and no retry is
        scheduled past it.
        """

        async def send(token: str, deadline: float | None) -> T:
            return read(
                request, await self._send(request, token, in_flight, deadline, read_answer)
            )

        return await self._retrying(request, send, stats=stats, deadline=deadline)

    async def _retrying(
        self,
        request: _wire.Request,
        send: Callable[[str, float | None], Awaitable[T]],
        *,
        stats: IterationStats | None,
        deadline: float | None,
    ) -> T:
        """``send(token, deadline)`` with retries and one token renewal after a 401; see
        `_call`."""
        loop = asyncio.get_running_loop()
        if self._deadline is not None:
            own = loop.time() + self._deadline
            deadline = own if deadline is None else min(deadline, own)

        async def attempt_with(token: str) -> T:
            if deadline is not None:
                _time_left(request, deadline)  # past it: no attempt, no request counted
            if stats is not None:
                stats.requests += 1
            return await send(token, deadline)

        def count_retry(*_: object) -> None:
            if stats is not None:
                stats.retries += 1

        token = await self._auth.token()
        try:
            return await call_with_retries(
                lambda: attempt_with(token), self._retry, on_retry=count_retry, deadline=deadline
            )
        except AuthenticationError as exc:
            if not _wire.refuses_token(exc):
                raise
            fresh = await self._auth.renew(token)
            if fresh is None:
                raise
            logger.info("%s: token refused (401); retrying once with a renewed token", exc.endpoint)
            return await call_with_retries(
                lambda: attempt_with(fresh), self._retry, on_retry=count_retry, deadline=deadline
            )

    # -- the endpoints ---------------------------------------------------------------------

    def _filter(self, filter: CallFilter | None, criteria: Mapping[str, Any]) -> CallFilter:
        """The filter given either way, as the dialect takes it (its dispositions in the
        dialect's spelling, its dates epoch ints in the client's ``time_unit``), checked
        before any request.

        Raises:
            TypeError: Both a filter and criteria, or an unknown criterion.
            ValueError: A criterion the dialect does not have, a disposition it does not
                know, or a date in the other epoch unit or after the end date.
        """
        call_filter = CallFilter.coalesce(filter, criteria).in_unit(self._time_unit)
        return self._dialect.wire_filter(call_filter, self._time_unit)

    def _count_request(self, filter: CallFilter) -> _wire.Request:
        return _wire.count_request(
            filter,
            vbot_id=self._vbot_id,
            project_code=self._project_code,
            time_unit=self._time_unit,
            dialect=self._dialect,
        )

    def _list_request(self, filter: CallFilter, page: int, size: int) -> _wire.Request:
        return _wire.list_request(self._count_request(filter), page=page, size=size)

    async def count_calls(self, filter: CallFilter | None = None, **filters: Any) -> int:
        """How many calls match (``countAll``; one per combination of the values of criteria
        given several, summed).

        Args:
            filter: A `CallFilter`, or give its criteria as keywords instead.

        Raises:
            TypeError: Both a filter and keyword criteria, or an unknown criterion.
            ValueError: A criterion the dialect does not take (before any request).
            VBotError: The request failed (see the exception tree).
        """
        total = 0
        for variant in self._filter(filter, filters).variants():
            total += await self._call(self._count_request(variant), _wire.read_count)
        return total

    async def get_calls(
        self,
        filter: CallFilter | None = None,
        *,
        page: int,
        size: int | None = None,
        **filters: Any,
    ) -> list[CallRecord]:
        """One page of matching calls (``getAll``), in the server's order.

        Args:
            filter: A `CallFilter`, or give its criteria as keywords instead.
            page: The page number, counted from the client's ``first_page``.
            size: Records per page (the client's ``page_size`` by default).

        Raises:
            ValueError: ``page`` below ``first_page``, ``size`` < 1, a criterion given
                several values (a page is of one query: use `iter_calls`), or one the dialect
                does not take.
            TypeError: Both a filter and keyword criteria, or an unknown criterion.
            VBotError: The request failed (see the exception tree).
        """
        call_filter = self._filter(filter, filters)
        several = call_filter.several()
        if several:
            raise ValueError(
                f"get_calls reads one page of one query, but {', '.join(several)} has several "
                "values (or an outcome the dialect sends as several): use iter_calls"
            )
        _positive_int("page", page, minimum=self._first_page)
        size = self._page_size if size is None else _positive_int("size", size)
        request = self._list_request(call_filter, page, size)
        rows = await self._call(request, _already_read, read_answer=_wire.read_record_page)
        return build_records(rows)

    async def get_bot_conversation(
        self, trans_id: str, *, bot_id: str | None = None
    ) -> BotConversation:
        """The bot conversation of the call ``trans_id`` (``getBotConversation``).

        Raises:
            ValueError: ``trans_id`` is empty.
            VBotError: The request failed (see the exception tree).
        """
        if not isinstance(trans_id, str) or not trans_id:
            raise ValueError(f"trans_id must be a non-empty string, got {trans_id!r}")
        return await self._fetch_conversation(trans_id, bot_id)

    async def _fetch_conversation(
        self, trans_id: str, bot_id: str | None, *, stats: IterationStats | None = None
    ) -> BotConversation:
        """Ask for the bot conversation of ``trans_id`` (with the client's retries, rate limit
        and credential), counting the requests in ``stats``."""
        request = _wire.conversation_request(
            trans_id,
            bot_id=bot_id,
            vbot_id=self._vbot_id,
            project_code=self._project_code,
            dialect=self._dialect,
        )
        return await self._call(request, _wire.conversation_reader(trans_id), stats=stats)

    async def _fetch_recording(
        self, trans_id: str, read: ReadStream, *, stats: IterationStats | None = None
    ) -> Recording:
        """Ask for the recording of ``trans_id`` (with the client's retries, rate limit and
        credential); return what ``read`` makes of the streamed answer."""
        request = recording_request(trans_id, self._dialect)

        async def send(token: str, deadline: float | None) -> Recording:
            async with self._stream(request, token, deadline) as (status, headers, chunks):
                return await read(request, status, headers, chunks, (token,))

        return await self._retrying(request, send, stats=stats, deadline=None)

    async def download_recording(
        self,
        trans_id: str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_RECORDING_BYTES,
    ) -> Recording:
        """Download the recording of the call ``trans_id`` to ``path``.

        ``GET {base_url}/api/crm/historycall/record/{trans_id}`` with the client's credential
        (Bearer token or ``X-API-Key``), retries and rate limit. The body is streamed to
        ``path + ".partial"`` (hashed and counted as it comes, never held whole), fsynced,
        then renamed to ``path``, which therefore only ever holds a whole recording, and
        the directory fsynced: once it returns, the file is on disk.

        Args:
            trans_id: The call.
            path: Where to write it (its directory must exist); the name is used as given,
                whatever the Content-Type.
            max_bytes: A larger recording is refused (announced, or as it arrives).

        Returns:
            What was written: the path, bytes, SHA-256 and media type.

        Raises:
            ValueError: ``trans_id`` is empty, or ``max_bytes`` < 1 (before any request).
            APIError: The server refused; ``http_status`` 404 (or ``error_code`` 404): the
                call has no recording.
            ResponseFormatError: The body is not audio (an HTML page, a JSON body), or is
                larger than ``max_bytes``. Not retried.
            TransportError: No whole answer after the retries.

        .. versionadded:: Unreleased
        """
        if not isinstance(trans_id, str) or not trans_id:
            raise ValueError(f"trans_id must be a non-empty string, got {trans_id!r}")
        _positive_int("max_bytes", max_bytes)
        target = Path(path)
        return await self._fetch_recording(
            trans_id, RecordingWriter(lambda _: target, max_bytes=max_bytes)
        )

    def download_recordings(
        self,
        directory: str | os.PathLike[str],
        filter: CallFilter | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_RECORDING_BYTES,
        concurrency: int | None = None,
        page_size: int | None = None,
        window: dt.timedelta | None = None,
        **filters: Any,
    ) -> RecordingDownload:
        """Download the recording of every call the filter selects into ``directory``.

        Usage::

            async with client.download_recordings("recordings/", campaign_code="CMP01") as it:
                async for recording in it:
                    print(recording.trans_id, recording.file or recording.reason)

        Each call once: its recording, streamed as `download_recording` does, is written to
        ``{trans_id}{extension of its Content-Type}``, and a line of ``manifest.jsonl``
        records it (or why there is none). Run it again to resume: only what is missing or
        does not match the manifest is fetched. The files are not fsynced one by one but
        in passes, every 256 files and at the end (what holds after a power cut: see the
        README, "Recordings"). See `RecordingDownload`.

        Args:
            directory: Where to write (made if missing).
            filter: A `CallFilter`, or give its criteria as keywords instead.
            max_bytes: A larger recording is refused.
            concurrency: Most recordings downloading at once (the client's default if
                ``None``); the calls are read besides, one page at a time.
            page_size, window: As for `iter_calls`.

        Raises:
            ValueError, TypeError: Bad arguments, at once (before any request).
            CallError: During iteration: a recording that could not be had; it names the
                call.
            VBotError: During iteration, reading the calls failed.

        .. versionadded:: Unreleased
        """
        _positive_int("max_bytes", max_bytes)
        width = self._width(concurrency)
        calls = self._calls_for_bulk(filter, filters, page_size=page_size, window=window)

        def fetch(trans_id: str, read: ReadStream) -> Awaitable[Recording]:
            return self._fetch_recording(trans_id, read, stats=calls.stats)

        return RecordingDownload(
            calls, fetch, Path(directory), concurrency=width, max_bytes=max_bytes
        )

    def iter_conversations(
        self,
        filter: CallFilter | None = None,
        *,
        concurrency: int | None = None,
        page_size: int | None = None,
        window: dt.timedelta | None = None,
        **filters: Any,
    ) -> ConversationIterator:
        """The bot conversation of every call the filter selects, each call once.

        Usage::

            async with client.iter_conversations(campaign_code="CMP01") as conversations:
                async for item in conversations:
                    print(item.trans_id, item.conversation.turns if item.conversation else None)

        The calls are read as `iter_calls` reads them (complete, or an error), one page at a
        time; each call's ``getBotConversation`` is asked with at most ``concurrency`` in
        flight (so ``concurrency + 1`` requests at most, with the page being read), under the
        client's rate limit, a 5xx retried. A call without a conversation (the server answers
        404 for it) comes with ``conversation=None``. Items come as their answers arrive, not
        in the server's order; memory does not grow with the number of calls.

        Args:
            filter: A `CallFilter`, or give its criteria as keywords instead.
            concurrency: Most conversation requests in flight (the client's default if
                ``None``).
            page_size, window: As for `iter_calls`.

        Raises:
            ValueError, TypeError: Bad arguments, at once (before any request).
            CallError: During iteration: a conversation that could not be fetched after its
                retries; it names the call.
            VBotError: During iteration, reading the calls failed.

        .. versionadded:: Unreleased
        """
        width = self._width(concurrency)
        calls = self._calls_for_bulk(filter, filters, page_size=page_size, window=window)

        def fetch(trans_id: str, bot_id: str | None) -> Awaitable[BotConversation]:
            return self._fetch_conversation(trans_id, bot_id, stats=calls.stats)

        return ConversationIterator(calls, fetch, concurrency=width)

    def _width(self, concurrency: int | None) -> int:
        if concurrency is None:
            return self._concurrency
        return _positive_int("concurrency", concurrency)

    def _calls_for_bulk(
        self,
        filter: CallFilter | None,
        filters: Mapping[str, Any],
        *,
        page_size: int | None,
        window: dt.timedelta | None,
    ) -> CallPageIterator:
        """The calls of a bulk read: a page at a time (their requests are few beside the
        one per call that follows), in the server's order."""
        return CallPageIterator(
            self._iteration(
                filter,
                filters,
                limit=None,
                page_size=page_size,
                concurrency=1,
                ordered=True,
                deadline=None,
                window=window,
            )
        )

    # -- iteration -------------------------------------------------------------------------

    def _now(self) -> int:
        """The clock's current time in the client's ``time_unit``."""
        now = self._clock()
        if not isinstance(now, dt.datetime) or now.utcoffset() is None:
            raise TypeError(f"clock must return an aware datetime, got {now!r}")
        return to_epoch(now, self._time_unit)

    def _window_width(self, window: dt.timedelta) -> int:
        width = to_units(window, self._time_unit)
        if width < 1:
            raise ValueError(f"window must be at least 1{self._time_unit}, got {window}")
        return width

    def _open_iteration(
        self,
        filter: CallFilter,
        *,
        page_size: int | None,
        concurrency: int | None,
        ordered: bool,
        deadline: float | None,
    ) -> OpenIteration:
        """Check the paging options; return a builder of the iteration of ``filter``, which
        gets the port (with its deadline) and nothing else of the client."""
        size = self._page_size if page_size is None else _positive_int("page_size", page_size)
        width = (
            self._concurrency if concurrency is None else _positive_int("concurrency", concurrency)
        )
        stats = IterationStats()
        return functools.partial(
            Iteration,
            _IterationPort(self, stats, deadline),
            filter,
            first_page=self._first_page,
            page_size=size,
            concurrency=width,
            ordered=ordered,
            stats=stats,
        )

    def _iteration(
        self,
        filter: CallFilter | None,
        filters: Mapping[str, Any],
        *,
        limit: int | None,
        page_size: int | None,
        concurrency: int | None,
        ordered: bool,
        deadline: float | None,
        window: dt.timedelta | None,
    ) -> Iteration:
        call_filter = self._filter(filter, filters)
        if limit is not None:
            _positive_int("limit", limit, minimum=0)
        open_iteration = self._open_iteration(
            call_filter,
            page_size=page_size,
            concurrency=concurrency,
            ordered=ordered,
            deadline=deadline,
        )
        if window is None:
            return open_iteration(windows=None, limit=limit)
        width = self._window_width(window)
        if call_filter.start_date is None:
            raise ValueError("window= needs the filter's start_date: where the first window begins")
        start = to_epoch(call_filter.start_date, self._time_unit)
        end_date = call_filter.end_date
        end = self._now() if end_date is None else to_epoch(end_date, self._time_unit)
        return open_iteration(windows=plan_windows(start, end, width), limit=limit)

    def iter_calls(
        self,
        filter: CallFilter | None = None,
        *,
        limit: int | None = None,
        page_size: int | None = None,
        concurrency: int | None = None,
        ordered: bool = True,
        deadline: float | None = None,
        window: dt.timedelta | None = None,
        **filters: Any,
    ) -> CallIterator:
        """Every call matching the filter, each once, fetched concurrently.

        ``countAll`` is asked once; then pages are fetched with at most ``concurrency``
        requests in flight and at most ``concurrency + 1`` pages held in memory. Use
        ``async with client.iter_calls(...) as calls:`` so that stopping early cancels the
        requests in flight at once.

        Args:
            filter: A `CallFilter`, or give its criteria as keywords instead.
            limit: Yield at most this many records.
            page_size: Records per page (the client's default if ``None``).
            concurrency: Most requests in flight (the client's default if ``None``).
            ordered: Yield in the server's order (else each page as it arrives).
            deadline: Seconds the whole iteration may take from its first request (``None``:
                no overall bound); past it, the next request raises `TransportError`.
            window: Slice the filter's dates into consecutive windows this wide and page
                each window on its own (its ``countAll``, then its pages), oldest window
                first, so that no page is deeper than one window's records. It needs a
                ``start_date``; without an ``end_date``, the end is the client's ``clock``,
                read once, now. Every record is still yielded once: a call created at an
                edge between two windows is recognised by ``trans_id`` (see the README).
                `CallIterator.total` is then the sum of the counts of the windows begun so
                far, and ``stats.windows`` / ``stats.windows_done`` show the progress.

        Raises:
            ValueError, TypeError: Bad arguments, at once (before any request).
            VBotError: During iteration, the first page that failed after its retries.
        """
        return CallIterator(
            self._iteration(
                filter,
                filters,
                limit=limit,
                page_size=page_size,
                concurrency=concurrency,
                ordered=ordered,
                deadline=deadline,
                window=window,
            )
        )

    iter_call_pages = _pages_of(iter_calls)

    def sync(
        self,
        state_path: str | os.PathLike[str] | StateStore,
        filter: CallFilter | None = None,
        *,
        lookback: dt.timedelta = DEFAULT_LOOKBACK,
        settle: dt.timedelta = DEFAULT_SETTLE,
        window: dt.timedelta = DEFAULT_WINDOW,
        reset: bool = False,
        page_size: int | None = None,
        concurrency: int | None = None,
        deadline: float | None = None,
        **filters: Any,
    ) -> CallSync:
        """The calls new since the last sync, each once, remembered in a state file.

        Usage::

            async with client.sync("state.json", campaign_code="CMP01") as sync:
                async for call in sync:
                    load(call)          # committed when the block exits cleanly

        It reads ``[watermark - lookback, now - settle)`` in windows of ``window`` (see
        `iter_calls`), ``now`` being the client's ``clock`` read once, here. The lookback
        re-reads the recent past for calls whose records were written late; calls that an
        earlier sync already yielded are recognised by ``trans_id`` and not yielded again.
        The first sync (no state file) starts at the filter's ``start_date``; later ones
        ignore it. An ``end_date`` caps the upper bound. Nothing is saved until
        `CallSync.commit` (or a clean exit of ``async with``).

        Args:
            state_path: The JSON state file (its directory must exist), or another
                `StateStore` (a database sink keeps the state in a table: see
                `sync_to_database`).
            filter: A `CallFilter`, or give its criteria as keywords instead. A state file
                serves one set of criteria (dates aside), ``vbot_id``, ``project_code`` and
                ``time_unit``.
            lookback: How far before the watermark to look again for late calls.
            settle: How far behind the clock to stop, leaving calls still being written to
                the next run.
            window: The width of each time window.
            reset: Ignore the state file (unusable or not) and start at ``start_date``.
            page_size, concurrency, deadline: As for `iter_calls`.

        Raises:
            StateError: Before any request: the state file is not JSON, is not a state
                file, was made for other criteria, or has a watermark later than now; or
                there is no state file and no ``start_date``.
            ValueError, TypeError: Bad arguments (before any request).
            VBotError: During iteration, a request that failed after its retries.
        """
        call_filter = self._filter(filter, filters)
        unit = self._time_unit
        open_iteration = self._open_iteration(
            call_filter,
            page_size=page_size,
            concurrency=concurrency,
            ordered=True,
            deadline=deadline,
        )
        return open_sync(
            open_iteration,
            call_filter,
            state_path if isinstance(state_path, StateStore) else FileStateStore(Path(state_path)),
            now=self._now(),
            lookback=to_units(lookback, unit),
            settle=to_units(settle, unit),
            window=self._window_width(window),
            reset=reset,
            vbot_id=self._vbot_id,
            project_code=self._project_code,
            time_unit=unit,
        )
