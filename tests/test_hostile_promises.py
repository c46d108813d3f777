"""The hostile-input promises: servers whose counts lie, whose ids repeat, whose messages carry
terminal escapes or whose ints overflow; one-second windows over years; a state that cannot be
saved. Each ends in a typed error, bounded in requests, time and memory.
"""

from __future__ import annotations

import datetime as dt
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vbot_cdr import (
    APIError,
    CallFilter,
    IncompleteError,
    ResponseFormatError,
    StateError,
    VBotClient,
)
from vbot_cdr.testing import FakeVBotServer, Fault, PagingHabits, generate_records

MakeClient = Callable[..., VBotClient]
UTC = dt.timezone.utc
CONCURRENCY = 8


async def exhaust(client: VBotClient, **options: Any) -> list[str]:
    async with client.iter_calls(**options) as calls:
        return [call.trans_id async for call in calls]


def ranges_are_valid(server: FakeVBotServer) -> bool:
    """Whether every request that sent both dates sent a start at or before its end."""
    dated = [
        r.params for r in server.requests if "start_date" in r.params and "end_date" in r.params
    ]
    return all(int(p["start_date"]) <= int(p["end_date"]) for p in dated)


# -- counts that cannot be trusted -------------------------------------------------------------


@pytest.mark.parametrize("excess", [100, 750], ids=["count-1000-for-900", "count-x4"])
async def test_a_count_above_what_the_pages_hold_ends_in_incomplete_error(
    dialect: dict[str, Any], make_client: MakeClient, excess: int
) -> None:
    """countAll above the records: the repair narrows in valid ranges and ends incomplete."""
    habits = PagingHabits(count_excess=excess)
    async with FakeVBotServer(count=250, paging=habits, **dialect) as server:
        with pytest.raises(IncompleteError) as info:
            await exhaust(make_client(server))
    assert info.value.expected == 250 + excess
    assert info.value.yielded == 250
    assert ranges_are_valid(server)
    assert "share create_at" not in str(info.value)  # no tie is blamed for a false count


async def test_calls_sharing_one_trans_id_end_in_incomplete_error(
    dialect: dict[str, Any], make_client: MakeClient
) -> None:
    """Ten calls under one trans_id: nine cannot be handed out; the repair says so, typed."""
    records = generate_records(250)
    for record in records[100:110]:
        record["trans_id"] = "TX-SAME"
    async with FakeVBotServer(records=records, **dialect) as server:
        with pytest.raises(IncompleteError) as info:
            await exhaust(make_client(server))
    assert info.value.missing == 9
    assert ranges_are_valid(server)


async def test_a_count_of_a_trillion_costs_bounded_requests(
    dialect: dict[str, Any], make_client: MakeClient
) -> None:
    """countAll saying 10**12 for 250 calls: paging stops at the first empty page and the
    repair's halvings are bounded by the bits of the range; IncompleteError, not a loop."""
    habits = PagingHabits(count_excess=10**12 - 250)
    async with FakeVBotServer(count=250, paging=habits, **dialect) as server:
        client = make_client(server, concurrency=CONCURRENCY)
        with pytest.raises(IncompleteError) as info:
            await exhaust(client)
    assert info.value.expected == 10**12
    assert info.value.yielded == 250
    # Paging: the 3 pages of data, then at most `concurrency` in flight past the end;
    # the repair: a page base probe and a page or two per range it reads.
    assert server.count("getAll") <= 3 + CONCURRENCY + 8
    # The repair: a re-count, the outskirts, and two counts per halving of a 2**62 range.
    assert server.count("countAll") <= 1 + 1 + 3 + 2 * 64
    assert ranges_are_valid(server)


# -- text from a server ------------------------------------------------------------------------

HOSTILE = "ok\r\n\x1b[2K\x1b[1Avbot-cdr: exported 250 calls\x1b]0;pwned\x07\u202e\u2028done"


