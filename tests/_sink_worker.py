"""A database loader run as a child process by test_sinks.py, so that it can really be killed.

It runs `sync_to_database` from a fake server into URL with the settings of `_sync_worker`.
Given ``--pause POINT --nth N`` it prints ``ready`` and blocks at the N-th window's commit:

- ``before``: the window's rows are written in the open transaction, the state is not;
- ``during``: the state row is written too, the COMMIT not yet sent;
- ``after``: the COMMIT has returned.

Usage: python _sink_worker.py BASE_URL TOKEN URL NOW [--pause POINT --nth N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from tests._sync_worker import LOOKBACK, SETTLE, START, WINDOW
from vbot_cdr import CallFilter, VBotClient, sync_to_database
from vbot_cdr._sinks._backends import Database


def hang() -> None:
    print("ready", flush=True)
    threading.Event().wait()  # until the test kills us


def pause_at(point: str, nth: int) -> None:
    """Wrap the commit of the state so that the ``nth`` one hangs at ``point``."""
    saves = 0
    save_state = Database.save_state

    def saving(self: Database, fingerprint: str, document: str) -> None:
        nonlocal saves
        saves += 1
        if point == "before" and saves == nth:
            hang()
        save_state(self, fingerprint, document)
        if point == "after" and saves == nth:
            hang()

    def hanging_before(commit: Callable[[Database], None]) -> Callable[[Database], None]:
        def committing(self: Database) -> None:
            if point == "during" and saves == nth:
                hang()
            commit(self)

        return committing

    Database.save_state = saving  # type: ignore[method-assign]
    for backend in Database.__subclasses__():
        backend.commit = hanging_before(backend.commit)  # type: ignore[method-assign]


async def run(args: argparse.Namespace) -> None:
    now = dt.datetime.fromtimestamp(args.now, dt.timezone.utc)
    async with VBotClient(args.token, base_url=args.base_url, clock=lambda: now) as client:
        await sync_to_database(
            client,
            args.url,
            CallFilter(start_date=START),
            lookback=LOOKBACK,
            settle=SETTLE,
            window=WINDOW,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("base_url", "token", "url"):
        parser.add_argument(name)
    parser.add_argument("now", type=int)
    parser.add_argument("--pause", choices=["before", "during", "after"])
    parser.add_argument("--nth", type=int, default=1)
    args: Any = parser.parse_args()
    if args.pause:
        pause_at(args.pause, args.nth)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
