"""Reading records from JSON: what a record may hold, and the three decoders (msgspec twins,
generated readers, cattrs converter) agreeing on any input."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._records import CAMEL_EXAMPLE, EXAMPLE, V3_FIELDS, exported
from vbot_cdr import (
    APIError,
    CallRecord,
    CollectedField,
    Hotline,
    Member,
    ResponseFormatError,
)
from vbot_cdr._decoding import (
    _ALIASES,
    STRUCTURE_ERRORS,
    _Invalid,
    _read_record,
    _structure_with_converter,
    build_records,
    camel_case,
    describe_structure_error,
    structure_record,
    structure_records,
)
from vbot_cdr._dialects import V2, dialect_for
from vbot_cdr._models import WEBHOOK_ONLY
from vbot_cdr._wire import (
    Request,
    decode_record_page,
    read_record_page,
    read_records,
    read_response,
)
from vbot_cdr.testing import generate_records

SNAKE_FIELDS = [a.name for a in attrs.fields(CallRecord) if a.name != "extras"]
# Every field also under its camelCase name (the v3 CDR endpoints' spelling).
FIELDS = [*SNAKE_FIELDS, *_ALIASES[CallRecord]]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
NESTED_KEYS = [
    "name",
    "color",
    "vbot_id",
    "vbotId",
    "code",
    "phone_number",
    "phoneNumber",
    "cfkey",
    "cfvalue",
    "x",
]
SAMPLES = generate_records(20, seed=3)
PUSHED_NAMES = [
    spelling
    for name in WEBHOOK_ONLY
    if "." not in name
    for spelling in (name, camel_case(name))
]
OBJECTS = st.dictionaries(
    st.sampled_from(NESTED_KEYS), st.one_of(st.none(), st.text(max_size=3), SCALARS), max_size=5
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid generated record with some fields dropped, mistyped, or added."""
    record: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(SAMPLES)))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        record.pop(name, None)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        record[name] = draw(st.one_of(JSON, OBJECTS, st.lists(OBJECTS, max_size=2)))
    record.update(draw(st.dictionaries(st.sampled_from(["queue", "tags", "extras"]), JSON)))
    return record


def converter_outcome(data: Any) -> CallRecord | None:
    try:
        return _structure_with_converter(data)
    except STRUCTURE_ERRORS:
        return None


@settings(max_examples=400, deadline=None)
@given(records())
def test_reader_agrees_with_converter(data: dict[str, Any]) -> None:
    """The reader accepts exactly what the converter accepts, builds the same record, and
    leaves its input as it was."""
    before = copy.deepcopy(data)
    expected = converter_outcome(data)
    try:
        record = _read_record(data)
    except _Invalid:
        # An object with a field only the webhook sends is the converter's to read.
        pushed = any(data.get(name) is not None for name in PUSHED_NAMES)
        assert expected is None or pushed, "the reader refused a record the converter accepts"
    else:
        assert expected is not None, "the reader accepted a record the converter refuses"
        assert record == expected
        assert dict(record.extras) == dict(expected.extras)
    assert data == before


@given(st.one_of(JSON, st.lists(OBJECTS)))
def test_reader_refuses_what_is_not_an_object(data: Any) -> None:
    """Anything but a JSON object is refused, as the converter refuses it."""
    if isinstance(data, dict):
        return
    with pytest.raises(_Invalid):
        _read_record(data)
    assert converter_outcome(data) is None


def test_generated_records_read_the_same_both_ways() -> None:
    """A page of realistic records reads the same through the reader and the converter."""
    page = generate_records(200, seed=11)
    assert structure_records(page) == [_structure_with_converter(r) for r in page]


def test_equal_members_are_shared() -> None:
    """Equal all-string objects come back as one frozen instance (memory, speed)."""
    first, second = (
        structure_record({"member": {"name": "Lan", "color": "#fff", "vbot_id": "V1"}})
        for _ in range(2)
    )
    assert first.member is second.member
    assert first.member == Member(name="Lan", color="#fff", vbot_id="V1")


def test_a_bad_record_in_a_page_is_named() -> None:
    """One bad record among good ones still fails the page, naming its index and field."""
    page = generate_records(5, seed=2)
    page[3]["member"] = {"name": 7}
    with pytest.raises(Exception, match=r"data\[3\]\.member\.name") as info:
        read_records(Request("getAll", {}, page=1, dialect=V2), page)
    assert type(info.value).__name__ == "ResponseFormatError"


# -- the msgspec fast path and the general path it falls back to ---------------------------

GET_ALL = Request("getAll", {}, page=1, dialect=V2)
#: Ints around the edges of what orjson and msgspec read as ints (orjson reads wider as float).
WIDE_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63), -(2**63) - 1])


CAMEL_NAMES = {cls: {name: alias for alias, name in _ALIASES[cls].items()} for cls in _ALIASES}


