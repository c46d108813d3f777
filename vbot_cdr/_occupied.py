"""Windows planned from the data: count a stretch of windows once, split only where calls are.

A sync over months in one-day windows would otherwise ask ``countAll`` once a day, mostly for
days without calls. `occupied_windows` counts a whole stretch of the planned windows as one
range first: a stretch whose count is 0 costs that one request and is passed over as a whole;
one with calls is split in halves, each counted in turn, down to the single windows that hold
calls, as the repair narrows a range (`_reconcile`). Where calls are dense (both halves of a
stretch hold calls, and the stretch at least as many calls as windows), halving would not
pay: its windows are counted one by one, as a plan without this step does, two counts more.

Every decision rests on a count of that very range, never on a difference of two counts, so a
call written meanwhile is never skipped: a stretch is passed over only when the server said
it holds nothing. Each window read is counted last, just before its pages are fetched.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Final

__all__ = ["STRETCH_WINDOWS", "occupied_windows"]

#: The most planned windows counted as one stretch (about 11 years of one-day windows);
#: windows are taken from the plan this many at a time, so a long plan is never held whole.
STRETCH_WINDOWS: Final = 4096


async def occupied_windows(
    windows: Iterable[tuple[int, int]],
    count: Callable[[int, int], Awaitable[int]],
    *,
    stretch: int = STRETCH_WINDOWS,
) -> AsyncGenerator[tuple[int, int, int, int], None]:
    """``(start, end, calls, covered)``, oldest first, covering ``windows`` in order.

    Args:
        windows: Consecutive windows ``(a, b)``, each ``b`` the next one's ``a``, oldest first.
        count: The calls of the range from ``start`` to ``end`` (``countAll``).
        stretch: The most windows counted as one range.

    Yields:
        Either one window of ``windows`` with its count (``covered`` 1, ``calls`` >= 0), or a
        stretch of ``covered`` consecutive windows from the first's start to the last's end
        whose count was 0 (``calls`` 0), to be passed over.

    Raises:
        Whatever ``count`` raises.
    """
    planned = iter(windows)
    while chunk := list(itertools.islice(planned, stretch)):
        # Stretches of chunk indices [lo, hi) still to look at, the oldest on top, each with
        # its count if just taken (else it is counted when its turn comes).
        todo: list[tuple[int, int, int | None]] = [(0, len(chunk), None)]
        while todo:
            lo, hi, calls = todo.pop()
            start, end = chunk[lo][0], chunk[hi - 1][1]
            if calls is None:
                calls = await count(start, end)
            if hi - lo == 1 or calls == 0:
                yield start, end, calls, hi - lo
                continue
            mid = lo + (hi - lo) // 2
            older = await count(chunk[lo][0], chunk[mid - 1][1])
            if older and calls > older and calls >= hi - lo:
                # Calls in both halves, and as many as windows or more: most windows may
                # hold some, so halving would not pay; each is counted on its own.
                todo += [(i, i + 1, None) for i in reversed(range(lo, hi))]
            else:
                # The newer half is counted when its turn comes: a difference of two counts
                # never passes a stretch over.
                todo += [(mid, hi, None), (lo, mid, older)]
