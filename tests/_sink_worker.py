"""A database loader run as a child process by test_sinks.py, so that it can really be killed.

It runs `sync_to_database` from a fake server into URL with the settings of `_sync_worker`.
Given ``--pause POINT --nth N`` it runs the same load (`DatabaseSync`) into a subclass of the
database's backend that prints ``ready`` and blocks at the N-th window's commit:

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
from typing import Any

from tests._sync_worker import LOOKBACK, SETTLE, START, WINDOW
from vbot_cdr import CallFilter, DatabaseSync, VBotClient, sync_to_database
from vbot_cdr._sinks import DatabaseStateStore, parse_database_url
from vbot_cdr._sinks._backends import _BACKENDS, Database
from vbot_cdr._sinks._columns import RECORD_COLUMNS


def hang() -> None:
    print("ready", flush=True)
    threading.Event().wait()  # until the test kills us


def pausing(backend: type[Database], point: str, nth: int) -> type[Database]:
    """``backend``, made to hang at ``point`` of the ``nth`` commit of a window."""

    class Pausing(backend):  # type: ignore[valid-type,misc]
        saves = 0

        def commit_with_state(self, fingerprint: str, document: str) -> None:
            self.saves += 1
            if point == "before" and self.saves == nth:
                hang()
            super().commit_with_state(fingerprint, document)
            if point == "after" and self.saves == nth:
                hang()

        def commit(self) -> None:
            if point == "during" and self.saves == nth:
                hang()
            super().commit()

    return Pausing


async def run(args: argparse.Namespace) -> None:
    now = dt.datetime.fromtimestamp(args.now, dt.timezone.utc)
    options: Any = {"lookback": LOOKBACK, "settle": SETTLE, "window": WINDOW}
    async with VBotClient(args.token, base_url=args.base_url, clock=lambda: now) as client:
        if not args.pause:
            await sync_to_database(client, args.url, CallFilter(start_date=START), **options)
            return
        # The same load as sync_to_database's, into a database that hangs where asked.
        target = parse_database_url(args.url)
        database = pausing(_BACKENDS[target.backend], args.pause, args.nth)(target, "vbot_calls")
        database.prepare(RECORD_COLUMNS)
        store = DatabaseStateStore(database)
        sync = client.sync(store, CallFilter(start_date=START), **options)
        async with DatabaseSync(sync, database) as load:
            await load.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("base_url", "token", "url"):
        parser.add_argument(name)
    parser.add_argument("now", type=int)
    parser.add_argument("--pause", choices=["before", "during", "after"])
    parser.add_argument("--nth", type=int, default=1)
    args: Any = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