def camel_case(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as the v3 CDR endpoints spell it: camelCase names, member and hotline too."""
    nested = {"member": CAMEL_NAMES[Member], "hotline": CAMEL_NAMES[Hotline]}
    spelled = {}
    for key, value in record.items():
        if key in nested and isinstance(value, dict):
            value = {nested[key].get(k, k): v for k, v in value.items()}
        spelled[CAMEL_NAMES[CallRecord].get(key, key)] = value
    return spelled


@st.composite
def pages(draw: st.DrawFn) -> bytes:
    """A ``getAll`` body: mostly a success envelope of mutated records in either spelling,
    sometimes not."""
    page: list[Any] = draw(st.lists(records(), max_size=4))
    if draw(st.booleans()):
        page = [camel_case(record) for record in page]
    for index in draw(st.lists(st.integers(0, 3), max_size=2)):
        if index < len(page):
            field = draw(st.sampled_from(FIELDS))
            page[index][field] = draw(st.one_of(WIDE_INTS, JSON))
    data = draw(st.one_of(st.just(page), st.just(page), st.just(page), JSON))
    status = draw(st.sampled_from([1, 1, 1, 0, True, 1.0, "1", None]))
    envelope: dict[str, Any] = {"status": status, "error": 0, "message": "ok", "data": data}
    if draw(st.booleans()) and not page:
        del envelope["data"]
    # json, not orjson: orjson cannot write the ints wider than 64 bits that a server might.
    return json.dumps(envelope, ensure_ascii=draw(st.booleans())).encode()


def outcome(read: Callable[[], list[CallRecord]]) -> Any:
    """What a read gives: each record with its extras, or the error with what it says."""
    try:
        records = read()
    except ResponseFormatError as exc:
        return type(exc), str(exc), exc.field, exc.retryable
    except APIError as exc:
        return type(exc), str(exc), exc.error_code
    return [(record, dict(record.extras)) for record in records]


def general_path(body: bytes) -> Any:
    return outcome(lambda: read_records(GET_ALL, read_response(GET_ALL, 200, {}, body)))


@settings(max_examples=300, deadline=None)
@given(pages())
def test_fast_path_and_general_path_agree(body: bytes) -> None:
    """A page reads to the same records, or the same error, through msgspec or the general
    path; and msgspec only ever answers when the general path would give records."""
    fast = decode_record_page(body)
    expected = general_path(body)
    status = None if fast is None else fast[0].get("status")
    if fast is not None and type(status) is int and status == 1:
        assert [(record, dict(record.extras)) for record in build_records(fast[1])] == expected
    assert outcome(lambda: build_records(read_record_page(GET_ALL, 200, {}, body))) == expected


@pytest.mark.parametrize("spell", [dict, camel_case], ids=["snake_case", "camelCase"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_pages_take_the_fast_path(seed: int, spell: Callable[[Any], Any]) -> None:
    """Generated pages, every field set and of its type, in either spelling (with the v3
    fields), are decoded by msgspec into the records the readers make of them."""
    page = generate_records(300, seed=seed)
    for index, record in enumerate(page):
        record.update(external_call_id=f"X{index}", campaign_id=index, template_script_id=None)
    body = json.dumps({"status": 1, "error": 0, "message": "ok", "data": list(map(spell, page))})
    decoded = decode_record_page(body.encode())
    assert decoded is not None
    envelope, rows = decoded
    fast = build_records(rows)
    assert envelope == {"status": 1, "error": 0, "message": "ok"}
    assert fast == structure_records(page)
    assert [record.to_dict() for record in fast] == [r.to_dict() for r in structure_records(page)]
    assert all(type(record) is CallRecord and record.extras == {} for record in fast)


@pytest.mark.parametrize(
    ("api", "envelope", "fast"),
    [
        ("v2", {"status": 1, "error": 0, "message": "ok"}, True),
        ("v2", {"error": 0, "message": "ok"}, True),
        ("v2", {"status": 0, "error": 500, "message": "no"}, False),
        ("v2", {"error": 7, "message": "no"}, False),
        ("v3-legacy", {"error": 0, "message": "ok"}, True),
        ("v3", {"status": 200, "msg": "success", "errorCode": 0}, True),
        ("v3", {"status": 500, "msg": "error", "errorCode": 500}, False),
    ],
    ids=[
        "v2-seed",
        "v2-2026",
        "v2-seed-failure",
        "v2-2026-failure",
        "v3-legacy",
        "v3",
        "v3-failure",
    ],
)
def test_each_dialect_judges_the_fast_path_envelope(
    api: str, envelope: dict[str, Any], fast: bool
) -> None:
    """A page's envelope is judged by the request's dialect: its success envelopes take the
    msgspec path, its failures the general path that raises the server's error."""
    request = Request("getAll", {}, page=1, dialect=dialect_for(api))
    page = generate_records(3, seed=0)
    body = json.dumps({**envelope, "data": page}).encode()
    if fast:
        rows = read_record_page(request, 200, {}, body)
        # The msgspec path hands over its twins; the general path would give CallRecords.
        assert all(isinstance(row, msgspec.Struct) for row in rows)
        assert build_records(rows) == structure_records(page)
    else:
        with pytest.raises(APIError):
            read_record_page(request, 200, {}, body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"queue": "Q7"}, None),
        ({"extras": {"a": 1}}, None),
        ({"duration": 2**70}, "data[1].duration"),
        ({"duration": 2**63}, "data[1].duration"),
        ({"call_collected_data": None}, None),
        ({"duration": True}, "data[1].duration"),
        ({"member": {"name": 7}}, "data[1].member.name"),
        ({"member": {"name": "Lan", "vbotId": "V1", "vbot_id": "V1"}}, None),
        ({"transId": "TX1", "trans_id": "TX1"}, None),
    ],
    ids=[
        "unknown",
        "named-extras",
        "int-beyond-64-bits",
        "uint64-beyond-int64",
        "null-array",
        "bool",
        "nested",
        "member-in-both-spellings",
        "record-in-both-spellings",
    ],
)
@pytest.mark.parametrize("spell", [dict, camel_case], ids=["snake_case", "camelCase"])
def test_what_msgspec_leaves_to_the_general_path(
    change: dict[str, Any], field: str | None, spell: Callable[[Any], Any]
) -> None:
    """Unknown fields, ints orjson reads otherwise, nulls the readers accept, mixed spellings
    and bad values go the general path: the same extras, the same values, the same error."""
    page = list(map(spell, generate_records(3, seed=5)))
    page[1].update(change)
    body = json.dumps({"status": 1, "error": 0, "message": "ok", "data": page}).encode()
    assert decode_record_page(body) is None
    result = outcome(lambda: build_records(read_record_page(GET_ALL, 200, {}, body)))
    assert result == general_path(body)
    if field is None:
        assert isinstance(result, list)
    else:
        assert result[2] == field


