"""Verify and repair: an iteration's records match ``countAll``, or `IncompleteError`.

The paging stage (`_pagination.Paginator`) reads offsets, which servers serve in many ways:
capped sizes, deep pages answered empty, ties on ``create_at`` ordered anew on every request,
pages numbered from another base. When the records it handed out fall short of the count,
this stage finds out where and why, without trusting offsets again:

1. **Re-count** the range once: records deleted while paging are not a loss.
2. **Probe the page base** (one request of one record): a server numbering its pages from
   ``first_page - 1`` hides a page the client never asks for; that is reported, naming the
   option, since re-reading cannot reach it.
3. **Narrow by counting.** ``countAll`` with a date range is a checksum of any time range.
   Split the short range in two, count each half, and compare with what was handed out in
   it (the exactly-once stage's `Ledger`); descend only into the halves that come up short,
   until a range holds at most one page (or is one time unit wide). Read that range from its
   first page, where every server answers; the exactly-once stage lets through the records
   not handed out yet.

Cost, on the repair path only (a complete iteration never gets here): 1 re-count, 1 probe,
then 1 count per split (the other half is the difference) and a page per page of records
in each short range narrowed to at most two pages; a range whose read comes back short
(capped, or cut off deep) is split further. A range of one time unit holding
more ties than a page is asked in one page of its count (1 request), else paged; a server
that shuffles those ties and refuses the size cannot be read whole, and the iteration ends
in `IncompleteError` naming the instant.

Date ranges are inclusive at both ends, as the fake server reads them.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
from collections.abc import AsyncGenerator
from typing import Any

import attrs

from ._decoding import CallRow
from ._errors import APIError, IncompleteError
from ._exactly_once import ExactlyOnce
from ._models import CallFilter
from ._port import CallsPort, InFlightSlot
from ._stats import IterationStats

__all__ = ["Reconciler"]

logger = logging.getLogger("vbot_cdr")

#: The widest range a repair narrows from when the filter gives no dates.
_LATEST = 2**62
#: The most calls sharing one instant that a repair asks for in one page.
_MOST_TIES = 10_000


@attrs.define
class _Findings:
    """What the repair saw the server do, for the message of `IncompleteError`."""

    cap: int | None = None
    crowded: tuple[int, int] | None = None  # (create_at, calls) of a unit fuller than a page


class Reconciler:
    """The verify-and-repair stage of one range (a whole iteration, or one time window).

    Args:
        port: Counts and fetches.
        filter: The range's criteria; its ``start_date``/``end_date`` must be epoch ints.
        first_page: The number the client gives the first page.
        page_size: Records per page asked.
        in_flight: The in-flight limit the repair's requests enter.
        stats: Written here: ``recounts``, ``repair_pages``, ``repaired``, ``vanished``.
        scope: What the range is, for messages, when the iteration reads several (the
            criteria that vary: ``"campaign_code CMP_B"``); empty otherwise.
    """

    def __init__(
        self,
        port: CallsPort,
        filter: CallFilter,
        *,
        first_page: int,
        page_size: int,
        in_flight: InFlightSlot,
        stats: IterationStats,
        scope: str = "",
    ):
        self._scope = scope
        self._port = port
        self._filter = filter
        self._first_page = first_page
        self._size = page_size
        self._in_flight = in_flight
        self._stats = stats
        self._found = _Findings()
        self._expected = 0  # the re-count, once the repair has made it

    def _incomplete(self, message: str, **details: Any) -> IncompleteError:
        """`IncompleteError` of ``message``, saying which range when there are several."""
        return IncompleteError(f"{self._scope}: {message}" if self._scope else message, **details)

    def _range(self, lo: int, hi: int) -> CallFilter:
        return attrs.evolve(self._filter, start_date=lo, end_date=hi)

    async def _count(self, call_filter: CallFilter) -> int:
        self._stats.recounts += 1
        return await self._port.count(call_filter)

    async def _fetch(self, call_filter: CallFilter, page: int, size: int) -> list[CallRow]:
        self._stats.repair_pages += 1
        return await self._port.fetch(call_filter, page, size, self._in_flight)

    async def repair(self, total: int, once: ExactlyOnce) -> AsyncGenerator[list[CallRow], None]:
        """Yield the records of the range that ``once`` has not handed out; raise when some stay
        missing.

        Args:
            total: What ``countAll`` said before paging.
            once: The exactly-once stage; its ledger holds what the range handed out so far,
                and every record re-read here goes through it.

        Raises:
            IncompleteError: The range still holds records that were not handed out.
        """
        ledger = once.ledger
        if once.keyless and once.order_moved:
            raise self._incomplete(
                f"{once.keyless} calls without trans_id were read while the server's order "
                "moved (records came back at other offsets); calls without an id cannot be "
                "told apart, so that each was handed out once cannot be established",
                expected=total,
                yielded=len(ledger),
            )
        if len(ledger) >= total:
            return
        recount = self._expected = await self._count(self._filter)
        if len(ledger) >= recount:
            vanished = max(0, total - len(ledger))
            self._stats.vanished += vanished
            logger.warning(
                "countAll said %d records but the pages held %d; a re-count says %d: "
                "%d vanished while paging",
                total,
                len(ledger),
                recount,
                vanished,
            )
            return
        await self._check_page_base(once, recount)
        async with contextlib.aclosing(self._narrow(recount, once)) as found:
            async for records in found:
                yield records
        if len(ledger) < recount:
            raise self._incomplete(
                self._diagnosis(recount, len(ledger)), expected=recount, yielded=len(ledger)
            )

    async def _check_page_base(self, once: ExactlyOnce, expected: int) -> None:
        """One request of one record on the page before ``first_page``, where that exists."""
        before = self._first_page - 1
        if before < 0:
            return
        try:
            records = await self._fetch(self._filter, before, 1)
        except APIError:
            return  # the server refuses that page: it numbers from first_page, as assumed
        if records and records[0].trans_id and not once.knows(records[0]):
            raise self._incomplete(
                f"page {before} holds records that page {self._first_page} does not: the "
                f"server numbers its pages from {before}; set first_page={before}",
                expected=expected,
                yielded=len(once.ledger),
                endpoint="getAll",
                page=before,
            )

    async def _narrow(self, recount: int, once: ExactlyOnce) -> AsyncGenerator[list[CallRow], None]:
        ledger = once.ledger
        times = ledger.times()
        start, end = self._filter.start_date, self._filter.end_date
        lo = start if isinstance(start, int) else 0
        hi = end if isinstance(end, int) else _LATEST
        if not times:
            ranges = [(lo, hi, recount)]
        else:
            # Most of a range without dates is empty: count its outskirts once each and
            # narrow the span the records were seen in.
            ranges = []
            for a, b in ((lo, times[0] - 1), (times[-1] + 1, hi), (times[0], times[-1])):
                if a <= b:
                    ranges.append((a, b, await self._count(self._range(a, b))))
        split: set[tuple[int, int]] = set()  # ranges a read did not complete
        while ranges and len(ledger) < recount:
            lo, hi, count = ranges.pop()
            have = bisect.bisect_right(times, hi) - bisect.bisect_left(times, lo)
            if count <= have:
                continue
            # Reading costs a page per page of records; splitting, a count per half.
            if lo < hi and (count > 2 * self._size or (lo, hi) in split):
                mid = lo + (hi - lo) // 2
                older = await self._count(self._range(lo, mid))
                # The newer half's count follows: a sum that moved since is caught at the end.
                ranges += [(lo, mid, older), (mid + 1, hi, max(0, count - older))]
                continue
            noted = len(ledger)
            new, first_len = await self._read(lo, hi, count, once)
            for at in ledger.times(since=noted):
                bisect.insort(times, at)
            if new:
                self._stats.repaired += len(new)
                yield new
            have = bisect.bisect_right(times, hi) - bisect.bisect_left(times, lo)
            if 0 < first_len < min(count, self._size):
                # One page did not bring what it could: the server caps the size.
                self._found.cap = self._size = first_len
            if have < count and lo < hi:
                split.add((lo, hi))
                ranges.append((lo, hi, count))
            elif have < count and count > self._size and first_len >= self._size:
                # The instant held a page or more: ties the server orders anew each time.
                # (Fewer: the count is not backed by records, and the message says so.)
                self._found.crowded = (lo, count)

    async def _read(
        self, lo: int, hi: int, count: int, once: ExactlyOnce
    ) -> tuple[list[CallRow], int]:
        """Page the range ``[lo, hi]`` from its first page; its records ``once`` lets through.

        Stops at a short page, a page that brings nothing new, or one page past the count.
        A short first page is followed by one more request: records there mean the server
        caps the size; none, that the count is not backed by records.
        Returns the new records and the length of the first page when it was capped (else 0).
        """
        new: list[CallRow] = []
        first_len = 0
        if lo == hi and self._size < count <= _MOST_TIES:
            # Ties beyond a page: offsets within them mean nothing to a server that orders
            # them anew each time. Ask for all of them at once; a server may refuse the size.
            with contextlib.suppress(APIError):
                page = await self._fetch(self._range(lo, hi), self._first_page, count)
                fresh = self._keep_new(page, once)
                if len(page) >= count:
                    return fresh, len(page)
                new.extend(fresh)
        for number in range(math.ceil(count / self._size) + 1):
            page = await self._fetch(self._range(lo, hi), self._first_page + number, self._size)
            if number == 0:
                first_len = len(page)
            fresh = self._keep_new(page, once)
            new.extend(fresh)
            if len(page) < self._size or not fresh:
                if number == 0 and 0 < first_len < min(count, self._size):
                    more = await self._fetch(self._range(lo, hi), self._first_page + 1, self._size)
                    new.extend(self._keep_new(more, once))
                    if not more:
                        first_len = 0
                break
        return new, first_len

    def _keep_new(self, page: list[CallRow], once: ExactlyOnce) -> list[CallRow]:
        """The records of a re-read ``page`` not handed out yet.

        Raises:
            IncompleteError: The page holds calls without ``trans_id``: re-read, they cannot
                be told from those handed out already.
        """
        fresh = once.keep_new(page)
        keyless = sum(1 for record in fresh if not record.trans_id)
        if keyless:
            raise self._incomplete(
                f"a range that had to be re-read holds {keyless} calls without trans_id, "
                "which cannot be told from the calls handed out already",
                expected=self._expected,
                yielded=len(once.ledger),
            )
        return fresh

    def _diagnosis(self, recount: int, yielded: int) -> str:
        found = self._found
        if found.crowded is not None:
            at, calls = found.crowded
            return (
                f"{calls} calls share create_at {at}, more than a page of {self._size}, and "
                "the server orders them differently on each request"
            )
        said = f"countAll says {recount} calls, but re-reading by time range found {yielded}"
        if found.cap is not None:
            said += f"; the server answers at most {found.cap} records per page"
        if self._stats.duplicates:
            said += (
                f"; {self._stats.duplicates} records came with a trans_id handed out already "
                "(the server gives one id to several calls, or repeats records)"
            )
        return said
