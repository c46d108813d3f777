"""Complete, or `IncompleteError`: iterations against fake servers that page in their own ways."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vbot_cdr import (
    APIError,
    CallFilter,
    CallIterator,
    CallSync,
    IncompleteError,
    VBotClient,
)
from vbot_cdr.testing import FakeVBotServer, PagingHabits, generate_records


def tied(count: int, per_instant: int) -> list[dict[str, Any]]:
    """``count`` records, ``per_instant`` of them sharing each ``create_at``."""
    records = generate_records(count)
    start = records[0]["create_at"]
    for index, record in enumerate(records):
        record["create_at"] = start + (index // per_instant) * 60
    return records


async def read_all(client: VBotClient, **options: Any) -> tuple[list[str], Any]:
    async with client.iter_calls(**options) as calls:
        ids = [record.trans_id or "" async for record in calls]
    return ids, calls.stats


async def read_each(calls: CallIterator) -> None:
    async with calls:
        async for _ in calls:
            pass


def assert_once(ids: list[str], server: FakeVBotServer) -> None:
    repeated = [key for key, n in Counter(ids).items() if n > 1]
    assert repeated == []
    assert sorted(ids) == sorted(r["trans_id"] for r in server.records)


async def test_a_complete_read_sends_no_recount(make_client: Callable[..., VBotClient]) -> None:
    """On a server that pages as assumed, verification costs nothing: one count, the pages."""
    async with FakeVBotServer(count=1000) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
    assert_once(ids, server)
    assert server.counts() == Counter({"countAll": 1, "getAll": 11})
    assert (stats.recounts, stats.repair_pages, stats.replans) == (0, 0, 0)


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_a_silent_size_cap_is_detected_and_paged_at_its_size(
    make_client: Callable[..., VBotClient], ordered: bool
) -> None:
    """A server answering 30 of 100 asked gets re-planned at 30: every record once, no repair."""
    async with FakeVBotServer(count=1000, paging=PagingHabits(size_cap=30)) as server:
        ids, stats = await read_all(make_client(server, page_size=100), ordered=ordered)
    assert_once(ids, server)
    assert stats.replans == 1
    assert stats.recounts == 0
    # One plan at 100 (at most concurrency pages of it), then 1000 / 30 pages.
    assert server.count("getAll") <= 8 + 34 + 1


async def test_a_size_cap_on_a_single_page_is_repaired_by_counting(
    make_client: Callable[..., VBotClient],
) -> None:
    """When the whole range fits one asked page, the cap shows only against the count."""
    async with FakeVBotServer(count=80, paging=PagingHabits(size_cap=50)) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
    assert_once(ids, server)
    assert stats.repaired == 30
    assert stats.recounts >= 1


async def test_a_deep_page_cap_is_repaired_by_reading_shallow_time_ranges(
    make_client: Callable[..., VBotClient],
) -> None:
    """Pages past offset 300 come back empty; the rest is found by time range, each once."""
    async with FakeVBotServer(count=1000, paging=PagingHabits(deep_cap=300)) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
        offsets = [
            (int(r.params["page"]) - 1) * int(r.params["size"])
            for r in server.requests
            if r.endpoint == "getAll" and "start_date" in r.params
        ]
    assert_once(ids, server)
    assert stats.repaired == 700
    assert max(offsets) < 300  # the repair never asks deep


async def test_ties_shuffled_per_request_are_repaired(
    make_client: Callable[..., VBotClient],
) -> None:
    """Calls sharing a create_at, ordered anew on each request, all come once."""
    habits = PagingHabits(shuffle_ties=True, seed=3)
    async with FakeVBotServer(tied(1000, 30), paging=habits) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
    assert_once(ids, server)
    assert stats.duplicates > 0  # the shuffles did repeat records across pages
    assert stats.repaired > 0  # and hid others, found again by counting


async def test_ties_beyond_a_page_are_read_in_one_page_of_their_count(
    make_client: Callable[..., VBotClient],
) -> None:
    """300 calls of one instant, shuffled: the repair asks for them in one page of 300."""
    habits = PagingHabits(shuffle_ties=True, seed=1)
    async with FakeVBotServer(tied(300, 300), paging=habits) as server:
        ids, _ = await read_all(make_client(server, page_size=100))
        sizes = {r.params["size"] for r in server.requests if r.endpoint == "getAll"}
    assert_once(ids, server)
    assert "300" in sizes


async def test_ties_that_cannot_be_read_whole_end_in_incomplete_error(
    make_client: Callable[..., VBotClient],
) -> None:
    """Shuffled ties beyond a page, on a server that caps the size: a typed error naming them."""
    habits = PagingHabits(shuffle_ties=True, size_cap=100, seed=1)
    async with FakeVBotServer(tied(300, 300), paging=habits) as server:
        calls = make_client(server, page_size=100).iter_calls()
        with pytest.raises(IncompleteError) as caught:
            await read_each(calls)
    error = caught.value
    assert (error.expected, error.yielded) == (300, calls.stats.yielded)
    assert error.missing == 300 - calls.stats.yielded > 0
    assert "300 calls share create_at" in str(error)
    assert "orders them differently on each request" in str(error)


async def test_a_server_answering_past_the_end_with_the_last_page_ends(
    make_client: Callable[..., VBotClient],
) -> None:
    """The follow-up page repeats the last one: nothing new, so the following stops."""
    async with FakeVBotServer(count=1000, paging=PagingHabits(past_end_last=True)) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
    assert_once(ids, server)
    assert server.counts() == Counter({"countAll": 1, "getAll": 11})
    assert stats.duplicates == 100


async def test_a_server_ignoring_page_is_read_whole_by_time_range(
    make_client: Callable[..., VBotClient],
) -> None:
    """Every page is the first: the pages end, and counting narrows ranges to one page each."""
    async with FakeVBotServer(count=500, paging=PagingHabits(ignore_page=True)) as server:
        ids, stats = await read_all(make_client(server, page_size=100))
    assert_once(ids, server)
    assert stats.repaired == 400
    assert server.count("getAll") < 5 * 7 + 5 + 40  # bounded: pages, probe, ranges


async def test_a_server_answering_everything_on_every_page_costs_one_page(
    make_client: Callable[..., VBotClient],
) -> None:
    """A page longer than asked ends the paging: every record once, the rest never asked."""
    habits = PagingHabits(everything=True)
    async with FakeVBotServer(count=1000, paging=habits) as server:
        ids, stats = await read_all(make_client(server, page_size=100, concurrency=1))
    assert_once(ids, server)
    assert server.counts() == Counter({"countAll": 1, "getAll": 1})
    assert stats.recounts == 0


async def test_pages_numbered_from_zero_name_the_option(
    make_client: Callable[..., VBotClient],
) -> None:
    """A server counting pages from 0 under a client counting from 1: IncompleteError says so."""
    async with FakeVBotServer(count=250, first_page=0) as server:
        client = make_client(server, first_page=1, page_size=100)
        with pytest.raises(IncompleteError) as caught:
            await read_all(client)
        probes = [r for r in server.requests if r.params.get("size") == "1"]
    assert "set first_page=0" in str(caught.value)
    assert (caught.value.expected, caught.value.yielded) == (250, 150)
    assert len(probes) == 1  # detection costs one request of one record


async def test_pages_numbered_from_one_under_a_client_from_zero_fail_typed(
    make_client: Callable[..., VBotClient],
) -> None:
    """The other way round, the server refuses page 0: a typed error before any record."""
    async with FakeVBotServer(count=250, first_page=1) as server:
        with pytest.raises(APIError):
            await read_all(make_client(server, first_page=0, page_size=100))


async def test_an_empty_trans_id_is_no_id(make_client: Callable[..., VBotClient]) -> None:
    """Records whose trans_id is empty are all yielded, never dropped as duplicates."""
    records = generate_records(30)
    for record in records[:12]:
        record["trans_id"] = ""
    async with FakeVBotServer(records) as server:
        ids, stats = await read_all(make_client(server, page_size=10))
    assert ids.count("") == 12
    assert len(ids) == 30
    assert stats.duplicates == 0


async def test_records_deleted_while_paging_are_no_loss(
    make_client: Callable[..., VBotClient],
) -> None:
    """The data ends early because calls were deleted: one re-count, no error."""
    async with FakeVBotServer(count=300) as server:
        client = make_client(server, page_size=50, concurrency=1)
        doomed = {r["trans_id"] for r in server.records[-20:]}
        yielded = []
        async with client.iter_calls() as calls:
            async for record in calls:
                if len(yielded) == 10:
                    server.remove_records(lambda r: r["trans_id"] in doomed)
                yielded.append(record.trans_id)
    assert len(yielded) == 280
    assert calls.stats.recounts == 1
    assert calls.stats.vanished == 20


async def test_a_limit_is_met_on_a_capped_server(make_client: Callable[..., VBotClient]) -> None:
    """``limit`` counts after the cap is adapted to: exactly that many, each once."""
    async with FakeVBotServer(count=1000, paging=PagingHabits(size_cap=40)) as server:
        ids, _ = await read_all(make_client(server, page_size=100), limit=250)
    assert ids == [r["trans_id"] for r in server.records[:250]]


async def test_time_windows_are_each_verified(make_client: Callable[..., VBotClient]) -> None:
    """A windowed read of a capped, tie-shuffling server is complete, window by window."""
    import datetime as dt

    records = tied(1000, 10)
    first, last = records[0]["create_at"], records[-1]["create_at"]
    habits = PagingHabits(size_cap=30, shuffle_ties=True, seed=5)
    async with FakeVBotServer(records, paging=habits) as server:
        client = make_client(server, page_size=100)
        filter = CallFilter(start_date=first, end_date=last)
        ids, stats = await read_all(client, filter=filter, window=dt.timedelta(minutes=10))
    assert_once(ids, server)
    assert stats.windows_done == stats.windows > 1


async def test_a_sync_commits_only_windows_verified_complete(
    make_client: Callable[..., VBotClient], tmp_path: Path
) -> None:
    """An IncompleteError in the second window: nothing committed on exit; commit() saves one."""
    import datetime as dt

    calls = generate_records(100)
    start, newest = calls[0]["create_at"], calls[-1]["create_at"]
    crowd = tied(300, 300)
    for record in crowd:
        record["trans_id"] = "CROWD-" + record["trans_id"]
        record["create_at"] = newest + 600  # in the second window, unreadable whole
    habits = PagingHabits(shuffle_ties=True, size_cap=100, seed=1)
    state = tmp_path / "state.json"
    later = dt.datetime.fromtimestamp(newest + 10_000, dt.timezone.utc)
    async with FakeVBotServer(calls + crowd, paging=habits) as server:
        client = make_client(server, page_size=100, clock=lambda: later)
        width = dt.timedelta(seconds=newest - start + 1)
        options: dict[str, Any] = {"start_date": start, "end_date": newest + 1000}
        with pytest.raises(IncompleteError):
            async with client.sync(state, window=width, **options) as sync:
                await read_each_of(sync)
        assert not state.exists()  # the block raised: nothing is saved
        assert sync.committable  # the first window was verified complete
        await sync.commit()
    # The first window ends one second after the newest ordinary call.
    assert sync.watermark == newest + 1 == json.loads(state.read_text())["watermark"]


async def read_each_of(sync: CallSync) -> None:
    async for _ in sync:
        pass