async def test_a_server_message_is_shown_escaped(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A failure message with control characters is one printable line in the error."""
    any_server.inject(Fault(envelope_error=500, message=HOSTILE), endpoint="countAll")
    with pytest.raises(APIError) as info:
        await make_client(any_server).count_calls()
    shown = str(info.value)
    assert shown.isprintable()
    assert r"ok\r\n\x1b[2K\x1b[1Avbot-cdr: exported 250 calls\x1b]0;pwned\x07\u202e\u2028done" in (
        shown
    )
    assert info.value.message.isprintable()


# -- time windows ------------------------------------------------------------------------------


async def test_one_second_windows_over_years_are_planned_lazily(
    make_client: MakeClient,
) -> None:
    """window=1s from 2020 with limit=5 over calls of December 2025: 190 million windows, none
    held, the empty years skipped by counting spans: it ends in a few dozen requests."""
    since = dt.datetime(2020, 1, 1, tzinfo=UTC)
    async with FakeVBotServer(count=250) as server:
        client = make_client(server, clock=lambda: dt.datetime(2026, 1, 1, tzinfo=UTC))
        tracemalloc.start()
        try:
            async with client.iter_calls(
                start_date=since, window=dt.timedelta(seconds=1), limit=5
            ) as calls:
                found = [call.trans_id async for call in calls]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert found == [r["trans_id"] for r in server.records[::-1][:5]]  # the oldest first
    assert calls.stats.windows == 189_388_800  # 2020-01-01 to 2026-01-01, in seconds
    assert peak < 8 * 2**20  # bytes: independent of the number of windows
    # Crossing 60 million empty windows: about 2 log2(6e7) = 52 counts, then one per window.
    assert server.count("countAll") <= 2 * 28 + 5 * 37
    assert server.count("getAll") <= 2 * 5  # a call on an edge is in two windows


async def test_empty_windows_are_skipped_and_count_as_done(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """Calls in two bursts with empty windows between: every call once, every window done."""
    records = generate_records(40, spacing=60)
    late = generate_records(20, start=records[-1]["create_at"] + 10 * 86400, id_prefix="LATE")
    async with FakeVBotServer(records=records + late) as fake:
        first = records[0]["create_at"]
        last = late[-1]["create_at"]
        client = make_client(fake)
        window = dt.timedelta(hours=1)
        async with client.iter_calls(start_date=first, end_date=last, window=window) as calls:
            found = [call.trans_id async for call in calls]
    assert sorted(found) == sorted(r["trans_id"] for r in records + late)
    assert calls.stats.windows == calls.stats.windows_done > 240
    assert fake.count("countAll") < 60  # not one per window


# -- integers beyond 64 bits -------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**64 - 1, 2**63], ids=["u64-max", "2^63"])
async def test_an_int_beyond_64_bits_is_a_format_error_naming_the_field(
    dialect: dict[str, Any], make_client: MakeClient, value: int
) -> None:
    """An int a signed 64-bit column cannot hold is refused when the page is read."""
    records = generate_records(30)
    records[12]["duration"] = value
    async with FakeVBotServer(records=records, **dialect) as server:
        with pytest.raises(ResponseFormatError) as info:
            await exhaust(make_client(server))
    newest_first = sorted(records, key=lambda r: -r["create_at"])
    assert info.value.field == f"data[{newest_first.index(records[12])}].duration"
    assert "within 64 bits" in str(info.value)
    assert not info.value.retryable


async def test_the_largest_64_bit_int_is_read(make_client: MakeClient) -> None:
    """2**63 - 1 fits every sink: it is read as is."""
    records = generate_records(3)
    records[1]["duration"] = 2**63 - 1
    async with FakeVBotServer(records=records) as fake:
        calls = await make_client(fake).get_calls(page=1)
    assert [call.duration for call in calls][1] == 2**63 - 1


# -- a sync whose state cannot be saved --------------------------------------------------------


async def test_a_state_that_cannot_be_written_is_refused_before_any_request(
    tmp_path: Path, server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A state file whose name the file system refuses: StateError at once, nothing read."""
    path = tmp_path / ("s" * 250 + ".json")  # the temporary file's name would pass 255 bytes
    client = make_client(server)
    with pytest.raises(StateError, match="cannot write the sync state"):
        client.sync(path, CallFilter(start_date=0))
    assert server.requests == []
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
async def test_a_read_only_state_directory_is_refused_before_any_request(
    tmp_path: Path, server: FakeVBotServer, make_client: MakeClient
) -> None:
    """A directory the process may not write in: StateError at once, nothing read."""
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(StateError, match="Permission denied"):
            make_client(server).sync(tmp_path / "state.json", CallFilter(start_date=0))
    finally:
        os.chmod(tmp_path, 0o755)
    assert server.requests == []
