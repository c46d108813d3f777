"""Loopback helpers shared by the tests: raw TCP servers, ports, and exception chains."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import attrs
from aiohttp import web

#: Writes (or withholds) a raw answer once the request's head has been read.
Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@attrs.define
class RawServer:
    """A raw loopback server's URL, and what it has seen."""

    url: str = ""
    connections: int = 0
    ended: asyncio.Event = attrs.field(factory=asyncio.Event)


@asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[RawServer]:
    """A TCP server on loopback that reads each request's head, then runs ``respond``.

    It counts connections, and sets ``ended`` each time one is done.
    """
    server = RawServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            server.ended.set()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


def answering(*replies: bytes) -> Respond:
    """Answer connection ``n`` with ``replies[n]`` (the last reply from then on)."""
    answered = 0

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        writer.write(replies[min(answered, len(replies) - 1)])
        answered += 1
        await writer.drain()

    return respond


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port and yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it leads to through ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__]
