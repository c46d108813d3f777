"""Run the project's fake VBot server in its own process, for the benchmarks.

Usage: ``python benchmarks/fake_server.py --count 1000000 --latency 0.02``

Prints one JSON line ``{"base_url": ..., "token": ...}`` once it listens, then serves until
its standard input closes (the parent process exiting closes it too), so a benchmark never
leaves a server behind.

Below ``--lazy-above`` records the store is generated up front, so that serving a page costs
the server little CPU (the latency-bound figures must measure the client, not the fake).
Above it, `FakeVBotServer` computes records on demand, so a million-record store costs the
server no memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from vbot_cdr.testing import FakeVBotServer, generate_records


async def serve(count: int, latency: float, max_page_size: int, lazy_above: int) -> None:
    options = {"latency": latency, "max_page_size": max_page_size}
    records = generate_records(count) if count <= lazy_above else None
    async with FakeVBotServer(records, count=count, **options) as server:
        print(json.dumps({"base_url": server.base_url, "token": server.token}), flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the parent closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--max-page-size", type=int, default=1000)
    parser.add_argument("--lazy-above", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(serve(args.count, args.latency, args.max_page_size, args.lazy_above))


if __name__ == "__main__":
    main()
