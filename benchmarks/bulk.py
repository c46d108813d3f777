"""Bulk reads: `iter_conversations` and `download_recordings` against a hand-written loop.

Usage (from the repository root)::

    python benchmarks/bulk.py            # a few minutes; prints the tables (Markdown)
    python benchmarks/bulk.py --quick    # about a minute, smaller sizes

How it measures:

- The fake server (`FakeVBotServer`, 50 ms before each answer, recordings of 8,000 bytes
  per second of call) runs in its own process, one per number of calls.
- Every measurement is a fresh client process (this script with ``--client``), which
  reports its wall time (imports and start-up excluded), its requests, the bytes written
  and its peak RSS.
- *hand* is the loop users write: the calls' pages gathered under a semaphore, then one
  request per call gathered under the same semaphore (``orjson.loads`` of the conversation
  envelope; a recording streamed to a file): no retries, no manifest, no checksum, no fsync.
- Repetitions are interleaved (each runs every case once, both clients side by side,
  alternating which goes first); the table gives medians with (min-max), and the ratio
  of the library to the hand loop inside each repetition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LATENCY = 0.05
PAGE_SIZE = 100
HEADS = "peak RSS (MiB) | wall: library / hand"


# -- the server process -----------------------------------------------------------------------


async def serve(count: int) -> None:
    from vbot_cdr.testing import FakeVBotServer, RecordingHabits, generate_records

    records = generate_records(count)  # up front: a page costs the server little CPU
    habits = RecordingHabits(bytes_per_second=8000)
    async with FakeVBotServer(records, latency=LATENCY, recordings=habits) as server:
        print(json.dumps({"base_url": server.base_url, "token": server.token}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextmanager
def server(count: int) -> Iterator[dict[str, str]]:
    """A fake server of ``count`` calls in its own process, until the block ends."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


# -- the clients -------------------------------------------------------------------------------


async def library(
    kind: str, base_url: str, token: str, concurrency: int, out: Path
) -> dict[str, int]:
    from vbot_cdr import VBotClient

    async with VBotClient(token, base_url=base_url, page_size=PAGE_SIZE) as client:
        if kind == "conversations":
            async with client.iter_conversations(concurrency=concurrency) as conversations:
                items = 0
                async for _ in conversations:
                    items += 1
            return {"items": items, "requests": conversations.stats.requests, "bytes": 0}
        async with client.download_recordings(out, concurrency=concurrency) as download:
            items = written = 0
            async for recording in download:
                items += recording.file is not None
                written += recording.bytes or 0
        return {"items": items, "requests": download.stats.requests, "bytes": written}


async def hand(kind: str, base_url: str, token: str, concurrency: int, out: Path) -> dict[str, int]:
    import aiohttp
    import orjson

    headers = {"Authorization": f"Bearer {token}"}
    cdr = base_url + "/api/campaignCall/cdr/"
    semaphore = asyncio.Semaphore(concurrency)
    requests = 0
    async with aiohttp.ClientSession(headers=headers) as session:

        async def get_json(url: str, params: dict[str, str]) -> Any:
            nonlocal requests
            async with semaphore, session.get(url, params=params) as response:
                requests += 1
                return orjson.loads(await response.read())

        total = (await get_json(cdr + "countAll", {}))["data"]
        pages = range(1, (total + PAGE_SIZE - 1) // PAGE_SIZE + 1)
        answers = await asyncio.gather(
            *(get_json(cdr + "getAll", {"page": str(p), "size": str(PAGE_SIZE)}) for p in pages)
        )
        calls = [call for answer in answers for call in answer["data"]]
        if kind == "conversations":
            url = cdr + "getBotConversation"
            conversations = await asyncio.gather(
                *(get_json(url, {"trans_id": call["trans_id"]}) for call in calls)
            )
            return {"items": len(conversations), "requests": requests, "bytes": 0}

        async def download(trans_id: str) -> int:
            nonlocal requests
            url = f"{base_url}/api/crm/historycall/record/{trans_id}"
            async with semaphore, session.get(url) as response:
                requests += 1
                if response.status != 200:
                    return -1
                written = 0
                with open(out / f"{trans_id}.audio", "wb") as file:  # noqa: ASYNC230
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        file.write(chunk)
                        written += len(chunk)
                return written

        sizes = await asyncio.gather(*(download(c["trans_id"]) for c in calls if c["is_record"]))
        found = [size for size in sizes if size >= 0]
        return {"items": len(found), "requests": requests, "bytes": sum(found)}


def run_client(args: argparse.Namespace) -> None:
    import aiohttp  # noqa: F401  (imports before the clock starts, for both clients)
    import orjson  # noqa: F401

    import vbot_cdr  # noqa: F401

    out = Path(tempfile.mkdtemp(prefix="vbot-bulk-"))
    run = library if args.client == "library" else hand
    try:
        started = time.perf_counter()
        result = asyncio.run(run(args.kind, args.base_url, args.token, args.concurrency, out))
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**result, "wall": wall, "rss_mib": peak}))


