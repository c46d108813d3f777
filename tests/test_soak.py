"""Fault soak: iter_calls under seeded random mixes of faults, latency, new calls and paging.

Each seed draws a schedule (data size, page size, first page, concurrency, order, and a
`FaultMix` of 5xx, 429 with ``Retry-After: 0``, connection resets, truncated bodies and
latency), and perhaps a paging habit (`PagingHabits`: a size cap, empty deep pages, shuffled
ties, the last page past the end, ``page`` ignored, every record on every page, or the
other page base), and runs one
iteration against the fake server. The iteration must either yield every original record
exactly once (and perhaps some of the new calls, each once), or raise a typed `VBotError`
when some request really did fail ``max_attempts`` times in a row, or (only under a habit)
`IncompleteError`. It must never hang, and never let an aiohttp or asyncio exception out.

New calls are written where offset paging can promise no loss (README, "Paging
guarantees"): with concurrency 1 anywhere while paging (`FaultMix.arrivals`), and with more
concurrency before the first page is read (when the first ``getAll`` arrives), since pages
served out of order around a write may skip a record at their boundary.

CI runs `SEEDS` schedules with small data and no backoff; ``pytest -m soak`` runs the long
soak on demand.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from tests._loopback import exception_chain
from tests.conftest import SERVED_DIALECTS, credential
from vbot_cdr import (
    APIError,
    CallRecord,
    IncompleteError,
    RateLimitError,
    ResponseFormatError,
    RetryPolicy,
    TransportError,
    VBotClient,
    VBotError,
)
from vbot_cdr._exactly_once import MIN_REMEMBERED_IDS
from vbot_cdr.testing import (
    FakeVBotServer,
    FaultMix,
    PagingHabits,
    generate_records,
    remembered_ids,
)

#: Schedules run in CI.
SEEDS = 200
#: Schedules run by ``pytest -m soak``.
LONG_SEEDS = 3000
#: Seconds one iteration may take before it counts as hung (a healthy one takes milliseconds).
HANG = 20.0


@attrs.frozen
class Schedule:
    """One soak run, drawn from its seed."""

    seed: int
    count: int
    page_size: int
    first_page: int
    concurrency: int
    ordered: bool
    pages_api: bool
    limit: int | None
    mix: FaultMix
    inserted: int  # calls written when the first getAll arrives (concurrency > 1)
    retry: RetryPolicy
    habits: PagingHabits  # how the server pages
    ties: int  # calls sharing each create_at (1: none share)
    server_first_page: int  # the server's page base (may differ from the client's)
    dialect: str  # a key of SERVED_DIALECTS
    echo: bool  # the server's error bodies echo the credential

    @property
    def pages_as_assumed(self) -> bool:
        return self.habits == PagingHabits() and self.server_first_page == self.first_page

    @classmethod
    def draw(cls, seed: int, *, scale: int = 1) -> Schedule:
        rng = random.Random(seed)
        concurrency = rng.choice([1, 1, 2, 3, 4, 8])
        page_size = rng.choice([1, 3, 5, 7, 10])
        intensity = rng.choice([0.0, 0.1, 0.2, 0.3, 0.5, 0.7])
        shares = [rng.random() for _ in range(4)]
        rates = [intensity * share / sum(shares) for share in shares]
        max_delay = rng.choice([0.0, 0.0, 0.001, 0.003])
        mix = FaultMix(
            seed=seed,
            server_error=rates[0],
            rate_limit=rates[1],
            retry_after="0",
            truncate=rates[2],
            disconnect=rates[3],
            max_delay=max_delay,
            min_delay=rng.uniform(0, max_delay),
            # Calls are written far slower than pages are read: an iterator that follows data
            # growing as fast as it reads (a full last page, every time) never ends.
            arrivals=rng.choice([0.0, 0.1, 0.3]) if concurrency == 1 and page_size >= 3 else 0.0,
            arrival_size=1,
        )
        first_page = rng.choice([0, 1])
        habits_drawn = ["cap", "deep", "ties", "past_end", "page", "everything", "base"]
        habit = rng.choice(["none"] * 7 + habits_drawn)
        habits = PagingHabits(
            # At least 3, like the page sizes that new calls are written under (see ``mix``).
            size_cap=rng.randint(3, page_size - 1) if habit == "cap" and page_size > 3 else None,
            deep_cap=rng.choice([page_size, 2 * page_size, 5]) if habit == "deep" else None,
            shuffle_ties=habit == "ties",
            past_end_last=habit == "past_end",
            ignore_page=habit == "page",
            everything=habit == "everything",
            seed=seed,
        )
        return cls(
            seed=seed,
            count=rng.randint(0, 60 * scale),
            page_size=page_size,
            first_page=first_page,
            concurrency=concurrency,
            ordered=rng.random() < 0.7,
            pages_api=rng.random() < 0.3,
            limit=rng.choice([None, None, None, None, None, 0, 1, 7, 25 * scale]),
            mix=mix,
            inserted=rng.choice([0, 0, 1, 4, 12]) if concurrency > 1 else 0,
            retry=RetryPolicy(max_attempts=rng.choice([3, 6, 10]), backoff=0.0, max_backoff=0.0),
            habits=habits,
            ties=rng.choice([2, 3, 5, 8]) if habit == "ties" else 1,
            server_first_page=1 - first_page if habit == "base" else first_page,
            # Drawn last, so the other draws of a seed stay what they were.
            dialect=rng.choice(sorted(SERVED_DIALECTS)),
            echo=rng.random() < 0.5,
        )


@attrs.define
class Outcome:
    """What one run gave: the ids yielded, or the error it ended with."""

    yielded: list[str | None]
    error: VBotError | None
    faults: int = 0
    arrived: int = 0
    incomplete: bool = False


async def iterate(client: VBotClient, schedule: Schedule) -> list[CallRecord]:
    options: dict[str, Any] = {
        "page_size": schedule.page_size,
        "concurrency": schedule.concurrency,
        "ordered": schedule.ordered,
        "limit": schedule.limit,
    }
    if schedule.pages_api:
        async with client.iter_call_pages(**options) as pages:
            return [record async for page in pages for record in page]
    async with client.iter_calls(**options) as calls:
        return [record async for record in calls]


def late_calls(server: FakeVBotServer, schedule: Schedule) -> list[dict[str, Any]]:
    """New calls with times spread over the existing ones, so they land among them."""
    calls = generate_records(schedule.inserted, seed=schedule.seed, id_prefix="NEW")
    times = [r["create_at"] for r in server.records + calls]
    rng = random.Random(f"late-{schedule.seed}")
    for call in calls:
        call["create_at"] = rng.randint(min(times), max(times))
    return calls


def exhausted(server: FakeVBotServer, error: VBotError, attempts: int) -> bool:
    """Whether the failed request's last ``attempts`` arrivals were all served a fault."""
    page = None if error.page is None else str(error.page)
    tries = [
        r for r in server.requests if r.endpoint == error.endpoint and r.params.get("page") == page
    ]
    return len(tries) >= attempts and all(r.fault is not None for r in tries[-attempts:])


