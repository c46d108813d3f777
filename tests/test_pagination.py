"""The iteration pipeline (paging engine, exactly-once, limit) against an in-memory page source
whose pages the test releases."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

import pytest

from vbot_cdr import CallFilter, CallRecord, IterationStats, RateLimitError, TransportError
from vbot_cdr._iteration import CallIterator, CallPageIterator, Iteration
from vbot_cdr._pagination import InFlightLimit
from vbot_cdr._port import InFlightSlot

T = TypeVar("T")


def records(n: int, prefix: str = "T") -> list[CallRecord]:
    return [CallRecord(trans_id=f"{prefix}{i:06d}", phone=str(i)) for i in range(n)]


class Source:
    """Pages sliced from a list; with ``hold``, each page waits until the test releases it."""

    def __init__(
        self, data: list[CallRecord], size: int, *, first_page: int = 1, hold: bool = False
    ):
        self.data = data
        self.size = size
        self.first_page = first_page
        self.hold = hold
        self.counts = 0
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.in_flight = 0
        self.peak = 0
        self.release_events: dict[int, asyncio.Event] = {}
        self.failures: dict[int, Exception] = {}
        self.on_fetch: Callable[[int], None] | None = None

    def event(self, page: int) -> asyncio.Event:
        return self.release_events.setdefault(page, asyncio.Event())

    def release(self, *pages: int) -> None:
        for page in pages:
            self.event(page).set()

    def release_rest(self) -> None:
        """Stop holding: every page, waiting or to come, completes."""
        self.hold = False
        for event in self.release_events.values():
            event.set()

    async def count(self, filter: CallFilter) -> int:
        self.counts += 1
        return len(self.data)

    async def fetch(
        self, filter: CallFilter, page: int, size: int, in_flight: InFlightSlot
    ) -> list[CallRecord]:
        assert size == self.size
        async with in_flight:
            self.started.append(page)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                if self.on_fetch is not None:
                    self.on_fetch(page)
                if self.hold:
                    await self.event(page).wait()
                else:
                    await asyncio.sleep(0)
                if page in self.failures:
                    raise self.failures[page]
                offset = (page - self.first_page) * self.size
                self.finished.append(page)
                return self.data[offset : offset + self.size]
            except asyncio.CancelledError:
                self.cancelled.append(page)
                raise
            finally:
                self.in_flight -= 1

    def iteration(
        self, *, concurrency: int = 4, ordered: bool = True, limit: int | None = None
    ) -> Iteration:
        return Iteration(
            self,
            CallFilter(),
            first_page=self.first_page,
            page_size=self.size,
            concurrency=concurrency,
            ordered=ordered,
            limit=limit,
            stats=IterationStats(),
        )


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds (bounded: never waits on the clock)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def collect(iterator: CallIterator) -> list[CallRecord]:
    return [record async for record in iterator]


@pytest.mark.parametrize("first_page", [0, 1], ids=["first-page-0", "first-page-1"])
@pytest.mark.parametrize(
    ("n", "size", "pages"),
    [(0, 10, 0), (1, 10, 1), (30, 10, 4), (35, 10, 4), (10, 10, 2)],
    ids=["empty", "one", "exact-multiple", "partial-last", "one-full-page"],
)
async def test_every_record_once_in_order(first_page: int, n: int, size: int, pages: int) -> None:
    """All records come back once, in order, with countAll asked once and pages from first_page."""
    data = records(n)
    source = Source(data, size, first_page=first_page)
    iterator = CallIterator(source.iteration(concurrency=3))
    assert iterator.total is None
    assert await collect(iterator) == data
    assert source.counts == 1
    assert iterator.total == n
    # A full last page is followed by one more request, in case calls shifted past the count.
    assert sorted(source.started) == list(range(first_page, first_page + pages))
    assert iterator.stats.yielded == n


async def test_concurrency_is_the_most_in_flight_and_is_reached() -> None:
    """At most `concurrency` fetches run at once, and that many run while work remains."""
    source = Source(records(100), 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=4))
    consumer = asyncio.create_task(collect(iterator))
    await until(lambda: source.in_flight == 4)
    assert source.started == [1, 2, 3, 4]
    source.release_rest()
    result = await consumer
    assert len(result) == 100
    assert source.peak == 4


async def test_unordered_slow_page_does_not_stall_the_others() -> None:
    """With ordered=False, pages after a slow one are yielded and new ones started meanwhile."""
    source = Source(records(60), 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=3, ordered=False))
    seen: list[str] = []

    async def consume() -> None:
        async for record in iterator:
            seen.append(record.trans_id or "")

    consumer = asyncio.create_task(consume())
    await until(lambda: source.in_flight == 3)
    source.release(2, 3)  # page 1 stays slow
    await until(lambda: len(seen) == 20 and source.in_flight == 3)
    assert sorted(source.started) == [1, 2, 3, 4, 5]  # freed slots went to pages 4 and 5
    source.release_rest()
    await consumer
    assert sorted(seen) == [r.trans_id for r in records(60)]
    assert seen[:10] == [r.trans_id for r in records(60)[10:20]]


async def test_ordered_yields_in_page_order_when_pages_finish_out_of_order() -> None:
    """With ordered=True, records come in the server's order whatever order pages finish in."""
    data = records(40)
    source = Source(data, 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=4))
    consumer = asyncio.create_task(collect(iterator))
    await until(lambda: source.in_flight == 4)
    source.release(4, 3, 2)
    await until(lambda: len(source.finished) == 3)
    source.release_rest()
    assert await consumer == data


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_memory_is_bounded_by_a_slow_consumer(ordered: bool) -> None:
    """Pages fetched but not yet consumed never exceed concurrency + 1, however slow the loop."""
    concurrency = 3
    source = Source(records(200), 10)
    consumed_pages = 0
    held = 0

    def on_fetch(_: int) -> None:
        nonlocal held
        held = max(held, len(source.finished) - consumed_pages)

    source.on_fetch = on_fetch
    iterator = CallPageIterator(source.iteration(concurrency=concurrency, ordered=ordered))
    async for _ in iterator:
        consumed_pages += 1
        for _ in range(50):  # a slow consumer: every fetch gets many chances to run ahead
            await asyncio.sleep(0)
        held = max(held, len(source.finished) - consumed_pages + 1)
    assert consumed_pages == 20
    assert held <= concurrency + 1


