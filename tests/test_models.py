"""Typed records, the bot conversation, and the search filter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import pytest

from vbot_cdr import BotConversation, CallFilter, CallRecord, CollectedField, Hotline, Member
from vbot_cdr._models import describe_structure_error, structure_record
from vbot_cdr.testing import generate_records

UTC = dt.timezone.utc

#: The getAll example of the API document, with its placeholder values.
EXAMPLE: dict[str, Any] = {
    "phone": "sample string 1",
    "name": "sample string 2",
    "customer_uid": "sample string 3",
    "duration": 4,
    "billsec": 5,
    "sip_code": "sample string 6",
    "disposition": "sample string 7",
    "input_log": "sample string 8",
    "status": 9,
    "postage": 10.1,
    "service_charge": 11.1,
    "postage_bot_service": 12.1,
    "member": {"name": "sample string 1", "color": "sample string 2", "vbot_id": "sample 3"},
    "hotline": {"code": "sample string 1", "name": "sample string 2", "phone_number": "3"},
    "call_collected_data": [
        {"cfkey": "k1", "cfname": "n1", "cfvalue": "v1", "description": "d1"},
        {"cfkey": "k2", "cfname": "n2", "cfvalue": "v2", "description": "d2"},
    ],
    "answer_at": 1_735_689_605,
    "end_call_at": 1_735_689_665,
    "campaign_name": "sample string 14",
    "campaign_code": "sample string 15",
    "campaign_group_name": "sample string 16",
    "campaign_group_code": "sample string 17",
    "template_script_name": "sample string 18",
    "template_script_code": "sample string 19",
    "voice_text": "sample string 20",
    "create_at": 1_735_689_600,
    "bot_id": "sample string 22",
    "trans_id": "sample string 23",
    "create_by": "sample string 24",
    "score": 25.1,
    "is_record": True,
}


#: The fields only the v3 CDR endpoints send.
V3_FIELDS = {
    "external_call_id": "EXT-1",
    "campaign_id": 11,
    "campaign_group_id": 12,
    "template_script_id": 13,
    "bot_member_status_connect": "CONNECTED",
}

#: EXAMPLE plus the v3 fields, spelled as the v3 CDR endpoints spell them (camelCase).
CAMEL_EXAMPLE: dict[str, Any] = {
    "phone": "sample string 1",
    "name": "sample string 2",
    "customerUid": "sample string 3",
    "duration": 4,
    "billsec": 5,
    "sipCode": "sample string 6",
    "disposition": "sample string 7",
    "inputLog": "sample string 8",
    "status": 9,
    "postage": 10.1,
    "serviceCharge": 11.1,
    "postageBotService": 12.1,
    "member": {"name": "sample string 1", "color": "sample string 2", "vbotId": "sample 3"},
    "hotline": {"code": "sample string 1", "name": "sample string 2", "phoneNumber": "3"},
    "callCollectedData": [
        {"cfkey": "k1", "cfname": "n1", "cfvalue": "v1", "description": "d1"},
        {"cfkey": "k2", "cfname": "n2", "cfvalue": "v2", "description": "d2"},
    ],
    "answerAt": 1_735_689_605,
    "endCallAt": 1_735_689_665,
    "campaignName": "sample string 14",
    "campaignCode": "sample string 15",
    "campaignGroupName": "sample string 16",
    "campaignGroupCode": "sample string 17",
    "templateScriptName": "sample string 18",
    "templateScriptCode": "sample string 19",
    "voiceText": "sample string 20",
    "createAt": 1_735_689_600,
    "botId": "sample string 22",
    "transId": "sample string 23",
    "createBy": "sample string 24",
    "score": 25.1,
    "isRecord": True,
    "externalCallId": "EXT-1",
    "campaignId": 11,
    "campaignGroupId": 12,
    "templateScriptId": 13,
    "botMemberStatusConnect": "CONNECTED",
}


def structure_error_field(data: Any) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the converter's own error types
        structure_record(data)
    return describe_structure_error(info.value, "data[0]")[0]


# -- CallRecord ---------------------------------------------------------------------------


def test_record_has_every_field_of_the_example() -> None:
    """CallRecord has exactly the getAll example's fields, each typed as in the example."""
    record = structure_record(EXAMPLE)
    assert {a.name for a in attrs.fields(CallRecord)} - {"extras"} == set(EXAMPLE) | set(V3_FIELDS)
    assert record.duration == 4
    assert record.postage == 10.1
    assert record.is_record is True
    assert record.member == Member(
        name="sample string 1", color="sample string 2", vbot_id="sample 3"
    )
    assert record.hotline == Hotline(
        code="sample string 1", name="sample string 2", phone_number="3"
    )
    assert record.call_collected_data == (
        CollectedField(cfkey="k1", cfname="n1", cfvalue="v1", description="d1"),
        CollectedField(cfkey="k2", cfname="n2", cfvalue="v2", description="d2"),
    )
    assert record.extras == {}


@pytest.mark.parametrize(
    "data",
    [
        {},
        dict.fromkeys(EXAMPLE),
        dict.fromkeys(CAMEL_EXAMPLE),
        {"trans_id": "TX1"},
        {"member": {}, "hotline": {"code": None}},
    ],
    ids=["empty", "all-null", "all-null-camel", "one-field", "empty-nested"],
)
def test_missing_or_null_fields_parse(data: dict[str, Any]) -> None:
    """A record with missing or null fields parses; those fields are None (collected data empty)."""
    record = structure_record(data)
    assert record.extras == {}
    for name in [*EXAMPLE, *V3_FIELDS]:
        value = getattr(record, name)
        if name == "call_collected_data":
            assert value == ()
        elif name in data and isinstance(data[name], dict):
            assert value is not None
        else:
            assert value == data.get(name)
    assert record.created is None


