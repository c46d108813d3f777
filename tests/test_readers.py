"""The generated record readers (the hot path) agree with the cattrs converter on any input."""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vbot_cdr import CallRecord, Member
from vbot_cdr._models import (
    _ALIASES,
    STRUCTURE_ERRORS,
    _Invalid,
    _read_record,
    _structure_with_converter,
    structure_record,
    structure_records,
)
from vbot_cdr._wire import Request, read_records
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
        assert expected is None, "the reader refused a record the converter accepts"
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
        read_records(Request("getAll", {}, page=1), page)
    assert type(info.value).__name__ == "ResponseFormatError"


def test_a_bad_camel_case_record_is_named_as_sent() -> None:
    """A mistyped field of a camelCase (v3) record is named as the server spelled it."""
    page = generate_records(5, seed=2)
    page[3] = {"transId": "TX3", "createAt": "yesterday"}
    with pytest.raises(Exception, match=r"data\[3\]\.createAt: ") as info:
        read_records(Request("getAll", {}, page=1), page)
    assert getattr(info.value, "field", None) == "data[3].createAt"
