"""Stream every record of a fake server with `iter_calls` and report this process's memory.

Usage: ``python benchmarks/memory_probe.py BASE_URL TOKEN [--tracemalloc]``

Run once per size, each in a fresh process, so that the peak belongs to that stream alone.
Prints one JSON line: records streamed, seconds, peak RSS, the RSS before streaming, and (with
``--tracemalloc``) the peak of Python allocations made while streaming.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import tracemalloc

from vbot_cdr import VBotClient

PAGE_SIZE = 500
CONCURRENCY = 8


def rss_mib() -> float:
    """The resident set size of this process now, in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def stream(base_url: str, token: str, trace: bool) -> dict[str, float]:
    async with VBotClient(token, base_url=base_url, page_size=PAGE_SIZE) as client:
        await client.count_calls()  # the session is open before the baseline is taken
        before = rss_mib()
        if trace:
            tracemalloc.start()
        start = time.perf_counter()
        n = 0
        async with client.iter_calls(concurrency=CONCURRENCY) as calls:
            async for record in calls:
                n += 1
                del record
        seconds = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else float("nan")
        tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "records": n,
        "seconds": seconds,
        "rss_before_mib": before,
        "peak_rss_mib": peak,
        "traced_peak_mib": traced,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("token")
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(stream(args.base_url, args.token, args.tracemalloc))))


if __name__ == "__main__":
    main()
