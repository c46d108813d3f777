"""`iter_calls` / `iter_call_pages` across real HTTP on loopback, against the fake server."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from tests.conftest import answered, wire_name
from vbot_cdr import (
    APIError,
    CallFilter,
    CallIterator,
    CallRecord,
    IncompleteError,
    VBotClient,
)
from vbot_cdr.testing import FakeVBotServer, Fault, PagingHabits, generate_records, ledger_records


@pytest.fixture
def server(any_server: FakeVBotServer) -> FakeVBotServer:
    """Every test of this module that takes the shared server runs against each dialect."""
    return any_server


async def test_every_record_once_in_server_order(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """All 250 records arrive once, in the server's order, with at most `concurrency` in flight."""
    client = make_client(server, page_size=20, concurrency=5)
    async with client.iter_calls() as calls:
        ids = [record.trans_id async for record in calls]
    assert ids == [r["trans_id"] for r in server.records]
    assert calls.total == 250
    assert server.count("countAll") == 1
    assert server.count("getAll") == 13
    assert server.peak_in_flight <= 5
    assert calls.stats.requests == 14
    assert calls.stats.pages == 13


async def test_filters_are_sent_with_every_page(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Filter criteria go on the count and on every page, and the result matches them."""
    client = make_client(server, page_size=10)
    calls = [c async for c in client.iter_calls(disposition=answered(server))]
    expected = [r["trans_id"] for r in server.records if r["disposition"] == answered(server)]
    assert [c.trans_id for c in calls] == expected
    sent = wire_name(server, "disposition")
    assert all(r.params[sent] == answered(server) for r in server.requests)


async def test_pages_come_as_lists(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """iter_call_pages yields one list of records per page, unordered if asked."""
    client = make_client(server, page_size=100)
    async with client.iter_call_pages(ordered=False) as pages:
        sizes = sorted([len(page) async for page in pages])
    assert sizes == [50, 100, 100]
    assert pages.stats.yielded == 250


async def test_iter_call_pages_is_iter_calls_by_the_page(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """The alias takes iter_calls's arguments, refuses the same ones before any request, and
    yields iter_calls's records, a page at a time."""
    iter_calls = inspect.signature(VBotClient.iter_calls)
    iter_call_pages = inspect.signature(VBotClient.iter_call_pages)
    assert iter_call_pages.parameters == iter_calls.parameters
    client = make_client(server, page_size=40)
    with pytest.raises(ValueError, match="limit"):
        client.iter_call_pages(limit=-1)
    with pytest.raises(TypeError, match="campaign"):
        client.iter_call_pages(campaign="CMP")
    assert server.requests == []
    async with client.iter_call_pages(limit=90, campaign_code="CMP_XACNHAN_DON") as pages:
        by_page = [page async for page in pages]
    async with client.iter_calls(limit=90, campaign_code="CMP_XACNHAN_DON") as calls:
        records = [call async for call in calls]
    assert [call for page in by_page for call in page] == records
    assert all(len(page) <= 40 for page in by_page)


@pytest.mark.parametrize("first_page", [0, 1], ids=["first-page-0", "first-page-1"])
async def test_first_page_is_honoured(
    first_page: int, make_client: Callable[..., VBotClient]
) -> None:
    """A server counting pages from 0 or from 1 is read completely with the matching setting."""
    async with FakeVBotServer(count=45, first_page=first_page) as fake:
        client = make_client(fake, page_size=10)
        assert len([c async for c in client.iter_calls()]) == 45
        assert min(int(r.params["page"]) for r in fake.requests if r.endpoint == "getAll") == (
            first_page
        )


async def test_calls_written_while_paging_lose_nothing_and_repeat_nothing(
    make_client: Callable[..., VBotClient],
) -> None:
    """Calls written between pages shift offsets; every original record still comes exactly once."""
    original = generate_records(95, seed=1)
    async with FakeVBotServer(original) as fake:
        newest = max(r["create_at"] for r in original)
        late = generate_records(12, seed=2, start=newest + 60, id_prefix="LATE")
        fake.insert_after(3, late[:5])  # before the third page is read
        fake.insert_after(6, late[5:])
        client = make_client(fake, page_size=10, concurrency=1)
        async with client.iter_calls() as calls:
            ids = [c.trans_id async for c in calls]
    assert len(ids) == len(set(ids))
    assert {r["trans_id"] for r in original} <= set(ids)
    assert calls.stats.duplicates > 0
    assert calls.stats.extra_pages >= 1


async def test_a_page_that_keeps_failing_raises_its_error(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A page failing past its retries raises its typed error; nothing is left in flight."""
    server.inject(*[Fault(status=503)] * 10, page=4)
    client = make_client(server, page_size=10, concurrency=4)
    received: list[CallRecord] = []

    async def consume() -> None:
        async with client.iter_calls() as calls:
            async for call in calls:
                received.append(call)

    with pytest.raises(APIError) as raised:
        await consume()
    assert raised.value.http_status == 503
    assert raised.value.page == 4
    assert len(received) <= 30
    assert server.in_flight == 0


async def test_transient_failures_are_retried_and_counted(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """Transient faults on pages are retried; stats count the requests and the retries."""
    server.inject(Fault(status=502), Fault(truncate=True), Fault(status=429, retry_after="0"))
    client = make_client(server, page_size=50)
    async with client.iter_calls() as calls:
        assert len([c async for c in calls]) == 250
    assert calls.stats.retries == 3
    # The count, five full pages, the empty follow-up of a full last page, three retries.
    assert calls.stats.requests == 1 + 5 + 1 + 3


@pytest.mark.parametrize(
    "arguments",
    [
        {"limit": -1},
        {"page_size": 0},
        {"concurrency": 0},
        {"filter": CallFilter(), "campaign_code": "X"},
        {"campain_code": "typo"},
    ],
    ids=["negative-limit", "zero-page-size", "zero-concurrency", "filter-and-criteria", "typo"],
)
async def test_bad_arguments_raise_before_any_request(
    server: FakeVBotServer, client: VBotClient, arguments: dict[str, object]
) -> None:
    """Bad iteration arguments raise at the call, before any request is sent."""
    with pytest.raises((ValueError, TypeError)):
        client.iter_calls(**arguments)  # type: ignore[arg-type]
    assert server.requests == []


async def test_a_read_longer_than_a_ledger_is_read_in_windows_planned_from_its_data(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """An unsliced read of more calls than a ledger should hold is read in windows of time,
    newest first: the same records in the same order, each once, and no ledger holds more
    than the bound, where one read whole holds every call."""
    client = make_client(server, page_size=20, concurrency=4)
    async with client.iter_calls() as whole:
        expected = [record.trans_id async for record in whole]
    assert whole.stats.ledger_peak == 250  # one window: the ledger holds every call
    server.requests.clear()
    with ledger_records(60):
        async with client.iter_calls() as calls:
            ids = [record.trans_id async for record in calls]
    assert ids == expected == [r["trans_id"] for r in server.records]
    assert calls.total == 250
    assert 0 < calls.stats.ledger_peak <= 60
    assert calls.stats.yielded == 250
    # The first count, the newest and oldest calls, then a count per window.
    assert server.count("countAll") >= 1 + 250 // 30


async def test_windows_cut_through_calls_sharing_an_instant_hand_each_out_once(
    make_client: Callable[..., VBotClient],
) -> None:
    """Windows share their edges: the calls at an edge come twice and are handed out once,
    in the newer window; windows are halved down to one instant when they must."""
    data = [
        {**record, "create_at": 1_700_000_000 + 60 * (index // 25)}
        for index, record in enumerate(generate_records(300, seed=3))
    ]
    async with FakeVBotServer(data) as fake:
        client = make_client(fake, page_size=10, concurrency=3)
        with ledger_records(40):
            async with client.iter_calls() as calls:
                ids = [record.trans_id async for record in calls]
        assert ids == [r["trans_id"] for r in fake.records]
    assert len(set(ids)) == 300
    assert calls.stats.ledger_peak <= 40
    assert calls.stats.recounts == 0  # every window complete without a repair


async def test_a_limit_within_the_bound_reads_the_range_whole(
    server: FakeVBotServer, make_client: Callable[..., VBotClient]
) -> None:
    """A limit of fewer calls than the bound keeps the ledger small anyway: no windows."""
    client = make_client(server, page_size=20)
    with ledger_records(60):
        async with client.iter_calls(limit=50) as calls:
            ids = [record.trans_id async for record in calls]
    assert ids == [r["trans_id"] for r in server.records[:50]]
    assert server.count("countAll") == 1


async def test_a_server_whose_last_offsets_are_empty_is_read_whole(
    make_client: Callable[..., VBotClient],
) -> None:
    """Without the oldest call (deep offsets answered empty) no span is known: the range is
    read in one window, and its repair reads the calls past the deep offsets."""
    async with FakeVBotServer(count=200, paging=PagingHabits(deep_cap=150)) as fake:
        client = make_client(fake, page_size=10, concurrency=2)
        with ledger_records(60):
            async with client.iter_calls() as calls:
                ids = [record.trans_id async for record in calls]
        assert ids[:150] == [r["trans_id"] for r in fake.records[:150]]
        assert sorted(ids) == sorted(r["trans_id"] for r in fake.records)


async def _collect(
    calls: CallIterator, ids: list[str | None], then: Callable[[], None] = lambda: None
) -> None:
    """Append the id of each call of ``calls`` to ``ids`` as it comes (kept if one raises);
    call ``then`` once the first is handed out."""
    async with calls:
        async for record in calls:
            ids.append(record.trans_id)
            if len(ids) == 1:
                then()


#: How a server selects the calls of a query (the fake server's private `_Query`): given
#: its sound selection and the query, the calls it answers.
Selection = Callable[[Callable[[Any], Any], Any], Any]


def _faulty_dates(fake: FakeVBotServer) -> list[Selection]:
    """Make ``fake`` select calls as told: the returned list's last fault selects the calls
    of each query, for counts and pages alike (sound at first). No seam of the fake server
    breaks its date filter, so its store's selection is wrapped."""
    faults: list[Selection] = [lambda view, query: view(query)]
    store = fake._store
    view = store.view
    store.view = lambda query: faults[-1](view, query)  # type: ignore[method-assign]
    return faults


def _ignore_end(view: Callable[[Any], Any], query: Any) -> Any:
    """A server honouring ``start_date`` only."""
    return view(attrs.evolve(query, end=None))


async def test_windows_counting_fewer_calls_than_the_range_read_it_whole(
    make_client: Callable[..., VBotClient],
) -> None:
    """A server keeping its date bounds exclusive: the calls at the windows' shared edges are
    in no window, so the windows' counts fall short of the range's before any call is
    handed out; the range is read whole, as one window, and nothing is lost."""
    async with FakeVBotServer(count=250) as fake:
        faults = _faulty_dates(fake)

        def exclusive(view: Callable[[Any], Any], query: Any) -> Any:
            start = None if query.start is None else query.start + 1
            end = None if query.end is None else query.end - 1
            return view(attrs.evolve(query, start=start, end=end))

        faults.append(exclusive)
        client = make_client(fake, page_size=20, concurrency=2)
        with ledger_records(60):
            async with client.iter_calls() as calls:
                ids = [record.trans_id async for record in calls]
        assert ids == [r["trans_id"] for r in fake.records]
    assert calls.stats.ledger_peak == 250  # read whole: one ledger of every call
    assert calls.stats.duplicates == 0


async def test_a_date_filter_honouring_only_the_start_reads_the_range_whole(
    make_client: Callable[..., VBotClient],
) -> None:
    """A server that ignores end_date: its windows' counts add up (each counts the newer
    calls too), but a window's newest record is past its end; found before any call is
    handed out, so the range is read whole rather than hand calls out twice."""
    async with FakeVBotServer(count=250) as fake:
        _faulty_dates(fake).append(_ignore_end)
        client = make_client(fake, page_size=20, concurrency=2)
        with ledger_records(60):
            async with client.iter_calls() as calls:
                ids = [record.trans_id async for record in calls]
        assert ids == [r["trans_id"] for r in fake.records]
        assert fake.count("countAll") < 10  # the plan stopped at the first broken window
    assert calls.stats.ledger_peak == 250


async def test_a_date_filter_breaking_once_calls_are_out_raises(
    make_client: Callable[..., VBotClient],
) -> None:
    """A server whose date filter breaks (ignores end_date) after the plan found it sound:
    the next window's records are newer than its end; calls are handed out already, so the
    read stops with IncompleteError rather than hand them out again."""
    async with FakeVBotServer(count=250) as fake:
        faults = _faulty_dates(fake)
        client = make_client(fake, page_size=20, concurrency=1)
        ids: list[str | None] = []
        with ledger_records(60), pytest.raises(IncompleteError, match="holds a call") as info:
            await _collect(client.iter_calls(), ids, then=lambda: faults.append(_ignore_end))
    # The newest window, handed out in full before the next showed the fault, and no more.
    assert 0 < len(ids) < 60
    assert ids == [r["trans_id"] for r in fake.records[: len(ids)]]
    assert info.value.expected == 250


async def test_windows_counting_more_than_the_calls_left_read_the_range_whole(
    make_client: Callable[..., VBotClient],
) -> None:
    """A server counting the calls of a closed date range twice (as a join would): the
    windows count more calls than the range has left once the newer windows' are taken
    off; found before any call is handed out, so the range is read whole."""
    async with FakeVBotServer(count=250) as fake:

        def twice(view: Callable[[Any], Any], query: Any) -> Any:
            selected = view(query)
            return selected if query.end is None else [*selected, *selected]

        _faulty_dates(fake).append(twice)
        client = make_client(fake, page_size=20, concurrency=2)
        with ledger_records(60):
            async with client.iter_calls() as calls:
                ids = [record.trans_id async for record in calls]
        assert ids == [r["trans_id"] for r in fake.records]
    assert calls.stats.ledger_peak == 250


async def test_calls_written_while_a_long_read_pages_lose_nothing_and_repeat_nothing(
    make_client: Callable[..., VBotClient],
) -> None:
    """Calls written while the windows of a long read are paged shift the newest window's
    offsets; every original call still comes exactly once."""
    original = generate_records(240, seed=1)
    async with FakeVBotServer(original) as fake:
        newest = max(r["create_at"] for r in original)
        late = generate_records(12, seed=2, start=newest + 60, id_prefix="LATE")
        fake.insert_after(2, late[:5])
        fake.insert_after(9, late[5:])
        client = make_client(fake, page_size=10, concurrency=1)
        with ledger_records(60):
            async with client.iter_calls() as calls:
                ids = [c.trans_id async for c in calls]
    assert len(ids) == len(set(ids))
    assert {r["trans_id"] for r in original} <= set(ids)
    assert calls.stats.ledger_peak <= 60 + len(late)
