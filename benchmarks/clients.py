"""One measured client run, in a fresh process: `iter_calls`, or the loop users write by hand.

Usage: ``python benchmarks/clients.py {iter_calls,hand,hand_typed} BASE_URL TOKEN --page-size 500
--concurrency 8 --expect 50000``

Streams every record of the fake server at ``BASE_URL`` once and prints one JSON line: the
records seen, the wall and CPU seconds of the stream (this process only, imports and start-up
excluded), the resident set size before it and the peak. Each client does the same work per
record (it counts it) and starts cold (no pooled connection), as a nightly job does.

Only public names of `vbot_cdr` are used here, so the benchmark measures what users get.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from typing import Any

import aiohttp
import attrs
import msgspec
import orjson

from vbot_cdr import CallRecord, CollectedField, Hotline, Member, VBotClient

GET_ALL = "/api/campaignCall/cdr/getAll"
COUNT_ALL = "/api/campaignCall/cdr/countAll"


async def library(base_url: str, token: str, *, page_size: int, concurrency: int) -> int:
    """Every record through `iter_calls`: typed, validated `CallRecord`s, in order, once each."""
    n = 0
    async with (
        VBotClient(token, base_url=base_url, page_size=page_size) as client,
        client.iter_calls(concurrency=concurrency) as calls,
    ):
        async for _record in calls:
            n += 1
    return n


async def hand_written(base_url: str, token: str, *, page_size: int, concurrency: int) -> int:
    """The loop users write with aiohttp: count, then ``gather`` every page under a semaphore,
    each page decoded with ``orjson.loads`` into dicts and its records used as they arrive.

    No types, no validation, no order, no retries, no de-duplication: the floor a client pays
    for the same records over the same HTTP.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base_url, headers=headers) as session:

        async def get(path: str, params: dict[str, str] | None = None) -> Any:
            async with semaphore, session.get(path, params=params) as response:
                return orjson.loads(await response.read())["data"]

        async def page(number: int) -> int:
            n = 0
            for _record in await get(GET_ALL, {"page": str(number), "size": str(page_size)}):
                n += 1
            return n

        total = await get(COUNT_ALL)
        pages = range(1, -(-total // page_size) + 1)
        return sum(await asyncio.gather(*(page(number) for number in pages)))


def _struct(cls: type, nested: dict[str, Any]) -> Any:
    """A msgspec struct with ``cls``'s fields (the attrs class's own types for nested ones)."""
    fields = [
        (f.name, nested.get(f.name, Any), f.default)
        for f in attrs.fields(cls)
        if f.name != "extras"
    ]
    return msgspec.defstruct(f"Wire{cls.__name__}", fields, gc=False)


_WireMember = _struct(Member, {})
_WireHotline = _struct(Hotline, {})
_WireCollected = _struct(CollectedField, {})
_WireRecord = _struct(
    CallRecord,
    {
        "member": _WireMember | None,
        "hotline": _WireHotline | None,
        "call_collected_data": list[_WireCollected],
    },
)
_WirePage = msgspec.defstruct("WirePage", [("data", list[_WireRecord])])
_WireCount = msgspec.defstruct("WireCount", [("data", int)])


async def hand_typed(base_url: str, token: str, *, page_size: int, concurrency: int) -> int:
    """The typed loop users could write with this stack: the same ``gather`` as `hand_written`,
    each page decoded by msgspec into structs, each struct made a `CallRecord` (attrs) by its
    ``__init__``, nested `Member`, `Hotline` and `CollectedField` included.

    No validation beyond msgspec's types, no order, no retries, no de-duplication: the floor
    of a typed attrs record over the same HTTP.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    semaphore = asyncio.Semaphore(concurrency)
    page_decoder = msgspec.json.Decoder(_WirePage)
    count_decoder = msgspec.json.Decoder(_WireCount)
    asdict = msgspec.structs.asdict

    def record(wire: Any) -> CallRecord:
        fields = asdict(wire)
        if wire.member is not None:
            fields["member"] = Member(**asdict(wire.member))
        if wire.hotline is not None:
            fields["hotline"] = Hotline(**asdict(wire.hotline))
        fields["call_collected_data"] = tuple(
            CollectedField(**asdict(c)) for c in wire.call_collected_data
        )
        return CallRecord(**fields)

    async with aiohttp.ClientSession(base_url, headers=headers) as session:

        async def page(number: int) -> int:
            params = {"page": str(number), "size": str(page_size)}
            async with semaphore, session.get(GET_ALL, params=params) as response:
                wire = page_decoder.decode(await response.read()).data
            n = 0
            for _record in map(record, wire):
                n += 1
            return n

        async with semaphore, session.get(COUNT_ALL) as response:
            total = count_decoder.decode(await response.read()).data
        pages = range(1, -(-total // page_size) + 1)
        return sum(await asyncio.gather(*(page(number) for number in pages)))


CLIENTS = {"iter_calls": library, "hand": hand_written, "hand_typed": hand_typed}


def rss_mib() -> float:
    """The resident set size of this process now, in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("base_url")
    parser.add_argument("token")
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True, help="records the server holds")
    args = parser.parse_args()
    run = CLIENTS[args.client](
        args.base_url, args.token, page_size=args.page_size, concurrency=args.concurrency
    )
    before = rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    records = asyncio.run(run)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if records != args.expect:
        raise SystemExit(f"{args.client} streamed {records} records, expected {args.expect}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "records": records,
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_before_mib": before,
                "peak_rss_mib": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
