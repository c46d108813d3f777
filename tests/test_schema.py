"""The export schemas (`_schema`), read from the models: what they say, and that real records
fit them."""

from __future__ import annotations

from typing import Any

import attrs
import pyarrow as pa
import pytest

from vbot_cdr import CallRecord
from vbot_cdr._schema import EXTRAS, Shape, _shape, arrow_schema, json_schema, record_shape
from vbot_cdr._wire import structure_records
from vbot_cdr.testing import generate_records

JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


def fits(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (the subset of JSON Schema that `json_schema` uses)."""
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    matching = [
        kind
        for kind in kinds
        if isinstance(value, JSON_TYPES[kind])
        and not (kind in ("integer", "number") and isinstance(value, bool))
    ]
    if not matching:
        return [f"{where}: {value!r} is not {kinds}"]
    problems = []
    if isinstance(value, dict) and "properties" in schema:
        for name, field in schema["properties"].items():
            if name in value:
                problems += fits(value[name], field, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += fits(item, schema["items"], f"{where}[{index}]")
    return problems


def records() -> list[CallRecord]:
    return structure_records(generate_records(200, seed=3))


def test_the_record_shape_lists_every_field_but_extras() -> None:
    shape = record_shape()
    assert list(shape.fields) == [a.name for a in attrs.fields(CallRecord) if a.name != EXTRAS]
    assert shape.fields["duration"] == Shape("integer", nullable=True)
    assert shape.fields["member"].kind == "object"
    assert shape.fields["member"].nullable
    collected = shape.fields["call_collected_data"]
    assert (collected.kind, collected.item is not None and collected.item.kind) == (
        "array",
        "object",
    )


def test_every_exported_record_fits_the_json_schema() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is True
    assert schema["properties"]["duration"]["type"] == ["integer", "null"]
    for record in records():
        assert fits(record.to_dict(), schema) == []


def test_the_json_schema_refuses_what_the_models_would() -> None:
    """Not vacuous: a wrong type where the models have another is found."""
    exported = records()[0].to_dict() | {"duration": "12"}
    assert fits(exported, json_schema()) == ["$.duration: '12' is not ['integer', 'null']"]


def test_the_arrow_schema_is_a_column_per_field_then_extras() -> None:
    schema = arrow_schema()
    assert schema.names == [*record_shape().fields, EXTRAS]
    assert schema.field(EXTRAS).type == pa.string()
    assert schema.field("duration").type == pa.int64()
    assert pa.types.is_struct(schema.field("member").type)
    assert pa.types.is_list(schema.field("call_collected_data").type)


def test_exported_records_convert_to_the_arrow_schema() -> None:
    schema = arrow_schema()
    rows = [record.to_dict() | {EXTRAS: None} for record in records()]
    table = pa.Table.from_pylist(rows, schema=schema)
    assert table.num_rows == 200
    assert table.column("trans_id").to_pylist() == [r["trans_id"] for r in rows]


@pytest.mark.parametrize("annotation", [int | str, dict[str, int], object])
def test_a_type_with_no_export_shape_is_a_type_error(annotation: Any) -> None:
    """A field the exports could not write fails loudly when the schema is read, not later."""
    with pytest.raises(TypeError, match="no export shape"):
        _shape(annotation)
