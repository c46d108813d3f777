"""What the benchmarks time: the library's iterator, the loops it is compared with, decoders.

Every coroutine here runs against a fake server in another process, so the CPU time of this
process is the client's alone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson

from vbot_cdr import VBotClient
from vbot_cdr._models import _structure_with_converter
from vbot_cdr._wire import Request, read_records, read_response
from vbot_cdr.testing import generate_records

HERE = Path(__file__).resolve().parent
GET_ALL = "/api/campaignCall/cdr/getAll"
COUNT_ALL = "/api/campaignCall/cdr/countAll"


# -- the fake server, in its own process ---------------------------------------------------


@contextmanager
def fake_server(count: int, latency: float = 0.0) -> Iterator[tuple[str, str]]:
    """Start ``fake_server.py`` in a child process; yield its ``(base_url, token)``."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "fake_server.py"), f"--count={count}", f"--latency={latency}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the fake server did not start")
        info = json.loads(line)
        yield info["base_url"], info["token"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the library ---------------------------------------------------------------------------


async def iterate(client: VBotClient, *, page_size: int, concurrency: int) -> int:
    """Stream every record with `iter_calls`; return how many came."""
    n = 0
    async with client.iter_calls(page_size=page_size, concurrency=concurrency) as calls:
        async for _ in calls:
            n += 1
    return n


async def sequential_pages(client: VBotClient, *, page_size: int) -> int:
    """The page-by-page loop a caller would write with `get_calls`: count, then each page."""
    total = await client.count_calls()
    pages = -(-total // page_size)
    n = 0
    for page in range(1, pages + 1):
        for _ in await client.get_calls(page=page, size=page_size):
            n += 1
    return n


# -- the hand-written floor ----------------------------------------------------------------


async def dict_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    page_size: int,
    loads: Callable[[bytes], Any] = orjson.loads,
) -> int:
    """What twenty lines of aiohttp do: count, then GET each page and decode it into dicts.

    No types, no validation, no retries: the floor any client pays for the same records.
    ``session`` carries the Bearer header.
    """
    async with session.get(base_url + COUNT_ALL) as response:
        total = loads(await response.read())["data"]
    n = 0
    for page in range(1, -(-total // page_size) + 1):
        params = {"page": str(page), "size": str(page_size)}
        async with session.get(base_url + GET_ALL, params=params) as response:
            records = loads(await response.read())["data"]
        for _ in records:
            n += 1
    return n


def bearer_session(token: str) -> aiohttp.ClientSession:
    """A plain aiohttp session that sends the token, for the hand-written loops."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return aiohttp.ClientSession(headers=headers)


async def gather_loop(
    session: aiohttp.ClientSession, base_url: str, *, page_size: int, concurrency: int
) -> int:
    """The concurrent version of the same twenty lines: ``gather`` under a semaphore.

    Every page is requested at once and held until all have arrived: no order, no bound on
    memory, no de-duplication, no retries. The reference for what aiohttp alone costs.
    """
    semaphore = asyncio.Semaphore(concurrency)

    async def get(path: str, params: dict[str, str] | None = None) -> Any:
        async with semaphore, session.get(base_url + path, params=params) as response:
            return orjson.loads(await response.read())["data"]

    total = await get(COUNT_ALL)
    pages = await asyncio.gather(
        *(
            get(GET_ALL, {"page": str(page), "size": str(page_size)})
            for page in range(1, -(-total // page_size) + 1)
        )
    )
    return sum(len(records) for records in pages)


# -- decoders of one page ------------------------------------------------------------------


class MsgMember(msgspec.Struct, frozen=True):
    name: str | None = None
    color: str | None = None
    vbot_id: str | None = None


class MsgHotline(msgspec.Struct, frozen=True):
    code: str | None = None
    name: str | None = None
    phone_number: str | None = None


class MsgCollected(msgspec.Struct, frozen=True):
    cfkey: str | None = None
    cfname: str | None = None
    cfvalue: str | None = None
    description: str | None = None


class MsgRecord(msgspec.Struct, frozen=True):
    """`CallRecord`'s fields as a msgspec Struct: typed, validated decoding in C."""

    phone: str | None = None
    name: str | None = None
    customer_uid: str | None = None
    duration: int | None = None
    billsec: int | None = None
    sip_code: str | None = None
    disposition: str | None = None
    input_log: str | None = None
    status: int | None = None
    postage: float | None = None
    service_charge: float | None = None
    postage_bot_service: float | None = None
    member: MsgMember | None = None
    hotline: MsgHotline | None = None
    call_collected_data: tuple[MsgCollected, ...] = ()
    answer_at: int | None = None
    end_call_at: int | None = None
    campaign_name: str | None = None
    campaign_code: str | None = None
    campaign_group_name: str | None = None
    campaign_group_code: str | None = None
    template_script_name: str | None = None
    template_script_code: str | None = None
    voice_text: str | None = None
    create_at: int | None = None
    bot_id: str | None = None
    trans_id: str | None = None
    create_by: str | None = None
    score: float | None = None
    is_record: bool | None = None


class MsgEnvelope(msgspec.Struct):
    status: int
    error: int
    message: str
    data: list[MsgRecord]


def page_body(page_size: int) -> bytes:
    """One ``getAll`` answer of generated records, as the fake server sends it."""
    records = generate_records(page_size, seed=7)
    return orjson.dumps({"status": 1, "error": 0, "message": "Thành công", "data": records})


def decoders(body: bytes) -> dict[str, Callable[[], object]]:
    """Ways to turn ``body`` into records, each a no-argument callable (label -> callable)."""
    request = Request("getAll", {}, page=1)
    msgspec_decoder = msgspec.json.Decoder(MsgEnvelope)

    def vbot_cdr() -> object:
        return read_records(request, read_response(request, 200, {}, body))

    def with_converter() -> object:
        return [_structure_with_converter(item) for item in orjson.loads(body)["data"]]

    def vbot_cdr_with_json() -> object:
        return read_records(request, json.loads(body)["data"])

    return {
        "orjson.loads (dicts, no types)": lambda: orjson.loads(body),
        "json.loads (dicts, no types)": lambda: json.loads(body),
        "msgspec typed decoder (C)": lambda: msgspec_decoder.decode(body),
        "vbot_cdr: orjson + CallRecords": vbot_cdr,
        "vbot_cdr with json.loads instead": vbot_cdr_with_json,
        "orjson + the cattrs converter alone": with_converter,
    }


def time_call(function: Callable[[], object], *, seconds: float = 0.2) -> float:
    """Median seconds of one call of ``function``, over about ``seconds`` of repeats."""
    function()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    times.sort()
    return times[len(times) // 2]
