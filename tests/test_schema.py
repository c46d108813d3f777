"""The export schemas (JSON Schema, Arrow) are read from the models and match what they export."""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any

import attrs
import pyarrow as pa
import pytest

from tests._records import CAMEL_EXAMPLE, EXAMPLE, VIETNAM, json_document
from vbot_cdr import CallRecord, CollectedField, Hotline, Member, _models, call_columns
from vbot_cdr._arrow import arrow_schema
from vbot_cdr._decoding import structure_record
from vbot_cdr._schema import EXTRAS, Shape, _shape, json_schema, record_shape
from vbot_cdr.testing import generate_records

#: Each JSON Schema type name and the Python types of the values ``to_dict`` gives for it.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (float,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def names(cls: type) -> list[str]:
    return [a.name for a in attrs.fields(cls) if a.name != "extras"]


def conforms(value: Any, schema: dict[str, Any], where: str = "record") -> list[str]:
    """Where ``value`` breaks ``schema`` (the types, properties and items this module emits)."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    allowed = tuple(t for kind in kinds for t in _JSON_TYPES[kind])
    # bool is an int in Python, never in JSON.
    if not isinstance(value, allowed) or (isinstance(value, bool) and "boolean" not in kinds):
        return [f"{where}: {value!r} is not {kinds}"]
    faults = []
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in value:
                faults += conforms(value[name], sub, f"{where}.{name}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            faults += conforms(item, schema["items"], f"{where}[{index}]")
    return faults


def test_json_schema_has_a_property_per_field_in_model_order() -> None:
    """Every CallRecord field but extras is a property, in declaration order, nested alike."""
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is True
    properties = schema["properties"]
    assert list(properties) == names(CallRecord)
    assert EXTRAS not in properties
    assert list(properties["member"]["properties"]) == names(Member)
    assert list(properties["hotline"]["properties"]) == names(Hotline)
    assert list(properties["call_collected_data"]["items"]["properties"]) == names(CollectedField)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("phone", {"type": ["string", "null"]}),
        ("duration", {"type": ["integer", "null"]}),
        ("postage", {"type": ["number", "null"]}),
        ("is_record", {"type": ["boolean", "null"]}),
        ("create_at", {"type": ["string", "null"], "format": "date-time"}),
        ("answer_at", {"type": ["string", "null"], "format": "date-time"}),
        (
            "member",
            {
                "type": ["object", "null"],
                "properties": {
                    "name": {"type": ["string", "null"]},
                    "color": {"type": ["string", "null"]},
                    "vbot_id": {"type": ["string", "null"]},
                    "acc_id": {"type": ["string", "null"]},
                    "number": {"type": ["string", "null"]},
                },
            },
        ),
        (
            "call_collected_data",
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "cfkey": {"type": ["string", "null"]},
                        "cfname": {"type": ["string", "null"]},
                        "cfvalue": {"type": ["string", "null"]},
                        "description": {"type": ["string", "null"]},
                    },
                },
            },
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_json_schema_types_follow_the_annotations(field: str, expected: dict[str, Any]) -> None:
    """``T | None`` is nullable, a tuple is a (non-null) array, a nested class an object, an
    epoch (an int named ``*_at``) a date-time."""
    assert json_schema()["properties"][field] == expected


def test_every_field_type_maps_to_the_annotation() -> None:
    """Each field's JSON type is the one its annotation names (str, int, float, bool), but
    for the epochs, which are date-times."""
    hints = typing.get_type_hints(CallRecord, globalns=vars(_models))
    by_type = {str: "string", int: "integer", float: "number", bool: "boolean"}
    properties = json_schema()["properties"]
    for name in names(CallRecord):
        inner = [a for a in typing.get_args(hints[name]) if a is not type(None)]
        if len(inner) == 1 and inner[0] in by_type and not name.endswith("_at"):
            assert properties[name]["type"] == [by_type[inner[0]], "null"], name


@pytest.mark.parametrize(
    "data",
    [
        EXAMPLE,
        CAMEL_EXAMPLE,
        {"trans_id": "TX1"},
        {**EXAMPLE, "queue": "Q7"},
        *generate_records(20),
    ],
)
def test_exported_records_conform_to_the_json_schema(data: dict[str, Any]) -> None:
    """What the JSON Lines export writes is valid under the schema."""
    assert conforms(json_document(structure_record(data), VIETNAM), json_schema()) == []


def test_the_checker_catches_a_wrong_type() -> None:
    """The conformance check above is not vacuous: a wrong type or a bool for an int is caught."""
    schema = json_schema()
    assert conforms({"duration": "4"}, schema) == [
        "record.duration: '4' is not ['integer', 'null']"
    ]
    assert conforms({"duration": True}, schema) != []
    assert conforms({"call_collected_data": [{"cfkey": 1}]}, schema) != []


def test_arrow_schema_is_the_one_table_shape() -> None:
    """The Parquet schema is the columns of the table shape, typed: times UTC timestamps in
    milliseconds, codes strings, nested records flattened, JSON columns as text."""
    schema = arrow_schema()
    assert tuple(schema.names) == tuple(column.name for column in call_columns())
    assert schema.field("duration").type == pa.int64()
    assert schema.field("postage").type == pa.float64()
    assert schema.field("is_record").type == pa.bool_()
    assert schema.field("create_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("member_name").type == pa.string()
    assert schema.field("call_collected_data").type == pa.string()
    assert schema.field(EXTRAS).type == pa.string()


def test_record_shape_is_the_model() -> None:
    """record_shape is an object shape whose fields are CallRecord's, nested shapes included."""
    shape = record_shape()
    assert shape.kind == "object"
    assert not shape.nullable
    assert list(shape.fields) == names(CallRecord)
    assert shape.fields["hotline"] == Shape(
        "object", nullable=True, fields={n: Shape("string", nullable=True) for n in names(Hotline)}
    )


@pytest.mark.parametrize(
    "annotation",
    [int | str | None, set[int], dt.datetime],
    ids=["two-type-union", "set", "datetime"],
)
def test_a_type_without_an_export_shape_is_refused(annotation: Any) -> None:
    """A model field whose type has no JSON or Arrow form is a TypeError, never guessed."""
    with pytest.raises(TypeError, match="no export shape"):
        _shape(annotation)
