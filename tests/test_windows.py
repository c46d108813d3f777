"""Time-window slicing: the window arithmetic, and iter_calls(window=...) against the fake."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

import pytest

from vbot_cdr import CallFilter, CallRecord, IterationStats, VBotClient
from vbot_cdr._iteration import CallIterator, Iteration
from vbot_cdr._port import InFlightSlot
from vbot_cdr._windows import plan_windows, to_units
from vbot_cdr.testing import FakeVBotServer
from vbot_cdr.testing._data import DEFAULT_START

SPACING = 37  # seconds between generated records
UTC = dt.timezone.utc


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


def fixed_clock(seconds: int) -> Callable[[], dt.datetime]:
    return lambda: at(seconds)


class TestPlanWindows:
    @pytest.mark.parametrize(
        ("start", "end", "width", "expected"),
        [
            (0, 30, 10, [(0, 10), (10, 20), (20, 30)]),
            (0, 25, 10, [(0, 10), (10, 20), (20, 25)]),
            (5, 6, 10, [(5, 6)]),
            (7, 7, 10, [(7, 7)]),
            (8, 7, 10, []),
        ],
        ids=["exact-multiple", "short-last", "narrower-than-width", "empty-range", "reversed"],
    )
    def test_plan(self, start: int, end: int, width: int, expected: list[tuple[int, int]]) -> None:
        """Windows are consecutive, share their edges, and end exactly at the range's end."""
        assert plan_windows(start, end, width) == expected

    def test_width_below_one_unit_is_refused(self) -> None:
        """A window narrower than one time unit is a ValueError."""
        with pytest.raises(ValueError, match="at least one time unit"):
            plan_windows(0, 10, 0)

    @pytest.mark.parametrize(
        ("delta", "unit", "expected"),
        [
            (dt.timedelta(days=1), "s", 86_400),
            (dt.timedelta(days=1), "ms", 86_400_000),
            (dt.timedelta(seconds=1.9), "s", 1),
            (dt.timedelta(0), "ms", 0),
        ],
        ids=["day-s", "day-ms", "rounds-down", "zero"],
    )
    def test_to_units(self, delta: dt.timedelta, unit: str, expected: int) -> None:
        """Durations convert to whole units of the client's time_unit, rounded down."""
        assert to_units(delta, unit) == expected  # type: ignore[arg-type]

    def test_to_units_refuses_negative_and_non_durations(self) -> None:
        """A negative duration is a ValueError, a number a TypeError."""
        with pytest.raises(ValueError, match=">= 0"):
            to_units(dt.timedelta(seconds=-1), "s")
        with pytest.raises(TypeError, match="timedelta"):
            to_units(60, "s")  # type: ignore[arg-type]


# -- an in-memory server, to read the edges both ways -----------------------------------------


class MemoryPort:
    """Counts and pages records created at ``created``, newest first, within the filter's dates."""

    def __init__(self, created: Sequence[int], *, end_inclusive: bool, page_size: int = 4):
        self.records = sorted(
            (CallRecord(trans_id=f"R{i:04d}", create_at=t) for i, t in enumerate(created)),
            key=lambda r: (-(r.create_at or 0), r.trans_id),
        )
        self.end_inclusive = end_inclusive
        self.page_size = page_size
        self.log: list[tuple[int, int, int]] = []  # (start, end, page) of each fetch

    def matching(self, filter: CallFilter) -> list[CallRecord]:
        start, end = filter.start_date, filter.end_date
        assert isinstance(start, int)
        assert isinstance(end, int)
        return [
            r
            for r in self.records
            if r.create_at is not None
            and start <= r.create_at
            and (r.create_at <= end if self.end_inclusive else r.create_at < end)
        ]

    async def count(self, filter: CallFilter) -> int:
        return len(self.matching(filter))

    async def fetch(
        self, filter: CallFilter, page: int, size: int, in_flight: InFlightSlot
    ) -> list[CallRecord]:
        assert isinstance(filter.start_date, int)
        assert isinstance(filter.end_date, int)
        self.log.append((filter.start_date, filter.end_date, page))
        return self.matching(filter)[(page - 1) * size : page * size]

    def iteration(
        self,
        windows: Sequence[tuple[int, int]],
        stats: IterationStats,
        *,
        boundary: Mapping[str, int] | None = None,
        margin: int = 0,
    ) -> Iteration:
        return Iteration(
            self,
            CallFilter(),
            windows=windows,
            first_page=1,
            page_size=self.page_size,
            concurrency=2,
            ordered=True,
            stats=stats,
            boundary=boundary,
            margin=margin,
        )


