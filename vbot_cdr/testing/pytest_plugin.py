"""A pytest plugin: the ``vbot_server`` fixture, a running `FakeVBotServer` for each test.

Enable it in your top-level ``conftest.py``::

    pytest_plugins = ["vbot_cdr.testing.pytest_plugin"]

then::

    import pytest
    from vbot_cdr import VBotClient

    @pytest.mark.asyncio
    async def test_export(vbot_server):
        async with VBotClient(vbot_server.token, base_url=vbot_server.base_url) as client:
            assert await client.count_calls() == 1000

The fixture is async and runs in the test's event loop, so it needs pytest-asyncio: in its
default strict mode a test asks for it with ``@pytest.mark.asyncio`` (as above); in auto mode
the marker may be left out. Options are `FakeVBotServer`'s keyword arguments: for one test (or a
class or module) with the marker ``@pytest.mark.vbot_server(count=50, first_page=0)``, and
for a whole directory by overriding the ``vbot_server_options`` fixture; the closest marker
wins over farther ones, and markers win over ``vbot_server_options``.

The plugin is deliberately not registered under the ``pytest11`` entry point: installing
vbot_cdr must not load a web server and a fixture into every test suite of the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "vbot_cdr.testing.pytest_plugin needs pytest-asyncio: pip install pytest-asyncio"
    ) from exc

from ._server import FakeVBotServer

__all__ = ["vbot_server", "vbot_server_options"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vbot_server(**options): FakeVBotServer arguments for the vbot_server fixture"
    )


@pytest.fixture
def vbot_server_options() -> dict[str, Any]:
    """`FakeVBotServer` keyword arguments for ``vbot_server``; override it to change them."""
    return {}


@pytest_asyncio.fixture
async def vbot_server(
    request: pytest.FixtureRequest, vbot_server_options: dict[str, Any]
) -> AsyncIterator[FakeVBotServer]:
    """A `FakeVBotServer` listening on loopback for the duration of the test.

    Raises:
        TypeError: A ``vbot_server`` marker with positional arguments.
    """
    options = dict(vbot_server_options)
    # iter_markers yields the closest first; apply the farthest first so the closest wins.
    for marker in reversed(list(request.node.iter_markers("vbot_server"))):
        if marker.args:
            raise TypeError("@pytest.mark.vbot_server takes keyword arguments only")
        options.update(marker.kwargs)
    async with FakeVBotServer(**options) as server:
        yield server
