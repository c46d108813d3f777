"""The paging loop users write by hand, shared by ``exports_hand.py`` and ``sinks_hand.py``.

aiohttp ``gather`` of every page under a semaphore, each page decoded with ``orjson.loads``
into dicts and handed to ``write`` as it arrives. No types, no validation, no order, no
retries, no de-duplication. Imports nothing of `vbot_cdr`, so the process that runs it pays
for none of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

GET_ALL = "/api/campaignCall/cdr/getAll"
COUNT_ALL = "/api/campaignCall/cdr/countAll"


async def gather_pages(
    base_url: str,
    token: str,
    write: Callable[[list[Any]], None],
    *,
    page_size: int,
    concurrency: int,
) -> int:
    """Read every page of the server at ``base_url`` (v2, a Bearer ``token``), at most
    ``concurrency`` requests at once, and ``write`` each page's records; returns how many."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    semaphore = asyncio.Semaphore(concurrency)
    written = 0
    async with aiohttp.ClientSession(base_url, headers=headers) as session:

        async def get(path: str, params: dict[str, str] | None = None) -> Any:
            async with semaphore, session.get(path, params=params) as response:
                return orjson.loads(await response.read())["data"]

        async def page(number: int) -> None:
            nonlocal written
            records = await get(GET_ALL, {"page": str(number), "size": str(page_size)})
            if records:
                write(records)
            written += len(records)

        total = await get(COUNT_ALL)
        await asyncio.gather(*(page(number) for number in range(1, -(-total // page_size) + 1)))
    return written