@pytest.mark.parametrize("end_inclusive", [True, False], ids=["inclusive-end", "exclusive-end"])
async def test_edges_are_read_once_whichever_way_the_server_reads_end_date(
    end_inclusive: bool,
) -> None:
    """Calls created exactly on inner window edges are yielded once, inclusive end or not."""
    # Several calls on each edge (10, 20), others between; the range is [0, 30].
    created = [0, 3, 10, 10, 10, 14, 19, 20, 20, 25, 29, 30]
    stats = IterationStats()
    port = MemoryPort(created, end_inclusive=end_inclusive)
    source = port.iteration(plan_windows(0, 30, 10), stats)
    got = [r async for r in CallIterator(source)]
    ids = [r.trans_id for r in got]
    assert len(ids) == len(set(ids))
    expected = {f"R{i:04d}" for i, t in enumerate(created) if end_inclusive or t < 30}
    assert set(ids) == expected
    assert stats.duplicates == (5 if end_inclusive else 0)  # the 3 + 2 calls on inner edges
    assert stats.windows == stats.windows_done == 3
    # Oldest window first; within a window, newest first.
    assert [r.create_at for r in got][:2] == ([10, 10] if end_inclusive else [3, 0])


async def test_ids_given_as_seen_are_not_yielded() -> None:
    """Ids passed as an earlier read's boundary are dropped and counted."""
    stats = IterationStats()
    port = MemoryPort([1, 2, 3, 4], end_inclusive=True)
    source = port.iteration([(0, 10)], stats, boundary={"R0000": 1, "R0002": 3})
    ids = {r.trans_id async for r in CallIterator(source)}
    assert ids == {"R0001", "R0003"}
    assert stats.duplicates == 2


async def test_checkpoint_keeps_only_ids_within_the_margin() -> None:
    """After each window, the remembered ids are those at or after its end minus the margin."""
    stats = IterationStats()
    port = MemoryPort([1, 5, 8, 9, 10, 12], end_inclusive=True)
    source = port.iteration([(0, 10), (10, 20)], stats, margin=2)
    pages = CallIterator(source).pages()
    await pages.__anext__()  # the first page of window 1
    assert source.checkpoint is None  # not yet fully handed out
    async for _ in pages:
        pass
    assert source.checkpoint is not None
    assert source.checkpoint.watermark == 20
    assert dict(source.checkpoint.seen) == {}  # nothing in [18, 20]
    assert source.total == 7  # 5 in window 1, 2 in window 2 (the call at 10 counted twice)


# -- against the fake server --------------------------------------------------------------------


def pages_by_window(server: FakeVBotServer) -> dict[tuple[int, int], list[int]]:
    """The getAll pages the server was asked, per (start_date, end_date)."""
    pages: dict[tuple[int, int], list[int]] = defaultdict(list)
    for request in server.requests:
        if request.endpoint == "getAll":
            key = (int(request.params["start_date"]), int(request.params["end_date"]))
            pages[key].append(int(request.params["page"]))
    return pages


def assert_pages_fit_their_windows(
    server: FakeVBotServer,
    counts: dict[tuple[int, int], int],
    size: int,
    *,
    unfinished: tuple[int, int] | None = None,
) -> None:
    """Each window asked each page once, none past its count but for one after a full page.

    Every window but ``unfinished`` (one the consumer left early) asked all its pages.
    """
    for window, asked in pages_by_window(server).items():
        needed = math.ceil(counts[window] / size)
        follow = 1 if counts[window] % size == 0 else 0
        assert len(asked) == len(set(asked)), window
        assert max(asked) <= needed + follow, window
        if window != unfinished:
            assert sorted(asked)[:needed] == list(range(1, needed + 1)), window


