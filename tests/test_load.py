"""Load: a 429 storm slows the iterator down, backoffs hold no slot, rate_limit spaces requests,
and repairing what a server's paging hid costs a bounded number of requests.

The adaptive in-flight limit is observed two ways: through a transport that watches the
iteration's stats (the limit at each send, the attempts on the wire) and through the fake
server's own counters (requests in flight, as the server saw them). Phases are switched on
request counts (`FakeVBotServer.wait_for_requests`), never on time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vbot_cdr import (
    AiohttpTransport,
    CallRecord,
    IterationStats,
    RetryPolicy,
    VBotClient,
)
from vbot_cdr._transport import Answer
from vbot_cdr.testing import FakeVBotServer, Fault, FaultMix, PagingHabits, generate_records

GUARD = 30.0
PATIENT = RetryPolicy(max_attempts=100, backoff=0.0, max_backoff=0.0)


class Watching(AiohttpTransport):
    """The default transport, watching the in-flight limit of the iteration it is told of.

    Each attempt holds a slot of the limit while it is on the wire, so what is in flight
    here is what is in flight under the limit (besides the count, sent before any page).
    At each send it notes the limit then (`IterationStats.in_flight_limit`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stats = IterationStats()
        self.limits: list[int] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.cut = asyncio.Event()
        self.idle = asyncio.Event()

    def watch(self, stats: IterationStats) -> None:
        self.stats = stats

    async def send(self, method: str, url: str, **options: Any) -> Answer:
        self.limits.append(self.stats.in_flight_limit)
        if self.stats.in_flight_cuts:
            self.cut.set()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.idle.clear()
        try:
            return await super().send(method, url, **options)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()


@pytest.fixture
async def watching() -> AsyncIterator[Watching]:
    transport = Watching()
    yield transport
    await transport.aclose()


@pytest.fixture
async def server() -> AsyncIterator[FakeVBotServer]:
    """600 records, with latency so that concurrent requests overlap on the server."""
    async with FakeVBotServer(count=600, latency=0.01) as fake:
        yield fake


async def drain(calls: Any) -> list[CallRecord]:
    async with calls:
        return [record async for record in calls]


async def test_a_429_storm_shrinks_the_in_flight_limit_and_success_grows_it_back(
    server: FakeVBotServer, watching: Watching
) -> None:
    """In a 429 storm fewer requests are in flight than the concurrency; after it, more again."""
    client = VBotClient(server.token, base_url=server.base_url, retry=PATIENT, transport=watching)
    async with client:
        calls = client.iter_calls(page_size=5, concurrency=8)
        watching.watch(calls.stats)
        iteration = asyncio.create_task(drain(calls))
        await asyncio.wait_for(server.wait_for_requests(12, endpoint="getAll"), GUARD)
        assert min(watching.limits) == 8  # no 429 yet: the limit is whole

        # The storm: the server refuses whatever arrives while two are being answered.
        server.max_in_flight = 2
        await asyncio.wait_for(watching.cut.wait(), GUARD)
        # Let the limit settle, then watch the server for 30 requests.
        await asyncio.wait_for(server.wait_for_requests(len(server.requests) + 10), GUARD)
        server.reset_counters()
        watching.peak_in_flight = watching.in_flight
        storm_start = len(watching.limits)
        await asyncio.wait_for(server.wait_for_requests(30), GUARD)
        storm_peak = server.peak_in_flight
        storm_client_peak = watching.peak_in_flight
        storm_limits = watching.limits[storm_start:]

        # The storm ends: successes grow the limit back, one slot per `limit` successes.
        server.max_in_flight = None
        after_storm = len(watching.limits)
        records = await asyncio.wait_for(iteration, GUARD)

    assert len({r.trans_id for r in records}) == 600
    assert max(storm_limits) < 8
    assert storm_client_peak < 8
    assert storm_peak < 8
    assert max(watching.limits[after_storm:]) > max(storm_limits)
    assert calls.stats.in_flight_limit == 8
    assert calls.stats.in_flight_cuts >= 1


async def test_a_page_waiting_out_a_backoff_holds_no_slot(
    server: FakeVBotServer, watching: Watching
) -> None:
    """While one page sleeps before its retry, the other pages go on under the limit."""
    release = asyncio.Event()
    sleeping = asyncio.Event()

    async def held_backoff(delay: float) -> None:
        sleeping.set()
        await release.wait()

    # A 429 on page 1 halves the limit of 3 to 1: had the sleeping page kept its slot, no
    # other attempt could enter, none could succeed, and the limit could never grow back.
    server.inject(Fault(status=429, retry_after="5"), page=1)
    retry = RetryPolicy(max_attempts=100, backoff=0.0, max_backoff=0.0, sleep=held_backoff)
    client = VBotClient(server.token, base_url=server.base_url, retry=retry, transport=watching)
    async with client:
        calls = client.iter_call_pages(page_size=50, concurrency=3, ordered=False)
        iteration = asyncio.create_task(drain(calls))
        await asyncio.wait_for(sleeping.wait(), GUARD)
        # Every other page (2 to 12, and the empty 13th after a full 12th) is fetched while
        # page 1 waits, and then nothing at all is in flight: the sleeper holds no slot.
        await asyncio.wait_for(server.wait_for_requests(13, endpoint="getAll"), GUARD)
        await asyncio.wait_for(watching.idle.wait(), GUARD)
        pages_during_backoff = {r.params["page"] for r in server.requests if r.endpoint == "getAll"}
        assert not iteration.done()
        release.set()
        records = await asyncio.wait_for(iteration, GUARD)
    assert calls.stats.in_flight_cuts == 1
    assert pages_during_backoff == {str(page) for page in range(1, 14)}
    assert [r.params.get("page") for r in server.requests].count("1") == 2
    assert len(records) == 12


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_concurrency_one_never_deadlocks_under_429s(ordered: bool) -> None:
    """At concurrency 1, a run of 429s on the count and pages only delays the iteration."""
    mix = FaultMix(seed=3, rate_limit=0.5, retry_after="0")
    async with (
        FakeVBotServer(count=120, fault_mix=mix) as fake,
        VBotClient(fake.token, base_url=fake.base_url, retry=PATIENT) as client,
    ):
        calls = client.iter_calls(page_size=10, concurrency=1, ordered=ordered)
        records = await asyncio.wait_for(drain(calls), GUARD)
        assert fake.faults_served()["429"] >= 5
        assert fake.peak_in_flight == 1
    assert len({r.trans_id for r in records}) == 120
    assert calls.stats.in_flight_cuts >= 1
    assert calls.stats.in_flight_limit == 1


async def test_consumer_calling_the_client_at_concurrency_one_does_not_deadlock() -> None:
    """The loop body may call the client (one conversation per call) without waiting on a slot."""
    mix = FaultMix(seed=5, rate_limit=0.3, retry_after="0")
    async with (
        FakeVBotServer(count=30, fault_mix=mix) as fake,
        VBotClient(fake.token, base_url=fake.base_url, retry=PATIENT) as client,
    ):

        async def export() -> int:
            turns = 0
            async with client.iter_calls(page_size=5, concurrency=1) as calls:
                async for call in calls:
                    assert call.trans_id is not None
                    conversation = await client.get_bot_conversation(call.trans_id)
                    turns += len(conversation.turns)
            return turns

        assert await asyncio.wait_for(export(), GUARD) > 0
        assert fake.count("getBotConversation") >= 30


# -- rate_limit --------------------------------------------------------------------------------


class Timed(AiohttpTransport):
    """The default transport, noting the loop time at which each request goes on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[float] = []

    async def send(self, method: str, url: str, **options: Any) -> Answer:
        self.sends.append(asyncio.get_running_loop().time())
        return await super().send(method, url, **options)


@pytest.fixture
async def timed() -> AsyncIterator[Timed]:
    transport = Timed()
    yield transport
    await transport.aclose()


def assert_paced(sends: list[float], rate: float) -> None:
    """Any ``n + 1`` sends span at least ``n - 1`` intervals of ``1 / rate``.

    The limiter spaces its grants ``1 / rate`` apart; a send is timed a little after its grant,
    and a busy machine may delay one send by up to an interval (shortening the gap after it),
    but never lets a run of them bunch up.
    """
    for i, j in itertools.combinations(range(len(sends)), 2):
        assert sends[j] - sends[i] >= (j - i - 1) / rate * 0.99, (i, j)


async def test_rate_limit_spaces_every_request_of_the_client(timed: Timed) -> None:
    """At rate r, requests from an iteration and concurrent calls go out at least 1/r apart."""
    rate = 40.0
    async with (
        FakeVBotServer(count=100) as fake,
        VBotClient(fake.token, base_url=fake.base_url, rate_limit=rate, transport=timed) as client,
    ):
        iteration = asyncio.create_task(drain(client.iter_calls(page_size=10, concurrency=8)))
        counts = asyncio.gather(*(client.count_calls() for _ in range(5)))
        totals = await asyncio.wait_for(counts, GUARD)
        records = await asyncio.wait_for(iteration, GUARD)
        arrivals = [r.received_at for r in fake.requests]
    assert len(records) == 100
    assert totals == [100] * 5
    requests = 1 + 11 + 5  # the count, ten full pages and an empty one, five counts
    sends = timed.sends
    assert len(sends) == len(arrivals) == requests
    assert_paced(sends, rate)
    assert sends[-1] - sends[0] >= (requests - 1) / rate * 0.99
    # The server saw the same pace (less one interval, for delivery jitter on a busy machine).
    assert arrivals[-1] - arrivals[0] >= (requests - 2) / rate


async def test_rate_limit_counts_retries(timed: Timed) -> None:
    """Retries go through the rate limiter too: a 503 storm cannot burst past the rate."""
    rate = 50.0
    async with FakeVBotServer(count=10) as fake:
        fake.inject(*[Fault(status=503)] * 6, endpoint="countAll")
        client = VBotClient(
            fake.token, base_url=fake.base_url, rate_limit=rate, retry=PATIENT, transport=timed
        )
        async with client:
            assert await asyncio.wait_for(client.count_calls(), GUARD) == 10
    sends = timed.sends
    assert len(sends) == 7
    assert_paced(sends, rate)


# -- the repair path ---------------------------------------------------------------------------


async def test_a_size_cap_costs_only_the_pages_at_its_size() -> None:
    """20,000 calls capped at 50 of 100 asked: one plan at 100 cut short, then 50 a page."""
    async with (
        FakeVBotServer(count=20_000, paging=PagingHabits(size_cap=50)) as fake,
        VBotClient(fake.token, base_url=fake.base_url) as client,
    ):
        records = await asyncio.wait_for(drain(client.iter_calls(concurrency=8)), GUARD)
        counts = fake.counts()
    assert len({r.trans_id for r in records}) == len(records) == 20_000
    # The count; at most eight pages of 100 (the in-flight limit); then 400 of 50 and one more.
    assert counts["countAll"] == 1
    assert counts["getAll"] <= 8 + 401


async def test_repairing_shuffled_ties_is_bounded_by_what_was_missed() -> None:
    """Ties reordered on every request hide calls; counting finds them at a bounded cost."""
    records = generate_records(10_000)
    start = records[0]["create_at"]
    for index, record in enumerate(records):
        record["create_at"] = start + (index // 30) * 60
    span = records[-1]["create_at"] - start
    habits = PagingHabits(shuffle_ties=True, seed=2)
    async with (
        FakeVBotServer(records, paging=habits) as fake,
        VBotClient(fake.token, base_url=fake.base_url) as client,
    ):
        calls = client.iter_calls()
        got = await asyncio.wait_for(drain(calls), GUARD)
    stats = calls.stats
    assert len({r.trans_id for r in got}) == len(got) == 10_000
    assert stats.repaired > 0
    # A re-count, the probe's page, three counts of the outskirts and span, then per missed
    # call at most one count per halving of the span, and at most two pages per range read.
    assert stats.recounts <= 1 + 3 + stats.repaired * math.ceil(math.log2(span + 1))
    assert stats.repair_pages <= 1 + 2 * (stats.recounts + 1)
    assert stats.requests == 1 + stats.pages + stats.recounts + stats.repair_pages
