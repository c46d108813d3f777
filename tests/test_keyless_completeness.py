"""Calls without a ``trans_id`` on the verify-and-repair path: still complete, or a typed error."""

from __future__ import annotations

import collections

import pytest

from vbot_cdr import IncompleteError, VBotClient
from vbot_cdr.testing import FakeVBotServer, PagingHabits, generate_records

START = 1_764_547_200


async def test_key_less_calls_among_shuffled_ties_end_complete_or_incomplete() -> None:
    """30 calls a second, ordered anew per request, one in seven without ``trans_id``: the
    iteration yields every call once, or raises `IncompleteError`."""
    records = generate_records(300, seed=1)
    for index, record in enumerate(records):
        record["create_at"] = START + index // 30
        if index % 7 == 0:
            record["trans_id"] = ""
    habits = PagingHabits(shuffle_ties=True, seed=3)
    async with (
        FakeVBotServer(records=records, paging=habits) as server,
        VBotClient(server.token, base_url=server.base_url, page_size=50) as client,
    ):
        try:
            got = [record async for record in client.iter_calls()]
        except IncompleteError:
            return
    keyed = collections.Counter(record.trans_id for record in got if record.trans_id)
    assert sum(1 for record in got if not record.trans_id) == sum(
        1 for record in records if not record["trans_id"]
    )
    assert set(keyed) == {record["trans_id"] for record in records if record["trans_id"]}
    assert max(keyed.values()) == 1


async def test_key_less_calls_in_a_range_the_repair_re_reads_are_an_incomplete_error() -> None:
    """A repair re-reads whole ranges: a call without ``trans_id`` found there cannot be told
    from one handed out already, so the iteration says so instead of yielding it again."""
    records = generate_records(400, seed=2)
    for index, record in enumerate(records):
        record["create_at"] = START + index
        if index % 50 == 0:
            record["trans_id"] = ""
    habits = PagingHabits(deep_cap=200)  # pages past offset 200 come back empty
    async with (
        FakeVBotServer(records=records, paging=habits) as server,
        VBotClient(server.token, base_url=server.base_url, page_size=50) as client,
    ):
        with pytest.raises(IncompleteError, match="without trans_id") as info:
            [record async for record in client.iter_calls()]
    assert info.value.expected == 400


async def test_key_less_calls_on_a_server_whose_order_holds_are_each_yielded_once() -> None:
    """Where the server pages as assumed, calls without ``trans_id`` are yielded, each once,
    and the iteration ends complete."""
    records = generate_records(300, seed=3)
    for index, record in enumerate(records):
        record["create_at"] = START + index // 30  # ties, but in a stable order
        if index % 7 == 0:
            record["trans_id"] = ""
    async with (
        FakeVBotServer(records=records) as server,
        VBotClient(server.token, base_url=server.base_url, page_size=50) as client,
    ):
        got = [record async for record in client.iter_calls()]
    assert sorted(r.to_dict()["phone"] or "" for r in got) == sorted(
        r["phone"] or "" for r in records
    )
    assert sum(1 for r in got if not r.trans_id) == 43
