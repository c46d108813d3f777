"""Typed records, the bot conversation, and the search filter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from tests._records import EXAMPLE, exported
from vbot_cdr import BotConversation, CallFilter, CallRecord
from vbot_cdr._decoding import structure_record
from vbot_cdr.testing import generate_records

UTC = dt.timezone.utc


# -- CallRecord ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (1_735_689_600, dt.datetime(2025, 1, 1, tzinfo=UTC)),
        (1_735_689_600_000, dt.datetime(2025, 1, 1, tzinfo=UTC)),
        (1_735_689_600_250, dt.datetime(2025, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)),
        (10**11 - 1, dt.datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),
        (10**11, dt.datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),
        (0, None),  # the API's "never": an unanswered call has answer_at 0
        (None, None),
    ],
    ids=[
        "seconds",
        "milliseconds",
        "milliseconds-fraction",
        "largest-seconds",
        "smallest-milliseconds",
        "zero",
        "null",
    ],
)
def test_times_are_aware_utc_seconds_or_milliseconds_by_magnitude(
    epoch: int | None, expected: dt.datetime | None
) -> None:
    """created, answered and ended are aware UTC datetimes; >= 10**11 is read as milliseconds."""
    record = CallRecord(create_at=epoch, answer_at=epoch, end_call_at=epoch)
    assert record.created == record.answered == record.ended == expected
    if expected is not None:
        assert record.created is not None
        assert record.created.tzinfo is UTC


def test_times_come_from_their_own_fields() -> None:
    """created, answered and ended read create_at, answer_at and end_call_at respectively."""
    record = structure_record(EXAMPLE)
    assert record.created == dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert record.answered == dt.datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert record.ended == dt.datetime(2025, 1, 1, 0, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [EXAMPLE, *generate_records(3, seed=7), {**EXAMPLE, "new_field": {"a": [1]}}],
    ids=["example", "generated-0", "generated-1", "generated-2", "with-unknown-field"],
)
def test_to_dict_gives_back_the_api_shape(data: dict[str, Any]) -> None:
    """to_dict returns the record as the API gave it (the v3-only fields null), and parses back
    to an equal record."""
    record = structure_record(data)
    assert record.to_dict() == exported(data)
    assert structure_record(record.to_dict()) == record


def test_to_dict_of_a_sparse_record_reparses_equal() -> None:
    """A record built from few fields round-trips through to_dict to an equal record."""
    record = structure_record({"trans_id": "TX1", "member": {"name": "Lan"}})
    assert structure_record(record.to_dict()) == record
    assert record.to_dict()["call_collected_data"] == []


def test_records_are_frozen_and_hashable() -> None:
    """A CallRecord cannot be changed and, being frozen, can go in a set."""
    record = structure_record({**EXAMPLE, "unknown": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.phone = "x"  # type: ignore[misc]
    assert len({record, structure_record({**EXAMPLE, "unknown": 1}), CallRecord()}) == 2


# -- BotConversation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "turns"),
    [
        (
            '[{"speaker": "bot", "text": "Xin chào"}, "Dạ"]',
            ({"speaker": "bot", "text": "Xin chào"}, "Dạ"),
        ),
        ("[]", ()),
        ('{"turns": [1]}', ()),
        ("Bot: Xin chào\nKhách: Dạ vâng", ()),
        ("[1, 2", ()),
        ("", ()),
        ("42", ()),
    ],
    ids=[
        "json-array",
        "empty-array",
        "json-object",
        "plain-text",
        "broken-json",
        "empty",
        "number",
    ],
)
def test_conversation_keeps_raw_and_parses_only_json_arrays(
    raw: str, turns: tuple[Any, ...]
) -> None:
    """raw is kept exactly; turns holds a JSON array's items and is empty for anything else."""
    conversation = BotConversation.from_raw("TX1", raw)
    assert conversation.raw == raw
    assert conversation.turns == turns
    assert conversation.trans_id == "TX1"


def test_conversations_are_hashable() -> None:
    """A BotConversation is frozen and hashable even when its turns hold JSON objects."""
    raw = '[{"speaker": "bot"}]'
    assert len({BotConversation.from_raw("TX1", raw), BotConversation.from_raw("TX1", raw)}) == 1


