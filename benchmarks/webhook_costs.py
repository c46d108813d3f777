"""The webhook receiver's own costs, without HTTP, for the checkout TREE (run by
``benchmarks/webhooks.py --in-process [--baseline TREE]``, one process per checkout).

CPU per body of reading it (`parse_webhook`, and `pushed_call` where the tree has it), and
CPU and wall time per call of a pushed group's upsert + COMMIT into the PostgreSQL database
URL, in groups of 1, 16 and 64.

Usage: python benchmarks/webhook_costs.py TREE URL
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, sys.argv[1])  # before anything imports vbot_cdr

import orjson

import vbot_cdr._webhooks as webhooks
from vbot_cdr._sinks._backends import open_database
from vbot_cdr._sinks._columns import RECORD_COLUMNS
from vbot_cdr._sinks._url import parse_database_url
from vbot_cdr.testing._data import RecordGenerator
from vbot_cdr.testing._pusher import webhook_body


def per_body(read: Callable[[bytes], Any], bodies: list[bytes]) -> float:
    """The median over 5 passes of the CPU time of ``read`` a body, in µs."""
    passes = []
    for _ in range(5):
        started = time.thread_time()
        for body in bodies:
            read(body)
        passes.append((time.thread_time() - started) / len(bodies) * 1e6)
    return statistics.median(passes)


def main(url: str) -> None:
    generator = RecordGenerator(seed=9, id_prefix="COST")
    bodies = [orjson.dumps(webhook_body(generator.record(i))) for i in range(3200)]
    print(f"parse_webhook: {per_body(webhooks.parse_webhook, bodies[:2000]):.0f} µs of CPU a body")
    fast = getattr(webhooks, "pushed_call", None)  # not in a tree from before it
    if fast is not None:
        print(f"pushed_call: {per_body(fast, bodies[:2000]):.0f} µs of CPU a body")
    calls = [fast(body) if fast else webhooks.parse_webhook(body).record for body in bodies]
    database = open_database(parse_database_url(url), "vbot_calls", RECORD_COLUMNS)

    def push(part: list[Any], group: int) -> None:
        for at in range(0, len(part), group):
            database.upsert(RECORD_COLUMNS, part[at : at + group], pushed=True)
            database.commit_pushed()

    try:
        for group in (1, 16, 64):
            push(calls[: group * 8], group)  # warm: psycopg prepares a statement run 5 times
            timed = calls[group * 8 : 320 if group == 1 else 3200]
            started, wall = time.thread_time(), time.perf_counter()
            push(timed, group)
            cpu = (time.thread_time() - started) / len(timed) * 1e6
            elapsed = (time.perf_counter() - wall) / len(timed) * 1e6
            print(f"group of {group}: {cpu:.0f} µs of CPU, {elapsed:.0f} µs of wall a call")
    finally:
        database.finish()


if __name__ == "__main__":
    main(sys.argv[2])