def test_a_bad_camel_case_record_is_named_as_sent() -> None:
    """A mistyped field of a camelCase (v3) record is named as the server spelled it."""
    page = generate_records(5, seed=2)
    page[3] = {"transId": "TX3", "createAt": "yesterday"}
    with pytest.raises(Exception, match=r"data\[3\]\.createAt: ") as info:
        read_records(Request("getAll", {}, page=1, dialect=V2), page)
    assert getattr(info.value, "field", None) == "data[3].createAt"


# -- what a record may hold ----------------------------------------------------------------


def structure_error_field(data: Any) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the converter's own error types
        structure_record(data)
    return describe_structure_error(info.value, "data[0]")[0]


def test_record_has_every_field_of_the_example() -> None:
    """CallRecord has exactly the getAll example's fields (and the webhook's own), each typed
    as in the example."""
    record = structure_record(EXAMPLE)
    pushed = {name for name in WEBHOOK_ONLY if "." not in name}
    fields = {a.name for a in attrs.fields(CallRecord)} - {"extras"}
    assert fields == set(EXAMPLE) | set(V3_FIELDS) | pushed
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
    assert record.to_dict() == exported({**EXAMPLE, **V3_FIELDS})


def test_unknown_camel_case_fields_are_kept_as_sent() -> None:
    """A field no dialect documents stays in extras under the name the server sent."""
    record = structure_record({"transId": "TX1", "queueName": "Q", "tagLabel": "VIP"})
    assert record.trans_id == "TX1"
    assert dict(record.extras) == {"queueName": "Q", "tagLabel": "VIP"}
    assert record.to_dict()["queueName"] == "Q"


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


_UNSTRUCTURE = cattrs.Converter().get_unstructure_hook(CallRecord)


def unstructured(record: CallRecord) -> dict[str, Any]:
    """``record.to_dict()`` as it was before it was generated: cattrs' unstructuring, with the
    extras merged back in as sent."""
    data: dict[str, Any] = _UNSTRUCTURE(record)
    del data["extras"]
    data.update(record.extras)
    return data


@pytest.mark.parametrize("spell", [dict, camel_case], ids=["snake_case", "camelCase"])
@settings(max_examples=300, deadline=None)
@given(data=records(), nested=st.booleans())
def test_the_generated_to_dict_gives_what_cattrs_gives(
    spell: Callable[[Any], Any], data: dict[str, Any], nested: bool
) -> None:
    """Records read in either spelling (v2 and v3-legacy send snake_case, v3 camelCase), or
    built with every nested kind: the same dict as cattrs' unstructuring, in the same order,
    to the same JSON bytes."""
    if nested:
        record = CallRecord(
            trans_id=data.get("trans_id") if isinstance(data.get("trans_id"), str) else None,
            member=Member(name="A", vbot_id="1"),
            hotline=Hotline(code="H"),
            call_collected_data=(CollectedField(cfkey="k"), CollectedField(cfvalue="v")),
            extras={"queue": [1, {"a": None}], "tags": "x"},
        )
    else:
        try:
            record = _read_record(spell(data))
        except _Invalid:
            return
    expected = unstructured(record)
    assert record.to_dict() == expected
    assert list(record.to_dict()) == list(expected)
    assert orjson.dumps(record.to_dict()) == orjson.dumps(expected)
