"""Shared fixtures: a running fake server and clients bound to it, with zero backoff.

``any_server`` is the fake speaking each dialect in turn (v2 with and without the envelope's
``status``, v3-legacy, v3): a test that takes it runs once per dialect, and `make_client`
gives each the credential its dialect takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vbot_cdr import RetryPolicy, VBotClient
from vbot_cdr._dialects import DIALECTS
from vbot_cdr.testing import FakeVBotServer

#: Retries without waiting, so tests never depend on the wall clock.
NO_WAIT = RetryPolicy(max_attempts=4, backoff=0.0, max_backoff=0.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeVBotServer]:
    """A fake server with 250 generated records, first page 1, no latency."""
    async with FakeVBotServer(count=250) as fake:
        yield fake


#: The fake's dialects, as FakeVBotServer options, by test id.
SERVED_DIALECTS: dict[str, dict[str, Any]] = {
    "v2": {"api": "v2"},
    "v2-no-status": {"api": "v2", "envelope_status": False},
    "v3-legacy": {"api": "v3-legacy"},
    "v3": {"api": "v3"},
}


@pytest.fixture(params=list(SERVED_DIALECTS))
def dialect(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The FakeVBotServer options of each dialect in turn."""
    options: dict[str, Any] = SERVED_DIALECTS[request.param]
    return options


@pytest.fixture
async def any_server(dialect: dict[str, Any]) -> AsyncIterator[FakeVBotServer]:
    """`server`, speaking each dialect in turn."""
    async with FakeVBotServer(count=250, **dialect) as fake:
        yield fake


def credential(fake: FakeVBotServer) -> dict[str, Any]:
    """The VBotClient arguments of the credential ``fake`` accepts, and its dialect."""
    if fake.api == "v2":
        return {"token": fake.token, "api": "v2"}
    return {"api_key": fake.api_key, "api": fake.api}


def identity(fake: FakeVBotServer) -> dict[str, str]:
    """The vbot_id and project_code that ``fake``'s dialect takes (as client options)."""
    given = {"vbot_id": "VB0001", "project_code": "PRJ"}
    return {k: v for k, v in given.items() if k in DIALECTS[fake.api].identity}


def wire_name(fake: FakeVBotServer, criterion: str) -> str:
    """The query parameter a CallFilter criterion is sent as in ``fake``'s dialect."""
    return DIALECTS[fake.api].filters[criterion]


def answered(fake: FakeVBotServer) -> str:
    """The disposition of an answered call in ``fake``'s dialect."""
    return "ANSWER" if fake.api == "v3" else "answer"


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., VBotClient]]:
    """Build clients for a fake server (zero backoff); all are closed after the test."""
    clients: list[VBotClient] = []

    def make(fake: FakeVBotServer, **options: Any) -> VBotClient:
        options.setdefault("retry", NO_WAIT)
        options.setdefault("first_page", fake.first_page)
        client = VBotClient(base_url=fake.base_url, **{**credential(fake), **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(server: FakeVBotServer, make_client: Callable[..., VBotClient]) -> VBotClient:
    """A client of `server`."""
    return make_client(server)