async def test_windowed_iteration_yields_the_unsliced_set_once(
    make_client: Callable[..., VBotClient],
) -> None:
    """Sliced into windows whose edges fall on calls, the records are those of one plain pass."""
    async with FakeVBotServer(count=3000) as server:
        client = make_client(server, page_size=50)
        start, end = DEFAULT_START + 100 * SPACING, DEFAULT_START + 2900 * SPACING
        the_filter = CallFilter(start_date=start, end_date=end)
        plain = [r.trans_id async for r in client.iter_calls(the_filter)]
        server.reset_counters()
        # 200 calls per window; every inner edge is the creation time of a call.
        async with client.iter_calls(the_filter, window=dt.timedelta(seconds=200 * SPACING)) as it:
            sliced = [r.trans_id async for r in it]
        assert len(sliced) == len(set(sliced)) == len(plain) == 2801
        assert set(sliced) == set(plain)
        windows = plan_windows(start, end, 200 * SPACING)
        assert it.stats.windows == it.stats.windows_done == len(windows) == 14
        assert it.stats.duplicates == len(windows) - 1  # one call on each inner edge
        assert it.total == 2801 + len(windows) - 1  # the sum of the windows' counts
        # The range and its older half (vbot_cdr._occupied), then each window (all hold calls).
        assert server.count("countAll") == len(windows) + 2
        # Each window: 201 records (both edges), so 5 pages of 50.
        assert_pages_fit_their_windows(server, dict.fromkeys(windows, 201), 50)
        assert set(pages_by_window(server)) == set(windows)


async def test_pages_per_window_are_counted_in_stats(
    make_client: Callable[..., VBotClient],
) -> None:
    """stats counts every window's count and pages: requests = windows + pages, and the two
    counts that plan them (the range and its older half: every window holds calls)."""
    async with FakeVBotServer(count=1000) as server:
        client = make_client(server, page_size=100)
        the_filter = CallFilter(start_date=DEFAULT_START, end_date=DEFAULT_START + 999 * SPACING)
        async with client.iter_call_pages(the_filter, window=dt.timedelta(hours=3)) as it:
            batches = [len(page) async for page in it]
        asked = pages_by_window(server)
        assert it.stats.pages == sum(len(p) for p in asked.values()) == server.count("getAll")
        assert it.stats.requests == 2 + it.stats.windows + it.stats.pages
        assert it.stats.windows == len(asked) == server.count("countAll") - 2 == 4
        assert sum(batches) == it.stats.yielded == 1000


async def test_million_record_history_never_asks_deeper_than_a_window(
    make_client: Callable[..., VBotClient],
) -> None:
    """Over a 1,000,000-call history, windowed pages stay within each window's own count.

    The plan covers the whole history (about 428 one-day windows); the test reads its oldest
    windows, whose calls lie at offsets near 1,000,000 in an unsliced listing, and stops.
    The full read is `test_million_record_history_in_full` (soak).
    """
    size = 500
    async with FakeVBotServer(count=1_000_000) as server:
        client = make_client(server, page_size=size)
        newest = DEFAULT_START + 999_999 * SPACING
        the_filter = CallFilter(start_date=DEFAULT_START, end_date=newest)
        assert await client.count_calls(the_filter) == 1_000_000  # unsliced: 2,000 pages
        server.reset_counters()
        counts: dict[tuple[int, int], int] = {}
        async with client.iter_call_pages(the_filter, window=dt.timedelta(days=1)) as it:
            async for _ in it:
                if it.stats.windows_done == 5:
                    break
        assert it.stats.windows == math.ceil(999_999 * SPACING / 86_400) == 429
        for window in pages_by_window(server):
            counts[window] = await client.count_calls(
                CallFilter(start_date=window[0], end_date=window[1])
            )
        assert len(counts) == 6  # five read in full, the sixth begun
        assert_pages_fit_their_windows(server, counts, size, unfinished=max(counts))
        deepest = max(max(p) for p in pages_by_window(server).values())
        assert deepest <= math.ceil(max(counts.values()) / size) + 1 == 6