def measure(client: str, kind: str, site: dict[str, str], concurrency: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--client", client, "--kind", kind]
    command += ["--base-url", site["base_url"], "--token", site["token"]]
    command += ["--concurrency", str(concurrency)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- the report --------------------------------------------------------------------------------


def cases(quick: bool) -> list[tuple[str, int, int]]:
    """``(kind, calls, concurrency)``: about five seconds of latency each (quick: one)."""
    seconds = 1 if quick else 5
    conversations = [("conversations", int(seconds / LATENCY) * c, c) for c in (1, 8, 32)]
    # About 55 % of the generated calls have a recording.
    recordings = [("recordings", int(seconds / LATENCY / 0.55) * c, c) for c in (1, 8, 32)]
    return conversations + recordings


def spread(values: list[float], form: str) -> str:
    return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"


def report(kind: str, calls: int, concurrency: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    lib, ref = runs["library"], runs["hand"]
    ratios = [a["wall"] / b["wall"] for a, b in zip(lib, ref, strict=True)]
    rows = []
    for name, measured in (("library", lib), ("hand", ref)):
        walls = [m["wall"] for m in measured]
        if kind == "conversations":
            rate = spread([m["items"] / m["wall"] for m in measured], ",.0f") + " conv/s"
        else:
            rate = spread([m["bytes"] / m["wall"] / 1e6 for m in measured], ".1f") + " MB/s"
        ratio = f"**{spread(ratios, '.2f')}**" if name == "library" else ""
        rows.append(
            f"| {kind} | {calls:,} calls, c{concurrency} | {name} | {measured[0]['items']:,} "
            f"| {measured[0]['requests']:,} | {spread(walls, '.2f')} | {rate} "
            f"| {spread([m['rss_mib'] for m in measured], '.0f')} | {ratio} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("conversations", "recordings"), default=None)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--big", action="store_true", help="also 10,000 conversations, 1,000 recordings"
    )
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    if args.client is not None:
        run_client(args)
        return
    plan = [case for case in cases(args.quick) if args.only in (None, case[0])]
    if args.big:
        plan += [("conversations", 10_000, 32), ("recordings", 1_820, 8)]
    print(f"| kind | case | client | items | requests | wall (s) | rate | {HEADS} |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, calls, concurrency in plan:
        runs: dict[str, list[dict[str, Any]]] = {"library": [], "hand": []}
        with server(calls) as site:
            for repetition in range(args.runs if calls < 10_000 else 1):
                order = ["library", "hand"] if repetition % 2 == 0 else ["hand", "library"]
                for client in order:
                    runs[client].append(measure(client, kind, site, concurrency))
        print(report(kind, calls, concurrency, runs), flush=True)


if __name__ == "__main__":
    main()