# -- CallFilter ---------------------------------------------------------------------------


def test_filter_is_keyword_only_and_frozen() -> None:
    """CallFilter takes keywords only and cannot be changed once made."""
    with pytest.raises(TypeError):
        CallFilter("BOT")  # type: ignore[misc]
    call_filter = CallFilter(bot_id="BOT")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        call_filter.bot_id = "OTHER"  # type: ignore[misc]
    assert CallFilter(bot_id="BOT") == call_filter
    assert hash(CallFilter(bot_id="BOT")) == hash(call_filter)


@pytest.mark.parametrize("name", ["start_date", "end_date"])
def test_naive_datetime_is_value_error(name: str) -> None:
    """A naive datetime for a date criterion is a ValueError, since it names no instant."""
    with pytest.raises(ValueError, match="naive"):
        CallFilter(**{name: dt.datetime(2025, 1, 1)})


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (1_735_689_601, 1_735_689_600),
        (dt.datetime(2025, 1, 2, tzinfo=UTC), dt.datetime(2025, 1, 1, tzinfo=UTC)),
        (dt.datetime(2025, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=7))), 1_735_689_600),
        (1_735_689_601_000, 1_735_689_600),
    ],
    ids=["ints", "datetimes", "datetime-after-int", "milliseconds-after-seconds"],
)
def test_start_after_end_is_value_error(start: int | dt.datetime, end: int | dt.datetime) -> None:
    """start_date after end_date is a ValueError, comparing instants whatever their form."""
    with pytest.raises(ValueError, match="after"):
        CallFilter(start_date=start, end_date=end)


def test_start_equal_to_end_is_allowed() -> None:
    """A range of one instant is a valid filter."""
    moment = dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert CallFilter(start_date=moment, end_date=1_735_689_600).start_date == moment


@pytest.mark.parametrize(
    "criteria",
    [
        {"bot_id": 5},
        {"status": "1"},
        {"status": True},
        {"start_date": "2025-01-01"},
        {"start_date": 1.5},
        {"end_date": True},
        {"campaign_code": ["A", 2]},
    ],
    ids=[
        "int-bot-id",
        "string-status",
        "bool-status",
        "string-date",
        "float-date",
        "bool-date",
        "list-with-an-int",
    ],
)
def test_wrong_criterion_type_is_type_error(criteria: dict[str, Any]) -> None:
    """A criterion of the wrong type is a TypeError when the filter is made."""
    with pytest.raises(TypeError):
        CallFilter(**criteria)


def test_unknown_criterion_is_type_error() -> None:
    """An unknown criterion name is a TypeError, both in the constructor and as keywords."""
    with pytest.raises(TypeError):
        CallFilter(campaign="CMP")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="campaign"):
        CallFilter.coalesce(None, {"campaign": "CMP"})


def test_filter_and_keywords_together_is_type_error() -> None:
    """Giving both a CallFilter and keyword criteria is a TypeError."""
    with pytest.raises(TypeError, match="not both"):
        CallFilter.coalesce(CallFilter(bot_id="A"), {"campaign_code": "B"})


@pytest.mark.parametrize(
    ("given", "criteria", "expected"),
    [
        (None, {}, CallFilter()),
        (None, {"bot_id": "A", "status": 1}, CallFilter(bot_id="A", status=1)),
        (CallFilter(key="09"), {}, CallFilter(key="09")),
    ],
    ids=["nothing", "keywords", "object"],
)
def test_coalesce_builds_one_filter(
    given: CallFilter | None, criteria: dict[str, Any], expected: CallFilter
) -> None:
    """A filter object or keyword criteria become one CallFilter."""
    assert CallFilter.coalesce(given, criteria) == expected


def test_coalesce_refuses_a_mapping_as_filter() -> None:
    """A dict passed where a CallFilter goes is a TypeError, not a silent empty filter."""
    with pytest.raises(TypeError, match="CallFilter"):
        CallFilter.coalesce({"bot_id": "A"}, {})  # type: ignore[arg-type]
