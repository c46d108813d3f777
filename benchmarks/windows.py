"""Windows planned from the data: one-day windows against one window, on sparse data.

Usage: ``python benchmarks/windows.py [--calls 20000] [--runs 5] [--days 365]``

The fake server (its own process, pinned apart as in ``run.py``) holds ``--calls`` calls 37 s
apart (about 2,300 a day, so 20,000 fill the last 9 days); the read covers the ``--days``
days up to the last call, as a sync that starts a year back does. Each repetition reads it
twice, side by side in one client process: in one-day windows (the default of ``sync`` and
the CLI) and as one window. Prints each read's ``countAll`` and ``getAll`` requests, and the
ratio of their CPU and wall time taken inside each repetition, median (min-max).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import time

from run import Case, fake_server, pinning

from vbot_cdr import CallFilter, VBotClient
from vbot_cdr.testing._data import DEFAULT_START

SPACING = 37  # seconds between the fake server's generated calls


async def read(
    base_url: str, token: str, the_filter: CallFilter, window: dt.timedelta | None
) -> tuple[float, float, int, int, int]:
    """(CPU s, wall s, countAll requests, getAll requests, calls) of one read."""
    async with VBotClient(token, base_url=base_url, page_size=500) as client:
        cpu, wall = time.process_time(), time.perf_counter()
        async with client.iter_calls(the_filter, window=window, concurrency=8) as calls:
            n = sum([1 async for _ in calls])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stats = calls.stats
    return cpu, wall, stats.requests - stats.pages, stats.pages, n


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    server_cores, client_cores = pinning()
    if client_cores is not None:
        os.sched_setaffinity(0, client_cores)
    last = DEFAULT_START + (args.calls - 1) * SPACING
    the_filter = CallFilter(start_date=last - args.days * 86_400, end_date=last)
    print(f"Load average before: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())}")
    with fake_server(Case("windows", args.calls, 500, 8), server_cores) as (base_url, token):
        results: dict[str, list[tuple[float, float, int, int, int]]] = {"1d": [], "one": []}
        for repetition in range(args.runs):
            order = ("1d", "one") if repetition % 2 == 0 else ("one", "1d")
            for name in order:
                window = dt.timedelta(days=1) if name == "1d" else None
                results[name].append(asyncio.run(read(base_url, token, the_filter, window)))
    for name, runs in results.items():
        _, _, counts, pages, calls = runs[0]
        assert calls == args.calls, (name, calls)
        print(f"{name}: countAll {counts}, getAll {pages}, CPU s {spread([r[0] for r in runs])}")
    pairs = list(zip(results["1d"], results["one"], strict=True))
    print(
        f"one-day windows / one window: CPU **{spread([a[0] / b[0] for a, b in pairs])}**, "
        f"wall {spread([a[1] / b[1] for a, b in pairs])}"
    )
    print(f"Load average after: {'{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())}")


if __name__ == "__main__":
    main()