async def run(schedule: Schedule) -> Outcome:
    """One soak run; fails with the schedule in the message if a promise is broken."""
    records = generate_records(schedule.count, seed=schedule.seed)
    for index, record in enumerate(records):  # ties: calls share the time of the group's first
        record["create_at"] = records[index - index % schedule.ties]["create_at"]
    server = FakeVBotServer(
        records,
        seed=schedule.seed,
        first_page=schedule.server_first_page,
        fault_mix=schedule.mix,
        paging=schedule.habits,
        echo_credentials=schedule.echo,
        **SERVED_DIALECTS[schedule.dialect],
    )
    async with server:
        original = {r["trans_id"] for r in server.records}
        late = late_calls(server, schedule)
        if late:
            server.insert_after(1, late)
        client = VBotClient(
            **credential(server),
            base_url=server.base_url,
            first_page=schedule.first_page,
            retry=schedule.retry,
        )
        outcome = Outcome([], None)
        async with client:
            try:
                records = await asyncio.wait_for(iterate(client, schedule), HANG)
                outcome.yielded = [r.trans_id for r in records]
            except asyncio.TimeoutError:
                pytest.fail(f"hung: {schedule}")
            except VBotError as exc:
                outcome.error = exc
        if isinstance(outcome.error, IncompleteError):
            # Only a server paging otherwise than assumed can leave records out of reach.
            error = outcome.error
            assert not schedule.pages_as_assumed, (schedule, error)
            assert error.expected > error.yielded, (schedule, error)
            outcome.incomplete = True
            return outcome
        if (
            schedule.server_first_page > schedule.first_page
            and isinstance(outcome.error, APIError)
            and outcome.error.error_code == 400
        ):
            return outcome  # a server numbering from 1 refuses the client's page 0
        if outcome.error is not None:
            error = outcome.error
            assert isinstance(
                error, TransportError | RateLimitError | APIError | ResponseFormatError
            )
            if isinstance(error, APIError) and not isinstance(error, RateLimitError):
                assert error.http_status >= 500, (schedule, error)
            if isinstance(error, ResponseFormatError):
                assert error.retryable, (schedule, error)
            assert exhausted(server, error, schedule.retry.max_attempts), (schedule, error)
            secret = server.token if server.api == "v2" else server.api_key
            for link in exception_chain(error):
                shown = f"{link} {link!r} {getattr(link, 'body', '')}"
                assert secret not in shown, (schedule, "credential shown")
            outcome.faults = sum(server.faults_served().values())
            return outcome
        yielded = outcome.yielded
        arrived = {r["trans_id"] for r in server.records} - original
        assert None not in yielded
        assert len(yielded) == len(set(yielded)), f"duplicates: {schedule}"
        assert set(yielded) <= original | arrived, schedule
        if schedule.limit is not None:
            # The first `limit` records (as many as there were, new calls perhaps among them).
            assert min(schedule.limit, len(original)) <= len(yielded) <= schedule.limit
        elif arrived and not schedule.pages_as_assumed:
            # Verification counts: a new call can stand in for an original one that a habit
            # hid, so only the count is promised when calls are written while paging.
            assert len(yielded) >= len(original), schedule
        else:
            missing = original - set(yielded)
            assert not missing, f"lost {sorted(missing)[:5]}: {schedule}"
        outcome.faults = sum(server.faults_served().values())
        outcome.arrived = len(arrived)
        return outcome


