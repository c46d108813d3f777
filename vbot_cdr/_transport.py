"""The transport seam: a request goes out, a plain ``(status, headers, body)`` comes back.

`VBotClient` builds requests and reads answers (`_wire`), retries (`_retry`) and paces them;
a `Transport` only moves bytes. `AiohttpTransport` is the default, and the only user of
aiohttp's client in vbot_cdr. Tests and special deployments pass their own with
``VBotClient(..., transport=...)``: a fake answering from memory, or a wrapper that records
or delays what goes out, without touching the client's private names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp

from ._config import DEFAULT_MAX_RESPONSE_BYTES
from ._errors import ResponseFormatError, TransportError

__all__ = ["AiohttpTransport", "Answer", "Transport"]

#: What a transport returns: the HTTP status, the headers, and the whole body.
Answer = tuple[int, Mapping[str, str], bytes]


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


class AiohttpTransport:
    """A `Transport` over an aiohttp session.

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
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                trace_configs=self._trace_configs,
            )
        try:
            async with self.session.request(
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


def _too_large(cap: int) -> ResponseFormatError:
    # Made only when raised: an exception per answer read would cost every request.
    return ResponseFormatError(f"response body larger than max_response_bytes={cap}")
