"""``vbot-cdr serve-fake``: the fake VBot server on loopback until Ctrl-C, optionally with
new calls arriving every second as a live feed for ``sync``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ._options import ServeFakeOptions
from ._settings import ENV_API_KEY, ENV_BASE_URL, ENV_TOKEN
from ._status import CommandError, Context

if TYPE_CHECKING:
    from vbot_cdr.testing import FakeVBotServer

__all__ = ["run_serve_fake"]

logger = logging.getLogger("vbot_cdr")


async def run_serve_fake(options: ServeFakeOptions, context: Context) -> int:
    """Serve until a signal stops it; print the URL and credential as two shell lines."""
    # Imported here: the fake server (and aiohttp.web) is for --demo and serve-fake only.
    from vbot_cdr.testing import FakeVBotServer

    server = FakeVBotServer(
        count=options.records,
        seed=options.seed,
        token=options.token,
        api=options.api,
        first_page=options.first_page,
        latency=options.latency,
        max_page_size=options.max_page_size,
        fault_mix=options.faults,
        host=options.host,
        port=options.port,
        webhook_url=options.webhook_url,
        webhook_header=options.webhook_header,
        webhook_habits=options.webhook_habits,
    )
    try:
        async with server:
            # Shell syntax, so the two lines can be pasted into another terminal as they are.
            print(f"export {ENV_BASE_URL}={server.base_url}")
            if server.api == "v2":
                print(f"export {ENV_TOKEN}={server.token}", flush=True)
            else:
                print(f"export {ENV_API_KEY}={server.api_key}", flush=True)
            if server.api == "v3-legacy":
                context.log.say("it speaks v3-legacy: pass --api v3-legacy to the client commands")
            rate = options.arrivals_per_second
            arriving = f", {rate:g} new calls a second" if rate else ""
            if options.webhook_url:
                arriving += f", each pushed to {options.webhook_url}"
            context.log.say(
                f"serving {options.records} fake calls on {server.base_url}{arriving}; Ctrl-C stops"
            )
            if rate:
                await _arrive_every_second(server, rate)
            await asyncio.Event().wait()
    except OSError as exc:
        raise CommandError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror}"
        ) from None
    except asyncio.CancelledError:
        if context.stopped_by is None:
            raise
    return 0


async def _arrive_every_second(server: FakeVBotServer, rate: float) -> None:
    """Write ``rate`` new calls a second into ``server``, created now, until cancelled."""
    due = 0.0
    while True:
        await asyncio.sleep(min(1.0, 1.0 / rate))
        due += rate * min(1.0, 1.0 / rate)
        if due >= 1:
            calls = server.arrive_now(int(due))
            due -= int(due)
            logger.debug("serve-fake: %d new calls, the last %s", len(calls), calls[-1]["trans_id"])