def seeds(count: int, start: int = 0) -> Sequence[int]:
    return range(start, start + count)


@pytest.mark.timeout(180)  # about a minute on two busy shared cores; the repairs add requests
async def test_soak_every_schedule_keeps_its_promise() -> None:
    """Over 200 seeded fault schedules, iter_calls yields the expected records or a typed error."""
    outcomes = []
    schedules = [Schedule.draw(seed) for seed in seeds(SEEDS)]
    floor = MIN_REMEMBERED_IDS
    # Every dialect of the fake is drawn.
    assert {schedule.dialect for schedule in schedules} == set(SERVED_DIALECTS)
    for schedule in schedules:
        # Half the runs remember no ids beyond what the observed shift calls for, so that the
        # small data sizes here still exercise how the de-duplication memory is pruned.
        with remembered_ids(0 if schedule.seed % 2 else floor):
            outcomes.append(await run(schedule))
    # Not vacuous: faults and new calls were served, most runs completed, some ran out of retries.
    assert sum(o.faults for o in outcomes) > 5 * SEEDS
    assert sum(o.arrived for o in outcomes) > SEEDS
    assert sum(o.error is None for o in outcomes) > SEEDS * 3 // 4
    assert sum(o.error is not None for o in outcomes) >= 1
    # The habits were drawn, and most of those runs were repaired to completion.
    habits = [o for s, o in zip(schedules, outcomes, strict=True) if not s.pages_as_assumed]
    assert len(habits) > SEEDS // 4
    assert sum(o.error is None for o in habits) > len(habits) // 2
    assert sum(o.incomplete for o in habits) >= 1


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_long_soak(request: pytest.FixtureRequest) -> None:
    """The same promise over thousands of larger schedules (on demand: pytest -m soak)."""
    if "soak" not in request.config.option.markexpr:
        pytest.skip("minutes long: run on demand with pytest -m soak")
    outcomes = []
    floor = MIN_REMEMBERED_IDS
    for seed in seeds(LONG_SEEDS, SEEDS):
        with remembered_ids(0 if seed % 2 else floor):
            outcomes.append(await run(Schedule.draw(seed, scale=10)))
    assert sum(o.error is None for o in outcomes) > LONG_SEEDS // 2


# -- new calls in bursts ----------------------------------------------------------------------


async def burst_run(burst: int, concurrency: int) -> list[str | None]:
    """Page 100 calls by 5 while ``burst`` new calls land on top before the third page."""
    original = generate_records(100, seed=1)
    async with FakeVBotServer(original) as server:
        newest = max(r["create_at"] for r in original)
        server.insert_after(3, generate_records(burst, seed=2, start=newest + 60, id_prefix="NEW"))
        async with (
            VBotClient(server.token, base_url=server.base_url) as client,
            client.iter_calls(page_size=5, concurrency=concurrency) as calls,
        ):
            ids = [c.trans_id async for c in calls]
    assert {r["trans_id"] for r in original} <= set(ids)
    return ids


@pytest.mark.parametrize(
    ("burst", "concurrency"), [(10, 1), (15, 1), (20, 1), (20, 3), (25, 4), (50, 4)]
)
async def test_a_burst_of_new_calls_within_reach_is_deduplicated(
    burst: int, concurrency: int
) -> None:
    """New calls landing between two fetches repeat nothing, many pages' worth included."""
    ids = await burst_run(burst, concurrency)
    assert len(ids) == len(set(ids))


async def test_a_first_burst_beyond_the_remembered_ids_repeats_records() -> None:
    """The documented bound: a first burst longer than the ids remembered repeats records."""
    with remembered_ids(10):
        ids = await burst_run(20, 1)
    assert len(ids) > len(set(ids))


async def test_limit_is_reached_when_the_last_page_repeats_records() -> None:
    """With limit, duplicates dropped from the last planned page are made up from the next one."""
    original = generate_records(100, seed=1)
    async with FakeVBotServer(original) as server:
        newest = max(r["create_at"] for r in original)
        # Two new calls on top just before page 4 (the last one limit=20 plans) is read.
        server.insert_after(4, generate_records(2, seed=2, start=newest + 60, id_prefix="NEW"))
        async with (
            VBotClient(server.token, base_url=server.base_url) as client,
            client.iter_calls(page_size=5, concurrency=1, limit=20) as calls,
        ):
            ids = [c.trans_id async for c in calls]
    assert ids == [r["trans_id"] for r in server.records if r["trans_id"][:3] != "NEW"][:20]
    assert calls.stats.duplicates == 2
