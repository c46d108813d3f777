"""Windows planned from the data (`vbot_cdr._occupied`): empty stretches cost one count."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from vbot_cdr import CallFilter, VBotClient
from vbot_cdr._occupied import occupied_windows
from vbot_cdr._windows import plan_windows
from vbot_cdr.testing import FakeVBotServer
from vbot_cdr.testing._data import DEFAULT_START, RecordGenerator

DAY = 86_400


async def _spans(
    times: list[int], windows: list[tuple[int, int]], stretch: int
) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    asked: list[tuple[int, int]] = []

    async def count(start: int, end: int) -> int:
        asked.append((start, end))
        return bisect.bisect_right(times, end) - bisect.bisect_left(times, start)

    return [span async for span in occupied_windows(windows, count, stretch=stretch)], asked


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 1000), max_size=40).map(sorted),
    width=st.integers(1, 50),
    stretch=st.integers(1, 64),
)
async def test_the_spans_cover_the_plan_in_order_and_skip_only_what_counts_zero(
    times: list[int], width: int, stretch: int
) -> None:
    """The spans tile the planned windows, oldest first; every window holding calls comes
    alone with its count; a stretch is passed over only on a count of 0 of that stretch; each
    window read is the last range counted before it is handed over."""
    windows = plan_windows(0, 1000, width)
    spans, asked = await _spans(times, windows, stretch)
    covered = 0
    for start, end, calls, windows_in in spans:
        assert (start, end) == (windows[covered][0], windows[covered + windows_in - 1][1])
        assert calls == bisect.bisect_right(times, end) - bisect.bisect_left(times, start)
        assert windows_in == 1 or calls == 0
        covered += windows_in
    assert covered == len(windows)
    assert len(asked) <= 2 * len(windows)


async def test_an_empty_range_costs_one_count_and_sparse_calls_a_few() -> None:
    """A year of one-day windows: one count when empty; with calls on three days, a few
    dozen counts rather than one a day."""
    windows = plan_windows(0, 365 * DAY, DAY)
    spans, asked = await _spans([], windows, 4096)
    assert (spans, asked) == ([(0, 365 * DAY, 0, 365)], [(0, 365 * DAY)])
    times = [10 * DAY + 5, 11 * DAY + 7, 200 * DAY + 9]
    spans, asked = await _spans(times, windows, 4096)
    assert [(s, c) for s, _, c, n in spans if c] == [(10 * DAY, 1), (11 * DAY, 1), (200 * DAY, 1)]
    assert len(asked) <= 3 * 2 * 9  # three calls, halving 365 windows at most 9 times each


async def test_a_sparse_year_reads_its_calls_once_with_a_few_counts(
    make_client: Callable[..., VBotClient],
) -> None:
    """Over a real server: calls on four days of a year, read in one-day windows. Every call
    once; the windows all done, the checkpoint at the end; a few dozen countAll, not 365."""
    generator = RecordGenerator(seed=3)
    days = [3, 4, 150, 364]
    records = [
        generator.record(i, created=DEFAULT_START + d * DAY + 60 * (i + 1))
        for i, d in enumerate(days)
    ]
    end = DEFAULT_START + 365 * DAY
    async with FakeVBotServer(records) as server:
        client = make_client(server, page_size=50)
        the_filter = CallFilter(start_date=DEFAULT_START, end_date=end)
        async with client.iter_calls(the_filter, window=dt.timedelta(days=1)) as it:
            got = [r.trans_id async for r in it]
        assert sorted(got) == sorted(r["trans_id"] for r in records)
        assert it.stats.windows == it.stats.windows_done == 365
        assert it.total == 4
        assert server.count("getAll") == 4
        assert server.count("countAll") <= 4 * 2 * 9
        # Empty: one countAll for the whole year, no page.
        server.reset_counters()
        empty = CallFilter(start_date=end + DAY, end_date=end + 366 * DAY)
        async with client.iter_calls(empty, window=dt.timedelta(days=1)) as it:
            assert [r async for r in it] == []
        assert it.stats.windows_done == 365
        assert (server.count("countAll"), server.count("getAll")) == (1, 0)


async def test_calls_on_the_last_days_cost_a_few_counts_and_dense_ones_two_more() -> None:
    """20,000 calls on the last 9 days of a year: a few dozen counts. Calls on every day:
    one count a day, and two for the plan (the range and its older half)."""
    windows = plan_windows(0, 365 * DAY, DAY)
    last_days = [356 * DAY + 1 + i * 37 for i in range(20_000)]
    spans, asked = await _spans(last_days, windows, 4096)
    assert sum(calls for _, _, calls, _ in spans) == 20_000
    assert len(asked) <= 40
    every_day = [d * DAY + 1 for d in range(365)]
    spans, asked = await _spans(every_day, windows, 4096)
    assert len(spans) == len(windows)
    assert len(asked) == len(windows) + 2
