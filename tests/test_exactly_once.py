"""The exactly-once stage: one memory of what an iteration handed out, whichever stage read it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbot_cdr import CallRecord, IterationStats
from vbot_cdr import _exactly_once as exactly_once
from vbot_cdr._exactly_once import ExactlyOnce
from vbot_cdr.testing import remembered_ids


def calls(*ids: str, at: int = 5) -> list[CallRecord]:
    return [CallRecord(trans_id=key, create_at=at) for key in ids]


@pytest.mark.parametrize("key", ["", None], ids=["empty", "missing"])
def test_a_record_without_an_id_is_never_a_duplicate(key: str | None) -> None:
    """Without a trans_id a record passes every time: in pages, in the repair, across windows."""
    stats = IterationStats()
    once = ExactlyOnce(stats, concurrency=1, boundary={"A": 5})
    nameless = [CallRecord(trans_id=key, create_at=5) for _ in range(3)]
    once.open_window(10)
    assert once.keep_new(nameless, offset=0, page_size=3) == nameless
    assert once.keep_new(nameless) == nameless  # as the repair re-reads them
    once.close_window()
    once.open_window(20)
    assert once.keep_new(nameless, offset=0, page_size=3) == nameless
    assert not once.knows(nameless[0])
    assert stats.duplicates == 0


def test_the_boundary_of_an_earlier_read_is_dropped_by_pages_and_repair() -> None:
    """Ids a resumed read handed out are dropped wherever they come again, and counted once each."""
    stats = IterationStats()
    once = ExactlyOnce(stats, concurrency=1, boundary={"OLD1": 5, "OLD2": 5})
    once.open_window(10)
    assert once.keep_new(calls("NEW1", "OLD1"), offset=0, page_size=2) == calls("NEW1")
    assert once.keep_new(calls("OLD2", "NEW2")) == calls("NEW2")
    assert once.knows(calls("OLD1")[0])
    assert stats.duplicates == 2
    # Both old calls lie in the window's range: its ledger counts them as handed out, so the
    # repair does not look for them again.
    assert len(once.ledger) == 4


def test_the_repair_checks_against_the_whole_window_not_the_paging_horizon() -> None:
    """A record the paging memory has let go of is still known when the repair re-reads it."""
    stats = IterationStats()
    once = ExactlyOnce(stats, concurrency=1, min_remembered=0)
    once.open_window(None)
    for page in range(10):
        once.keep_new(calls(f"P{page}"), offset=page, page_size=1)
    assert "P0" not in once._recent  # far behind the newest page: forgotten by the paging
    assert once.keep_new(calls("P0", "LATE")) == calls("LATE")
    assert stats.duplicates == 0  # re-read on purpose, not a repeat of the server's


def test_ids_are_kept_across_windows_only_within_the_margin() -> None:
    """A window's calls at or after its end minus the margin are dropped in the next window."""
    stats = IterationStats()
    once = ExactlyOnce(stats, concurrency=1, margin=2)
    once.open_window(10)
    edge = CallRecord(trans_id="EDGE", create_at=9)
    early = CallRecord(trans_id="EARLY", create_at=3)
    once.keep_new([early, edge], offset=0, page_size=2)
    assert once.close_window() == {"EDGE": 9}
    once.open_window(20)
    assert len(once.ledger) == 0  # the ledger holds one window
    assert once.keep_new([edge, early], offset=0, page_size=2) == [early]
    assert stats.duplicates == 1


def test_dedup_memory_is_bounded_over_a_long_iteration() -> None:
    """Over 200,000 records the paging memory stays at its floor, MIN_REMEMBERED_IDS plus a page."""
    stats = IterationStats()
    seen = ExactlyOnce(stats, concurrency=8)
    for page in range(1, 2_001):
        batch = [CallRecord(trans_id=f"{page}-{i}") for i in range(100)]
        assert len(seen.keep_new(batch, offset=page * 100, page_size=100)) == 100
    assert len(seen._recent) <= exactly_once.MIN_REMEMBERED_IDS + 100


def test_dedup_horizon_grows_with_the_observed_shift() -> None:
    """A shift of several pages widens the horizon so a far-travelled duplicate is still caught."""
    stats = IterationStats()
    seen = ExactlyOnce(stats, concurrency=1, min_remembered=0)
    pages = [[CallRecord(trans_id=f"{p}-{i}") for i in range(10)] for p in range(6)]
    for number, page in enumerate(pages[:4]):
        seen.keep_new(page, offset=number * 10, page_size=10)
    # Page 4 as fetched after 25 inserts shows records of page 1 again.
    assert seen.keep_new(pages[1][5:] + pages[4][:5], offset=40, page_size=10) == pages[4][:5]
    assert stats.max_shift == 25
    for number in range(5, 9):
        fresh = [CallRecord(trans_id=f"x{number}-{i}") for i in range(10)]
        seen.keep_new(fresh, offset=number * 10, page_size=10)
    assert seen.keep_new(pages[4][:1], offset=90, page_size=10) == []  # 5 pages on


