"""Filters that cannot silently match nothing, against the fake server of every dialect.

Dispositions in every spelling VBot documents, several values of one criterion, and dates
given as epoch numbers in the other unit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wire_name
from vbot_cdr import CallFilter, IncompleteError, VBotClient
from vbot_cdr.testing import FakeVBotServer, generate_records

MakeClient = Callable[..., VBotClient]
UTC = dt.timezone.utc

#: The outcome of each served spelling, per dialect family (v2 and v3-legacy are lowercase).
SERVED_OUTCOME = {
    "answer": "answer",
    "ANSWER": "answer",
    "noanswer": "noanswer",
    "NOANSWER": "noanswer",
    "busy": "busy",
    "BUSY": "busy",
    "chanunavail": "failed",
    "SERVER_ERROR": "failed",
}
#: What the client sends for each outcome, per dialect.
SENT = {
    "v2": {"answer": ["answer"], "noanswer": ["noanswer"], "busy": ["busy"]},
    "v3": {"answer": ["ANSWER"], "noanswer": ["NOANSWER"], "busy": ["BUSY"]},
}
SENT["v3-legacy"] = SENT["v2"]
SENT["v2"]["failed"] = SENT["v3-legacy"]["failed"] = ["chanunavail", "congestion"]
SENT["v3"]["failed"] = ["NOT_MONEY", "NOT_FOUND_PRICE", "NOT_FOUND_TELCO", "SERVER_ERROR"]

SPELLINGS = [
    ("answer", "answer"),
    ("ANSWER", "answer"),
    ("answered", "answer"),
    ("ANSWERED", "answer"),
    ("Answered", "answer"),
    ("noanswer", "noanswer"),
    ("NOANSWER", "noanswer"),
    ("no answer", "noanswer"),
    ("NO ANSWER", "noanswer"),
    ("no_answer", "noanswer"),
    ("busy", "busy"),
    ("BUSY", "busy"),
    ("failed", "failed"),
    ("FAILED", "failed"),
]


def ids_of(server: FakeVBotServer, outcome: str) -> list[str]:
    """The trans_ids of the served calls of ``outcome``, in the server's order."""
    return [
        r["trans_id"] for r in server.records if SERVED_OUTCOME.get(r["disposition"]) == outcome
    ]


@pytest.mark.parametrize(("spelling", "outcome"), SPELLINGS, ids=[s for s, _ in SPELLINGS])
async def test_every_spelling_of_an_outcome_finds_its_calls(
    any_server: FakeVBotServer, make_client: MakeClient, spelling: str, outcome: str
) -> None:
    """Each documented spelling, in any case, finds the calls of its outcome in every dialect."""
    server = any_server
    client = make_client(server)
    expected = ids_of(server, outcome)
    assert expected  # the fake serves calls of every outcome tested here
    assert await client.count_calls(disposition=spelling) == len(expected)
    async with client.iter_calls(disposition=spelling) as calls:
        found = [call.trans_id async for call in calls]
    assert sorted(found) == sorted(expected)
    assert len(found) == len(set(found))
    sent = {r.params[wire_name(server, "disposition")] for r in server.requests}
    assert sent == set(SENT[server.api][outcome])


@pytest.mark.parametrize("value", ["ANSWERD", "ok", "200", "no-such"])
async def test_an_unknown_disposition_is_refused_before_any_request(
    any_server: FakeVBotServer, make_client: MakeClient, value: str
) -> None:
    """A value that is no outcome is a ValueError listing the valid ones; nothing is sent."""
    client = make_client(any_server)
    with pytest.raises(ValueError, match=r"not a call outcome .* give one of: answer, .*busy"):
        client.iter_calls(disposition=value)
    with pytest.raises(ValueError, match="give one of"):
        await client.count_calls(disposition=value)
    assert any_server.requests == []


async def test_an_outcome_of_another_dialect_is_refused_naming_the_dialect(
    make_client: MakeClient,
) -> None:
    """v2's ``cancel`` is no v3 outcome, and v3's ``NOT_MONEY`` no v2 one: refused, not sent."""
    async with FakeVBotServer(count=10, api="v3") as v3, FakeVBotServer(count=10) as v2:
        with pytest.raises(ValueError, match="the v3 API knows"):
            await make_client(v3).count_calls(disposition="cancel")
        with pytest.raises(ValueError, match="the v2 API knows"):
            await make_client(v2).count_calls(disposition="NOT_MONEY")
        assert v3.requests == v2.requests == []


