"""The transport seam: a request goes out, a plain ``(status, headers, body)`` comes back.

`VBotClient` builds requests and reads answers (`_wire`), retries (`_retry`) and paces them;
a `Transport` only moves bytes. `AiohttpTransport` is the default, and the only user of
aiohttp's client in vbot_cdr. Tests and special deployments pass their own with
``VBotClient(..., transport=...)``: a fake answering from memory, or a wrapper that records
or delays what goes out, without touching the client's private names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

import aiohttp

from ._config import DEFAULT_MAX_RESPONSE_BYTES
from ._errors import ResponseFormatError, TransportError

__all__ = ["AiohttpTransport", "Answer", "Stream", "StreamingTransport", "Transport"]

#: What a transport returns: the HTTP status, the headers, and the whole body.
Answer = tuple[int, Mapping[str, str], bytes]
#: What a streaming transport gives: the HTTP status, the headers, and the body's chunks.
Stream = tuple[int, Mapping[str, str], AsyncIterator[bytes]]
#: The most bytes a streamed body hands over at once.
_CHUNK_BYTES: Final = 256 * 1024


class Transport(Protocol):
    """Sends one HTTP request; returns its status, headers and whole body.

    Redirects are not followed (a 3xx is returned as is). ``timeout`` bounds the whole
    exchange, connecting included, in seconds.

    Raises:
        TransportError: No complete answer: a connection failure, or past ``timeout``.
        ResponseFormatError: The body is larger than the transport accepts.
    """

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: float,
    ) -> Answer: ...

    async def aclose(self) -> None:
        """Release what the transport holds (connections). Idempotent."""


@runtime_checkable
class StreamingTransport(Transport, Protocol):
    """A `Transport` that can also hand a body over as it arrives (for recordings: files
    larger than one would hold in memory). A transport without `stream` is still used for
    them, through `send`, within its own body limit.
    """

    def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float
    ) -> contextlib.AbstractAsyncContextManager[Stream]:
        """Send one request; within the block, its status, headers and body chunks.

        ``timeout`` bounds connecting and each wait for the next chunk (not the whole body).

        Raises:
            TransportError: No answer, or the body broke off or stalled past ``timeout``
                (from the chunks).
        """
        ...


class AiohttpTransport:
    """A `Transport` (and `StreamingTransport`) over an aiohttp session.

    Args:
        session: A session to use as is, never closed here. Without one, the transport
            opens its own on first use and closes it in `aclose`.
        max_response_bytes: A larger body is refused (`ResponseFormatError`) as soon as it
            is announced or read past, never buffered whole.
        connections: The most connections of its own session.
        trace_configs: aiohttp ``TraceConfig`` objects for its own session (for tracing,
            e.g. OpenTelemetry); an injected ``session`` has its own.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        connections: int = 100,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ):
        self.session = session
        self._owns_session = session is None
        self._max_response_bytes = max_response_bytes
        self._connections = connections
        self._trace_configs = list(trace_configs)

    async def aclose(self) -> None:
        """Close the transport's own session (an injected one is left open). Idempotent."""
        if self._owns_session and self.session is not None:
            await self.session.close()
            self.session = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        timeout: float,
    ) -> Answer:
        """See `Transport.send`."""
        try:
            async with self._session().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return response.status, response.headers, await self._read_body(response)
        except asyncio.TimeoutError as exc:
            raise TransportError(f"no complete answer within {timeout:.3g}s") from exc
        except aiohttp.ClientResponseError as exc:
            # An unparsable answer. Its request_info holds the request's headers, the token
            # among them, so it is described here and not chained (raised outside this block,
            # so that it is not even the __context__).
            failure = TransportError(f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        raise failure

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float
    ) -> AsyncIterator[Stream]:
        """See `StreamingTransport.stream`. The body is not bounded here: its reader is."""
        try:
            response = await self._session().request(
                method,
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout),
                allow_redirects=False,
            )
        except asyncio.TimeoutError as exc:
            raise TransportError(f"no answer within {timeout:.3g}s") from exc
        except aiohttp.ClientResponseError as exc:
            # Not chained: its request_info holds the request's headers (see `send`).
            failure = TransportError(f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        else:
            try:
                yield response.status, response.headers, _chunks(response, timeout)
            finally:
                response.release()  # a body left unread closes the connection
            return
        raise failure

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                trace_configs=self._trace_configs,
            )
        return self.session

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self._max_response_bytes
        length = response.content_length
        if length is not None and length > cap:
            raise _too_large(cap)
        if length is not None and "Content-Encoding" not in response.headers:
            # Exactly the bytes announced (aiohttp stops there), in one read; a compressed
            # body can inflate past its announced length, so it is counted as it comes.
            return await response.read()
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > cap:
                raise _too_large(cap)
            chunks.append(chunk)
        return b"".join(chunks)


async def _chunks(response: aiohttp.ClientResponse, timeout: float) -> AsyncIterator[bytes]:
    """The body of ``response`` as it arrives; a broken or stalled body is a `TransportError`."""
    try:
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            yield chunk
    except asyncio.TimeoutError as exc:
        raise TransportError(f"body stalled for more than {timeout:.3g}s") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"body broke off: {type(exc).__name__}: {exc}") from exc


def _too_large(cap: int) -> ResponseFormatError:
    # Made only when raised: an exception per answer read would cost every request.
    return ResponseFormatError(f"response body larger than max_response_bytes={cap}")
