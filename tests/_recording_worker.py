"""A downloader run as a child process by test_recordings.py, so that it can really be killed.

It downloads the recordings of every call of a fake server into DIR and prints ``ready``
once N of them are in the manifest, then goes on downloading until it is killed (or done).

Usage: python _recording_worker.py BASE_URL TOKEN DIR --ready-after N
"""

from __future__ import annotations

import argparse
import asyncio

from vbot_cdr import VBotClient


async def run(args: argparse.Namespace) -> None:
    client = VBotClient(args.token, base_url=args.base_url)
    async with client, client.download_recordings(args.dir, concurrency=4) as download:
        done = 0
        async for _ in download:
            done += 1
            if done == args.ready_after:
                print("ready", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("base_url", "token", "dir"):
        parser.add_argument(name)
    parser.add_argument("--ready-after", type=int, required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