def test_a_filter_keeps_the_spelling_it_was_given() -> None:
    """CallFilter holds what the user typed; the client translates it for its dialect."""
    assert CallFilter(disposition="NO ANSWER").disposition == "NO ANSWER"


# -- several values --------------------------------------------------------------------------


CODES = ["CMP_NHACNO_T11", "CMP_KHAOSAT_CSKH"]


async def test_several_campaign_codes_give_the_calls_of_each_once(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """campaign_code=[A, B]: every call of A and of B, once; each code counted on its own."""
    server = any_server
    client = make_client(server, page_size=20)
    expected = {r["trans_id"] for r in server.records if r["campaign_code"] in CODES}
    assert all(any(r["campaign_code"] == c for r in server.records) for c in CODES)
    assert await client.count_calls(campaign_code=CODES) == len(expected)
    server.reset_counters()
    async with client.iter_calls(campaign_code=CODES) as calls:
        found = [call.trans_id async for call in calls]
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert calls.total == len(expected)
    counted = [r.params["campaign_code"] for r in server.requests if r.endpoint == "countAll"]
    assert counted == CODES  # one countAll per code: each verified against its own count
    assert all("," not in r.params["campaign_code"] for r in server.requests)


async def test_several_values_of_two_criteria_read_each_combination(
    any_server: FakeVBotServer, make_client: MakeClient
) -> None:
    """Two codes and two outcomes: the four combinations, each counted, their calls once."""
    server = any_server
    client = make_client(server, page_size=50)
    outcomes = {"answer", "busy"}
    expected = {
        r["trans_id"]
        for r in server.records
        if r["campaign_code"] in CODES and SERVED_OUTCOME.get(r["disposition"]) in outcomes
    }
    async with client.iter_calls(campaign_code=CODES, disposition=["ANSWERED", "BUSY"]) as calls:
        found = [call.trans_id async for call in calls]
    assert sorted(found) == sorted(expected)
    assert server.count("countAll") == 4


async def test_several_codes_over_time_windows_each_once(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """Windows and several codes together: each window reads each code; every call once."""
    records = server.records
    start = min(r["create_at"] for r in records)
    end = max(r["create_at"] for r in records)
    client = make_client(server)
    window = dt.timedelta(seconds=(end - start) // 3 + 1)
    expected = {r["trans_id"] for r in records if r["campaign_code"] in CODES}
    async with client.iter_calls(
        campaign_code=CODES, start_date=start, end_date=end, window=window
    ) as calls:
        found = [call.trans_id async for call in calls]
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert calls.stats.windows == calls.stats.windows_done == 3
    assert server.count("countAll") == 3 * len(CODES)


async def test_one_page_of_several_values_is_refused(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """get_calls reads one query's page: several codes are a ValueError pointing to iter_calls."""
    with pytest.raises(ValueError, match="iter_calls"):
        await make_client(server).get_calls(page=1, campaign_code=CODES)
    assert server.requests == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["A"], "A"),
        (("A", "B", "A"), ("A", "B")),
        ("A", "A"),
        (None, None),
    ],
    ids=["one-in-a-list", "repeats-dropped", "a-string", "none"],
)
def test_several_values_are_kept_distinct_in_order(value: Any, expected: Any) -> None:
    """A list of one value is that value; repeats are dropped; the order is kept."""
    assert CallFilter(campaign_code=value).campaign_code == expected


def test_an_empty_list_of_values_is_refused() -> None:
    """An empty list would match nothing: a ValueError."""
    with pytest.raises(ValueError, match="empty list"):
        CallFilter(hotline=[])


def test_variants_cross_the_criteria_given_several() -> None:
    """variants(): one filter per combination, each criterion a single value."""
    variants = CallFilter(campaign_code=["A", "B"], hotline=["H1", "H2"], status=1).variants()
    assert [(v.campaign_code, v.hotline, v.status) for v in variants] == [
        ("A", "H1", 1),
        ("A", "H2", 1),
        ("B", "H1", 1),
        ("B", "H2", 1),
    ]


# -- dates given as numbers --------------------------------------------------------------------

SECONDS = 1_764_547_200  # 2025-12-01T00:00:00Z
MILLISECONDS = SECONDS * 1000


async def test_a_millisecond_epoch_for_a_seconds_dialect_is_refused(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """v2 reads epoch seconds: a millisecond number is refused, saying the unit and the fix."""
    client = make_client(server)
    with pytest.raises(ValueError, match=r"milliseconds.*sends epoch seconds: give 1764547200"):
        await client.count_calls(start_date=MILLISECONDS)
    with pytest.raises(ValueError, match=r"end_date .*milliseconds"):
        client.iter_calls(end_date=MILLISECONDS + 1)
    assert server.requests == []
    assert await client.count_calls(start_date=SECONDS) > 0


async def test_a_seconds_epoch_for_a_milliseconds_dialect_is_refused(
    make_client: MakeClient,
) -> None:
    """v3 reads epoch milliseconds: a seconds number is refused, saying the unit and the fix."""
    async with FakeVBotServer(count=50, api="v3") as server:
        client = make_client(server)
        with pytest.raises(ValueError, match=r"seconds.*milliseconds: give 1764547200000"):
            await client.count_calls(start_date=SECONDS)
        assert server.requests == []
        assert await client.count_calls(start_date=MILLISECONDS) == 50
        assert await client.count_calls(start_date=0) == 50  # the epoch itself is no unit


async def test_dates_in_messages_are_iso_8601(
    server: FakeVBotServer, make_client: MakeClient
) -> None:
    """start_date after end_date names both in ISO 8601, never as a Python repr."""
    later = dt.datetime(2025, 12, 2, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    with pytest.raises(ValueError, match="after") as info:
        CallFilter(start_date=later, end_date=dt.datetime(2025, 12, 1, tzinfo=UTC))
    assert "(2025-12-02T00:00:00+07:00) is after end_date (2025-12-01T00:00:00+00:00)" in str(
        info.value
    )
    with pytest.raises(ValueError, match="after") as mixed:
        await make_client(server).count_calls(start_date=later, end_date=SECONDS - 86400)
    assert "datetime.datetime" not in str(mixed.value)
    assert "1764460800 = 2025-11-30T00:00:00+00:00" in str(mixed.value)


async def test_a_code_whose_calls_cannot_all_be_read_is_named(make_client: MakeClient) -> None:
    """Verified per code: the code whose count its pages cannot match is named in the error."""
    records = generate_records(250)
    shared = [r for r in records if r["campaign_code"] == CODES[1]][3:8]
    for record in shared:
        record["trans_id"] = "TX-SAME"
    async with FakeVBotServer(records=records) as server:
        with pytest.raises(IncompleteError, match=f"campaign_code {CODES[1]}: ") as info:
            async with make_client(server).iter_calls(campaign_code=CODES) as calls:
                [call async for call in calls]
    assert info.value.missing == 4
    assert "trans_id handed out already" in str(info.value)


async def test_a_sync_of_several_codes_hands_out_each_call_once(
    tmp_path: Path, make_client: MakeClient
) -> None:
    """A sync of two codes, run twice with new calls between: each call once; the state is
    the same whichever order the codes are given in."""
    records = generate_records(200)
    start, end = records[0]["create_at"], records[-1]["create_at"]
    expected = {r["trans_id"] for r in records if r["campaign_code"] in CODES}
    state = tmp_path / "state.json"
    async with FakeVBotServer(records=records[:120]) as server:
        found = []
        for now, codes in ((records[120]["create_at"], CODES), (end + 3600, CODES[::-1])):
            client = make_client(server, clock=lambda at=now: dt.datetime.fromtimestamp(at, UTC))
            async with client.sync(
                state, campaign_code=codes, start_date=start, window=dt.timedelta(hours=1)
            ) as sync:
                found += [call.trans_id async for call in sync]
            server.add_records(records[120:])
    assert len(found) == len(set(found))
    assert set(found) == expected
