"""Calls without a ``trans_id`` on the verify-and-repair path: still complete, or a typed error.

Found in review; the repair (`_reconcile`) is being reworked, so the test is a strict xfail
until it holds: today the iteration ends without an exception, with calls missing and
key-less calls repeated.
"""

from __future__ import annotations

import collections

import pytest

from vbot_cdr import IncompleteError, VBotClient
from vbot_cdr.testing import FakeVBotServer, PagingHabits, generate_records

START = 1_764_547_200


@pytest.mark.xfail(
    strict=True,
    reason="a re-read range yields key-less calls again, and their repeats fill the count",
)
async def test_key_less_calls_among_shuffled_ties_end_complete_or_incomplete() -> None:
    """30 calls a second, ordered anew per request, one in seven without ``trans_id``: the
    iteration yields every call once, or raises `IncompleteError`."""
    records = generate_records(300, seed=1)
    for index, record in enumerate(records):
        record["create_at"] = START + index // 30
        if index % 7 == 0:
            record["trans_id"] = ""
    habits = PagingHabits(shuffle_ties=True, seed=3)
    async with FakeVBotServer(records=records, paging=habits) as server, VBotClient(
        server.token, base_url=server.base_url, page_size=50
    ) as client:
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