@pytest.mark.parametrize("limit", [0, 1, 15, 20, 1000], ids=lambda n: f"limit-{n}")
async def test_limit_yields_exactly_that_many_and_stops_fetching(limit: int) -> None:
    """`limit` gives exactly min(limit, total) records and fetches only the pages it needs."""
    data = records(95)
    source = Source(data, 10)
    iterator = CallIterator(source.iteration(concurrency=2, limit=limit))
    assert await collect(iterator) == data[:limit]
    expected_pages = min(-(-limit // 10), 10)
    assert len(source.started) <= expected_pages + 2  # at most the in-flight limit beyond
    assert source.cancelled or len(source.started) == expected_pages
    assert source.in_flight == 0


async def test_aclose_cancels_and_awaits_every_request_in_flight() -> None:
    """After aclose() returns, no fetch is running and none starts afterwards."""
    source = Source(records(100), 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=4))
    consumer = asyncio.create_task(anext(iterator))
    await until(lambda: source.in_flight == 4)
    source.release(1)
    assert (await consumer).trans_id == "T000000"
    await iterator.aclose()
    assert source.in_flight == 0
    assert sorted(source.cancelled) == [2, 3, 4]
    for _ in range(10):
        await asyncio.sleep(0)
    assert sorted(source.started) == [1, 2, 3, 4]  # page 5 was scheduled, never started
    await iterator.aclose()  # idempotent
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_break_inside_async_with_cleans_up() -> None:
    """Breaking out of `async with ... as it: async for` cancels the fetches in flight."""
    source = Source(records(100), 10)
    async with CallIterator(source.iteration(concurrency=4)) as iterator:
        async for record in iterator:
            if record.trans_id == "T000005":
                break
    assert source.in_flight == 0
    assert len(source.started) <= 5


async def test_exception_in_consumer_cleans_up() -> None:
    """An exception in the loop body leaves no fetch running once the `async with` exits."""
    source = Source(records(100), 10, hold=True)
    source.release(1)

    async def consume() -> None:
        async with CallIterator(source.iteration(concurrency=4)) as iterator:
            async for _ in iterator:
                raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await consume()
    assert source.in_flight == 0
    assert sorted(source.cancelled) == [2, 3, 4]  # page 5 was scheduled, never started
    assert 5 not in source.started


async def test_cancelling_the_consumer_task_cleans_up() -> None:
    """Cancelling the task that iterates cancels and awaits every fetch in flight."""
    source = Source(records(100), 10, hold=True)

    async def consume() -> None:
        async with CallIterator(source.iteration(concurrency=4)) as iterator:
            async for _ in iterator:
                pass

    consumer = asyncio.create_task(consume())
    await until(lambda: source.in_flight == 4)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert source.in_flight == 0
    assert sorted(source.cancelled) == [1, 2, 3, 4]


async def test_a_failed_page_raises_after_the_others_are_cancelled() -> None:
    """A page that fails ends the iteration with its error; the others are cancelled first."""
    source = Source(records(100), 10, hold=True)
    source.failures[3] = TransportError("connection reset", endpoint="getAll", page=3)
    iterator = CallIterator(source.iteration(concurrency=4))
    consumer = asyncio.create_task(collect(iterator))
    await until(lambda: source.in_flight == 4)
    source.release(3)
    with pytest.raises(TransportError, match="page 3"):
        await consumer
    assert source.in_flight == 0
    assert sorted(source.cancelled) == [1, 2, 4]


async def test_shift_past_the_count_is_followed_and_duplicates_dropped() -> None:
    """Calls written after the count push records to later pages; all come once, dups dropped."""
    original = records(30)
    data = list(original)
    source = Source(data, 10)
    inserted = records(7, prefix="NEW")

    def insert_before_page_2(page: int) -> None:
        if page == 2 and inserted[0] not in data:
            data[0:0] = inserted  # newest first: written calls land at the front

    source.on_fetch = insert_before_page_2
    iterator = CallIterator(source.iteration(concurrency=1))
    result = await collect(iterator)
    ids = [r.trans_id for r in result]
    assert len(ids) == len(set(ids))
    assert {r.trans_id for r in original} <= set(ids)
    assert iterator.stats.duplicates == 7
    assert iterator.stats.extra_pages == 1
    assert iterator.stats.max_shift == 7


async def test_records_without_trans_id_are_never_dropped() -> None:
    """Records lacking a trans_id are all yielded, even identical ones."""
    data = [CallRecord(phone="0901") for _ in range(12)]
    iterator = CallIterator(Source(data, 5).iteration())
    assert len(await collect(iterator)) == 12


async def test_vanished_records_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Records deleted while paging are no loss: one re-count confirms it, stats show them."""
    data = records(50)
    source = Source(data, 10)

    def delete_after_count(page: int) -> None:
        if page == 1:
            del data[-8:]

    source.on_fetch = delete_after_count
    iterator = CallIterator(source.iteration(concurrency=1))
    with caplog.at_level(logging.WARNING, logger="vbot_cdr"):
        result = await collect(iterator)
    assert len(result) == 42
    assert iterator.stats.vanished == 8
    assert "said 50 records but the pages held 42; a re-count says 42: 8 vanished" in caplog.text
    assert iterator.stats.recounts == 1
    assert source.counts == 2


async def hold_slot(
    limit: InFlightLimit, release: asyncio.Event, error: Exception | None = None
) -> None:
    async with limit:
        await release.wait()
        if error is not None:
            raise error


async def test_in_flight_limit_halves_on_429_and_grows_back() -> None:
    """A 429 halves the limit (not below 1); each run of `limit` successes adds one slot; the
    stats follow it."""
    stats = IterationStats()
    limit = InFlightLimit(8, stats)
    assert stats.in_flight_limit == 8
    for expected in (4, 2, 1, 1):
        with pytest.raises(RateLimitError):
            async with limit:
                raise RateLimitError("slow down", retry_after=None)
        assert limit.limit == stats.in_flight_limit == expected
    assert stats.in_flight_cuts == 4
    for expected in (2, 3, 4):
        for _ in range(limit.limit):
            async with limit:
                pass
        assert limit.limit == stats.in_flight_limit == expected
    assert limit.in_flight == 0


async def test_in_flight_limit_admits_only_limit_and_hands_over_in_order() -> None:
    """Attempts beyond the limit wait, in arrival order, and a cancelled waiter frees its place."""
    limit = InFlightLimit(2)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold_slot(limit, release)) for _ in range(2)]
    await until(lambda: limit.in_flight == 2)
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        async with limit:
            order.append(n)

    waiters = [asyncio.create_task(wait_turn(n)) for n in range(3)]
    await asyncio.sleep(0)
    waiters[1].cancel()
    release.set()
    await asyncio.gather(*holders)
    await asyncio.gather(waiters[0], waiters[2])
    assert waiters[1].cancelled()
    assert order == [0, 2]
    assert limit.in_flight == 0


async def test_time_windows_share_one_in_flight_limit() -> None:
    """Iterations given one in-flight limit share it, so a cut in one carries to the next."""
    shared = InFlightLimit(4)
    with pytest.raises(RateLimitError):
        async with shared:
            raise RateLimitError("slow down", retry_after=None)
    second = Source(records(40), 5, hold=True)
    iteration = Iteration(
        second,
        CallFilter(),
        first_page=1,
        page_size=5,
        concurrency=4,
        ordered=True,
        limit=None,
        stats=IterationStats(),
        in_flight=shared,
    )
    consumer = asyncio.create_task(collect(CallIterator(iteration)))
    await until(lambda: second.in_flight == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert second.in_flight == 2  # four pages scheduled, two slots after the cut
    second.release_rest()
    assert len(await consumer) == 40


async def test_the_follow_up_of_a_full_last_page_is_asked_with_the_others() -> None:
    """When the count fills the last page, the page after it is fetched in the first round."""
    source = Source(records(40), 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=8))
    consumer = asyncio.create_task(collect(iterator))
    await until(lambda: source.in_flight == 5)
    assert sorted(source.started) == [1, 2, 3, 4, 5]
    source.release_rest()
    assert len(await consumer) == 40
    assert iterator.stats.extra_pages == 1


class Steps(Coroutine[Any, Any, T]):
    """A coroutine that counts how often its task is woken up (each ``send`` or ``throw``)."""

    def __init__(self, inner: Coroutine[Any, Any, T]):
        self._inner = inner
        self.count = 0

    def send(self, value: Any) -> Any:
        self.count += 1
        return self._inner.send(value)

    def throw(self, *args: Any) -> Any:
        self.count += 1
        return self._inner.throw(*args)

    def close(self) -> None:
        self._inner.close()

    def __await__(self) -> Generator[Any, None, T]:
        return (yield from self._inner.__await__())


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_waiting_for_a_slow_page_does_not_spin(ordered: bool) -> None:
    """While the pages in flight are slow, the engine sleeps instead of polling its tasks:
    the consumer's task is woken a few times per page handed over, not once per loop tick."""
    source = Source(records(40), 10, hold=True)
    iterator = CallIterator(source.iteration(concurrency=4, ordered=ordered))
    steps = Steps(collect(iterator))
    consumer = asyncio.create_task(steps)
    await until(lambda: source.in_flight == 4)
    source.release(2, 3, 4)  # page 1, first in order, stays slow
    await until(lambda: len(source.finished) == 3)
    before = steps.count
    for _ in range(200):
        await asyncio.sleep(0)
    # Handing over the finished pages takes a few wake-ups; polling would take one per tick.
    assert steps.count - before < 20
    source.release_rest()
    assert len(await consumer) == 40


async def test_the_records_of_a_page_are_handed_over_without_waiting() -> None:
    """One hop per record: within a page, each step returns without suspending."""
    data = records(30)
    iterator = CallIterator(Source(data, 10).iteration())
    assert await iterator.__anext__() == data[0]
    for expected in data[1:10]:
        step = iterator.__anext__()
        with pytest.raises(StopIteration) as done:
            step.send(None)  # completes at once: no await on the pipeline
        assert done.value.value == expected
    assert await iterator.__anext__() == data[10]  # the next page is awaited
    await iterator.aclose()
    assert iterator.stats.yielded == 11


async def test_pages_of_a_record_iterator_hand_over_the_rest_once() -> None:
    """`CallIterator.pages()` gives the rest of the page at hand, then the next pages, once."""
    data = records(35)
    iterator = CallIterator(Source(data, 10).iteration(limit=33))
    taken = [await anext(iterator) for _ in range(4)]
    async with iterator.pages() as pages:
        batches = [page async for page in pages]
    assert [len(page) for page in batches] == [6, 10, 10, 3]
    assert taken + [r for page in batches for r in page] == data[:33]
    assert iterator.stats.yielded == 33
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)  # one iteration: closing the pages closed it