@pytest.mark.soak
@pytest.mark.timeout(600)
async def test_million_record_history_in_full(
    make_client: Callable[..., VBotClient], request: pytest.FixtureRequest
) -> None:
    """The whole 1,000,000-call history, sliced by day: every call once, no deep page."""
    if "soak" not in request.config.option.markexpr:
        pytest.skip("about 45 s: run on demand with pytest -m soak")
    size = 1000
    async with FakeVBotServer(count=1_000_000) as server:
        client = make_client(server, page_size=size)
        newest = DEFAULT_START + 999_999 * SPACING
        the_filter = CallFilter(start_date=DEFAULT_START, end_date=newest)
        async with client.iter_call_pages(the_filter, window=dt.timedelta(days=1)) as it:
            yielded = sum([len(page) async for page in it])
        assert yielded == it.stats.yielded == 1_000_000
        counts = Counter[tuple[int, int]]()
        for window in pages_by_window(server):
            counts[window] = await client.count_calls(
                CallFilter(start_date=window[0], end_date=window[1])
            )
        assert_pages_fit_their_windows(server, counts, size)


async def test_without_end_date_the_clock_fixes_the_end_once(
    make_client: Callable[..., VBotClient],
) -> None:
    """Without end_date the last window ends at the clock's time when iter_calls is called."""
    async with FakeVBotServer(count=500) as server:
        now = DEFAULT_START + 300 * SPACING
        reads: list[int] = []

        def clock() -> dt.datetime:
            reads.append(now)
            return at(now)

        client = make_client(server, clock=clock)
        it = client.iter_calls(start_date=DEFAULT_START, window=dt.timedelta(hours=1))
        assert reads == [now]
        # Calls written after the iteration started, created "later than now", are not read.
        server.add_records({"trans_id": f"FUTURE{i}", "create_at": now + 1 + i} for i in range(3))
        async with it:
            ids = [r.trans_id async for r in it]
        assert reads == [now]
        assert len(ids) == len(set(ids)) == 301
        assert max(int(r.params["end_date"]) for r in server.requests) == now


async def test_datetime_bounds_convert_with_the_client_time_unit(
    make_client: Callable[..., VBotClient],
) -> None:
    """With time_unit="ms", datetime bounds and the window width are sent in milliseconds."""
    async with FakeVBotServer(count=400, time_unit="ms") as server:
        client = make_client(server, time_unit="ms")
        the_filter = CallFilter(
            start_date=at(DEFAULT_START), end_date=at(DEFAULT_START + 399 * SPACING + 1)
        )
        plain = {r.trans_id async for r in client.iter_calls(the_filter)}
        server.reset_counters()
        async with client.iter_calls(the_filter, window=dt.timedelta(hours=1)) as it:
            sliced = [r.trans_id async for r in it]
        assert len(sliced) == len(set(sliced)) == len(plain) == 400
        assert set(sliced) == plain
        edges = sorted({int(r.params["start_date"]) for r in server.requests})
        assert edges[0] == DEFAULT_START * 1000
        assert edges[1] - edges[0] == 3_600_000


async def test_limit_spans_windows(make_client: Callable[..., VBotClient]) -> None:
    """limit= yields exactly that many records across windows, then stops."""
    async with FakeVBotServer(count=1000) as server:
        client = make_client(server, page_size=20)
        the_filter = CallFilter(start_date=DEFAULT_START, end_date=DEFAULT_START + 999 * SPACING)
        async with client.iter_calls(
            the_filter, window=dt.timedelta(seconds=50 * SPACING), limit=130
        ) as it:
            ids = [r.trans_id async for r in it]
        assert len(ids) == len(set(ids)) == 130
        assert it.stats.windows_done == 2  # 51 + 50 in the first two, 29 of the third


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": dt.timedelta(hours=1)}, ValueError, "start_date"),
        (
            {"window": dt.timedelta(milliseconds=10), "start_date": DEFAULT_START},
            ValueError,
            "at least 1s",
        ),
        ({"window": 3600, "start_date": DEFAULT_START}, TypeError, "timedelta"),
    ],
    ids=["no-start-date", "narrower-than-a-second", "not-a-timedelta"],
)
async def test_bad_window_arguments_fail_before_any_request(
    server: FakeVBotServer,
    client: VBotClient,
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    """A window without start_date, or narrower than the time unit, raises at once."""
    with pytest.raises(error, match=match):
        client.iter_calls(**kwargs)  # type: ignore[arg-type]
    assert server.requests == []


async def test_naive_clock_is_refused(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A clock returning a naive datetime is a TypeError, not a guess at its zone."""
    client = make_client(server, clock=lambda: dt.datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="aware datetime"):
        client.iter_calls(start_date=DEFAULT_START, window=dt.timedelta(hours=1))
