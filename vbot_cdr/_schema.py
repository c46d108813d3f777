"""The shape of an exported record, read from the models so that it cannot drift from them.

`record_shape` walks the type hints of `CallRecord` (and of the classes it nests) into a
small tree of `Shape`\\ s; `json_schema` renders that tree as the JSON Schema of a record as
``vbot-cdr export`` writes it to JSON Lines, and `vbot_cdr._table` flattens it into the one
table shape of every other output. A field added to the models appears in both with no edit
here.

A time is a time: an epoch field (an ``int`` field named ``*_at``) has the shape
``"timestamp"``, whatever unit a dialect sends it in.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Final, Union

import attrs

from ._models import CallRecord

__all__ = ["EXTRAS", "Shape", "json_schema", "record_shape"]

#: The column of the table shape that holds, as a JSON object, the fields the models do not
#: list (JSON Lines keeps them as fields of the record).
EXTRAS: Final = "extras"

_SCALARS: Final[Mapping[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}


@attrs.frozen
class Shape:
    """One field's type: a JSON type name, and for objects their fields, for arrays their item.

    ``kind`` is ``"string"``, ``"integer"``, ``"number"``, ``"boolean"``, ``"timestamp"`` (an
    epoch as the server sends it, an instant as the exports write it), ``"object"``,
    ``"array"`` or ``"json"`` (a JSON object of any keys, such as `CallRecord.meta_data`);
    ``nullable`` says whether ``null`` is a value of it.
    """

    kind: str
    nullable: bool = False
    fields: Mapping[str, Shape] = attrs.field(factory=dict)
    item: Shape | None = None


def _shape(annotation: Any) -> Shape:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no export shape for the union {annotation!r}")
        return attrs.evolve(_shape(inner[0]), nullable=True)
    if origin is tuple:
        item, *_ = typing.get_args(annotation)
        return Shape("array", item=_shape(item))
    if origin in (Mapping, dict):
        return Shape("json")
    if annotation in _SCALARS:
        return Shape(_SCALARS[annotation])
    if attrs.has(annotation):
        return Shape("object", fields=_fields(annotation))
    raise TypeError(f"no export shape for {annotation!r}")


#: Names the models' annotations use beyond the public ones: the models' ``__module__`` is
#: ``vbot_cdr``, where `typing.get_type_hints` looks their annotations up.
_ANNOTATION_NAMES: Final[Mapping[str, Any]] = {"Any": Any, "Mapping": Mapping}


def _fields(cls: type) -> dict[str, Shape]:
    hints = typing.get_type_hints(cls, localns=dict(_ANNOTATION_NAMES))
    # `CallRecord.extras` is not a field of the API: its contents are merged into the record.
    return {
        field.name: _timestamp_if_epoch(field.name, _shape(hints[field.name]))
        for field in attrs.fields(cls)
        if field.name != EXTRAS
    }


def _timestamp_if_epoch(name: str, shape: Shape) -> Shape:
    """An ``int`` field named ``*_at`` is an epoch (``create_at``...): a time, not a number."""
    if shape.kind == "integer" and name.endswith("_at"):
        return attrs.evolve(shape, kind="timestamp")
    return shape


def record_shape() -> Shape:
    """The fields of an exported call: those of `CallRecord`, without `CallRecord.extras`."""
    return Shape("object", fields=_fields(CallRecord))


def _json_type(shape: Shape) -> dict[str, Any]:
    name = {"timestamp": "string", "json": "object"}.get(shape.kind, shape.kind)
    kind: str | list[str] = [name, "null"] if shape.nullable else name
    schema: dict[str, Any] = {"type": kind}
    if shape.kind == "timestamp":
        schema["format"] = "date-time"
    if shape.kind == "object":
        schema["properties"] = {name: _json_type(field) for name, field in shape.fields.items()}
    if shape.item is not None:
        schema["items"] = _json_type(shape.item)
    return schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one line of a JSON Lines export.

    Every listed field may be absent; a field the models do not list is kept as the server
    sent it, so further properties are allowed.
    """
    schema = _json_type(record_shape())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CallRecord",
        "description": (
            "One call of the VBot call history, as vbot-cdr export writes it (one JSON Lines "
            "line). Times are ISO 8601 date-times with their offset, in the zone of the "
            "export (--tz, default Asia/Ho_Chi_Minh). See docs/fields.md."
        ),
        **schema,
        "additionalProperties": True,
    }
