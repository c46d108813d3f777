"""`fan_out`: one request per item of a stream of batches, a bounded number at a time.

The bulk reads (`iter_conversations`, `download_recordings`) page through calls and make
one request per call. Here the calls are read by one task, handed to ``width`` workers
through a small queue, and the results handed back through another: at most ``width``
requests run, and at most a few pages of calls and ``width`` results are held, however many
calls there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, TypeVar, Union

__all__ = ["fan_out"]

A = TypeVar("A")
B = TypeVar("B")

#: What a worker says when the items run out.
_DONE: Final = object()


class _Failed:
    """A failure of the feeder or of a worker, handed to the consumer to raise."""

    def __init__(self, error: BaseException):
        self.error = error


async def fan_out(
    batches: AsyncIterator[Sequence[A]],
    fetch: Callable[[A], Awaitable[B]],
    *,
    width: int,
) -> AsyncGenerator[B, None]:
    """Yield ``await fetch(item)`` for every item of every batch, as each one completes.

    At most ``width`` fetches run at once. Items are drawn from ``batches`` only as workers
    free up (a queue of ``width`` items between them), so memory does not grow with the
    number of items.

    Raises:
        Exception: The first failure of ``batches`` or of a ``fetch``, as raised; the
            fetches still running are cancelled (and awaited) first. Closing the generator
            early cancels them too.
    """
    items: asyncio.Queue[object] = asyncio.Queue(maxsize=width)
    results: asyncio.Queue[object] = asyncio.Queue(maxsize=width)

    async def feed() -> None:
        try:
            async for batch in batches:
                for item in batch:
                    await items.put(item)
        # Relayed, not swallowed: the consumer raises it as it is (a bug included).
        except Exception as exc:  # noqa: BLE001
            await results.put(_Failed(exc))
            return
        for _ in range(width):
            await items.put(_DONE)

    async def work() -> None:
        while (item := await items.get()) is not _DONE:
            try:
                result: Union[B, _Failed] = await fetch(item)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 (relayed to the consumer, as above)
                result = _Failed(exc)
            await results.put(result)
            if isinstance(result, _Failed):
                return
        await results.put(_DONE)

    tasks = [asyncio.create_task(feed())] + [asyncio.create_task(work()) for _ in range(width)]
    try:
        working = width
        while working:
            result = await results.get()
            if result is _DONE:
                working -= 1
            elif isinstance(result, _Failed):
                raise result.error
            else:
                yield result  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
