"""A loader run as a child process by test_sync.py, so that it can really be killed.

It syncs from a fake server, appends each call's ``trans_id`` and ``create_at`` to a file,
and commits after each window once that file is fsynced. Given ``--hang-after N``, it prints
``ready`` after the N-th call (its line durable) and blocks there, mid-window, to be killed.

Usage: python _sync_worker.py BASE_URL TOKEN STATE OUT NOW [--hang-after N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
from typing import TextIO

from vbot_cdr import CallFilter, VBotClient

#: The sync's settings, shared with the tests that read the result.
START = 1_764_547_200
LOOKBACK = dt.timedelta(minutes=10)
SETTLE = dt.timedelta(minutes=2)
WINDOW = dt.timedelta(hours=1)


async def run(args: argparse.Namespace, out: TextIO) -> None:
    now = dt.datetime.fromtimestamp(args.now, dt.timezone.utc)
    async with VBotClient(args.token, base_url=args.base_url, clock=lambda: now) as client:
        sync = client.sync(
            args.state,
            CallFilter(start_date=START),
            lookback=LOOKBACK,
            settle=SETTLE,
            window=WINDOW,
        )
        async with sync:  # commits on a clean exit
            yielded = 0
            async for record in sync:
                if sync.committable:  # the calls before this one are a whole window
                    out.flush()
                    os.fsync(out.fileno())
                    await sync.commit()
                out.write(f"{record.trans_id} {record.create_at}\n")
                yielded += 1
                if yielded == args.hang_after:
                    out.flush()
                    os.fsync(out.fileno())
                    print("ready", flush=True)
                    signal.pause()  # until the test kills us
            out.flush()  # durable before the clean exit commits
            os.fsync(out.fileno())


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("base_url", "token", "state", "out"):
        parser.add_argument(name)
    parser.add_argument("now", type=int)
    parser.add_argument("--hang-after", type=int, default=None)
    args = parser.parse_args()
    with open(args.out, "a", encoding="utf-8") as out:
        asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
