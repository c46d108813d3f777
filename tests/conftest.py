"""Shared fixtures: a running fake server and clients bound to it, with zero backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vbot_cdr import RetryPolicy, VBotClient
from vbot_cdr.testing import FakeVBotServer

#: Retries without waiting, so tests never depend on the wall clock.
NO_WAIT = RetryPolicy(max_attempts=4, backoff=0.0, max_backoff=0.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeVBotServer]:
    """A fake server with 250 generated records, first page 1, no latency."""
    async with FakeVBotServer(count=250) as fake:
        yield fake


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., VBotClient]]:
    """Build clients for a fake server (zero backoff); all are closed after the test."""
    clients: list[VBotClient] = []

    def make(fake: FakeVBotServer, **options: Any) -> VBotClient:
        options.setdefault("retry", NO_WAIT)
        options.setdefault("first_page", fake.first_page)
        client = VBotClient(options.pop("token", fake.token), base_url=fake.base_url, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> VBotClient:
    """A client of `server`."""
    return make_client(server)