def _pages() -> st.SearchStrategy[list[list[CallRecord]]]:
    """Pages of a few ids (repeats within and across pages, empty and missing ids) and times
    (missing ones, and some past a window end of 50)."""
    record = st.builds(
        CallRecord,
        trans_id=st.sampled_from(["A", "B", "C", "D", "E", "F", "", None]),
        create_at=st.one_of(st.none(), st.integers(0, 100)),
    )
    return st.lists(st.lists(record, min_size=1, max_size=6), max_size=8)


def _state(once: ExactlyOnce, stats: IterationStats) -> tuple[object, ...]:
    return (
        dict(once._recent),
        {offset: list(keys) for offset, keys in once._pages.items()},
        dict(once._kept),
        once.ledger._keys.tolist(),
        once.ledger._times.tolist(),
        once.keyless,
        once.order_moved,
        stats.duplicates,
        stats.max_shift,
    )


@settings(max_examples=300, deadline=None)
@given(pages=_pages(), margin=st.sampled_from([0, 30]), boundary=st.booleans())
def test_the_bulk_path_notes_pages_as_one_by_one_does(
    pages: list[list[CallRecord]], margin: int, boundary: bool
) -> None:
    """A page with only new, distinct ids takes a bulk path; every page gives the same
    records, counters and memory as the record-by-record path gives it."""
    runs = []
    for bulk in (True, False):
        stats = IterationStats()
        once = ExactlyOnce(
            stats, concurrency=2, boundary={"F": 60} if boundary else None, margin=margin
        )
        if not bulk:
            once._note_if_all_new = lambda records, offset: None  # type: ignore[method-assign]
        once.open_window(50)
        offset, handed = 0, []
        for page in pages:
            handed.append(once.keep_new(page, offset=offset, page_size=len(page)))
            offset += len(page)
        runs.append((handed, _state(once, stats), once.close_window()))
    assert runs[0] == runs[1]


def test_remembered_ids_sets_the_floor_of_the_stages_made_within() -> None:
    """``remembered_ids`` (the testing switch) gives the stages made in its block its floor;
    blocks nest, and a stage keeps the floor it was made with."""

    def remembered(once: ExactlyOnce) -> int:
        once.open_window(None)
        for page in range(50):
            ids = (f"{page}-{i}" for i in range(10))
            once.keep_new(calls(*ids), offset=page * 10, page_size=10)
        return len(once._recent)

    with remembered_ids(0):
        floorless = ExactlyOnce(IterationStats(), concurrency=1)
        with remembered_ids(100):
            hundred = ExactlyOnce(IterationStats(), concurrency=1)
        after_inner = ExactlyOnce(IterationStats(), concurrency=1)
    default = ExactlyOnce(IterationStats(), concurrency=1)
    assert remembered(floorless) == remembered(after_inner) == 30  # (concurrency + 2) pages
    assert remembered(hundred) == 110  # the floor, and the page it is counted from
    assert remembered(default) == 500  # all of them: under MIN_REMEMBERED_IDS


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_remembered_ids_refuses_a_bad_floor(bad: Any) -> None:
    with pytest.raises(ValueError, match="floor"), remembered_ids(bad):
        pass


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.one_of(st.none(), st.integers(-(2**63) + 1, 2**63 - 1)), max_size=5),
        max_size=5,
    ),
    near=st.booleans(),
)
def test_the_ledger_keeps_every_time_exactly(batches: list[list[int | None]], near: bool) -> None:
    """Times relative to the first in int32, widened to int64 by the first that does not fit:
    `Ledger.times` gives back every time noted, none clipped, the records without one left
    out; and 4 bytes a time while they fit."""
    if near:  # times a window apart, as they mostly are: they stay in int32
        batches = [
            [None if t is None else 1_700_000_000_000 + t % 2**30 for t in b] for b in batches
        ]
    ledger = exactly_once.Ledger()
    noted: list[int | None] = []
    for batch in batches:
        ledger.add_keyed([f"id{len(noted) + i}" for i in range(len(batch))], batch)
        noted += batch
    assert len(ledger) == len(noted)
    assert ledger.times() == sorted(t for t in noted if t is not None)
    half = len(noted) // 2
    assert ledger.times(since=half) == sorted(t for t in noted[half:] if t is not None)
    if near:
        assert ledger._times.itemsize == 4


def test_windows_read_newest_first_keep_the_ids_at_their_start() -> None:
    """Read newest first, a window keeps the ids of its calls at its start (the edge the older
    window shares); the older window drops them, counts them in its ledger, and keeps none
    of the newer window's ids past its own end."""
    stats = IterationStats()
    once = ExactlyOnce(stats, concurrency=1)
    once.open_window(10, newest_first=True)  # the window [10, 20]
    edge = [CallRecord(trans_id="AT10", create_at=10), CallRecord(trans_id="AT15", create_at=15)]
    assert once.keep_new(edge, offset=0, page_size=2) == edge
    assert once.close_window() == {"AT10": 10}
    once.open_window(0, newest_first=True)  # the window [0, 10]
    older = [CallRecord(trans_id="AT10", create_at=10), CallRecord(trans_id="AT5", create_at=5)]
    assert once.keep_new(older, offset=0, page_size=2) == older[1:]
    assert len(once.ledger) == 2
    assert stats.duplicates == 1
    assert once.close_window() == {}
    assert stats.ledger_peak == 2