def test_unknown_fields_are_kept_in_extras() -> None:
    """Fields the document does not list are kept in extras and come back in to_dict."""
    record = structure_record({"trans_id": "TX1", "queue": "Q7", "tags": ["vip"]})
    assert record.trans_id == "TX1"
    assert dict(record.extras) == {"queue": "Q7", "tags": ["vip"]}
    assert record.to_dict()["queue"] == "Q7"
    assert "extras" not in record.to_dict()
    assert "queue" not in repr(record)


def test_camel_case_records_fill_the_same_fields() -> None:
    """A v3 (camelCase) record reads into the same attributes as its snake_case twin, nested
    objects included, and to_dict gives the seed's snake_case shape plus the v3 fields."""
    record = structure_record(CAMEL_EXAMPLE)
    assert record == structure_record({**EXAMPLE, **V3_FIELDS})
    assert record.trans_id == "sample string 23"
    assert record.create_at == 1_735_689_600
    assert record.member == Member(
        name="sample string 1", color="sample string 2", vbot_id="sample 3"
    )
    assert record.hotline == Hotline(
        code="sample string 1", name="sample string 2", phone_number="3"
    )
    assert (record.external_call_id, record.campaign_id, record.campaign_group_id) == (
        "EXT-1",
        11,
        12,
    )
    assert (record.template_script_id, record.bot_member_status_connect) == (13, "CONNECTED")
    assert record.extras == {}
    assert record.to_dict() == {**EXAMPLE, **V3_FIELDS}


def test_unknown_camel_case_fields_are_kept_as_sent() -> None:
    """A field no dialect documents stays in extras under the name the server sent."""
    record = structure_record({"transId": "TX1", "telcoCode": "VTL", "callNet": "OFFNET"})
    assert record.trans_id == "TX1"
    assert dict(record.extras) == {"telcoCode": "VTL", "callNet": "OFFNET"}
    assert record.to_dict()["telcoCode"] == "VTL"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"createAt": "2025-01-01"}, "data[0].createAt"),
        ({"campaignId": "11"}, "data[0].campaignId"),
        ({"campaign_id": 1.5}, "data[0].campaign_id"),
        ({"member": {"vbotId": 7}}, "data[0].member.vbotId"),
        ({"hotline": {"phoneNumber": 7}}, "data[0].hotline.phoneNumber"),
        ({"callCollectedData": [{"cfkey": 1}]}, "data[0].callCollectedData[0].cfkey"),
        ({"externalCallId": 5}, "data[0].externalCallId"),
    ],
    ids=["time", "int", "int-snake", "nested", "hotline", "collected", "v3-string"],
)
def test_camel_case_errors_name_the_field_as_sent(data: dict[str, Any], field: str) -> None:
    """A mistyped field of a camelCase record is an error naming the field as the server sent
    it, and strict typing holds for the new v3 fields too."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - the converter's own error types
        structure_record(data)
    assert describe_structure_error(info.value, "data[0]", data)[0] == field


def test_ints_are_accepted_for_floats() -> None:
    """A whole number sent for a float field is read as that float."""
    record = structure_record({"postage": 880, "score": 0})
    assert record.postage == 880.0
    assert type(record.postage) is float
    assert type(record.score) is float


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"duration": "4"}, "data[0].duration"),
        ({"duration": 4.5}, "data[0].duration"),
        ({"status": True}, "data[0].status"),
        ({"phone": 84901234567}, "data[0].phone"),
        ({"postage": "10.1"}, "data[0].postage"),
        ({"score": False}, "data[0].score"),
        ({"is_record": 1}, "data[0].is_record"),
        ({"member": ["Lan"]}, "data[0].member"),
        ({"hotline": "HL1"}, "data[0].hotline"),
        ({"hotline": {"phone_number": 2473001234}}, "data[0].hotline.phone_number"),
        ({"call_collected_data": {"cfkey": "a"}}, "data[0].call_collected_data"),
        ({"call_collected_data": ["a"]}, "data[0].call_collected_data[0]"),
        ({"create_at": "1735689600"}, "data[0].create_at"),
    ],
    ids=[
        "int-as-string",
        "int-as-float",
        "int-as-bool",
        "string-as-int",
        "float-as-string",
        "float-as-bool",
        "bool-as-int",
        "object-as-array",
        "object-as-string",
        "nested-string-as-int",
        "array-as-object",
        "array-item-as-string",
        "time-as-string",
    ],
)
def test_wrong_types_are_errors_naming_the_field(data: dict[str, Any], field: str) -> None:
    """A field of the wrong type is an error that names the field, never silently coerced."""
    assert structure_error_field(data) == field


@pytest.mark.parametrize("data", ["x", [], None, 5], ids=["string", "array", "null", "int"])
def test_a_record_must_be_an_object(data: Any) -> None:
    """Something other than a JSON object is not a record."""
    with pytest.raises(TypeError):
        structure_record(data)


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
    assert record.to_dict() == {**dict.fromkeys(V3_FIELDS), **data}
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
