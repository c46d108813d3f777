"""The shape of an exported record, read from the models so that it cannot drift from them.

`record_shape` walks the type hints of `CallRecord` (and of the classes it nests) into a
small tree of `Shape`\\ s; `json_schema` renders that tree as the JSON Schema of a record as
``vbot-cdr export`` writes it (`CallRecord.to_dict`), and `arrow_schema` as the one typed
schema of the Parquet export. A field added to the models appears in both with no edit here.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Union

import attrs

from ._models import CallRecord

if TYPE_CHECKING:
    import pyarrow

__all__ = ["EXTRAS", "Shape", "arrow_schema", "json_schema", "record_shape"]

#: The column of the Parquet and CSV exports that holds, as a JSON object, the fields the
#: models do not list.
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

    ``kind`` is ``"string"``, ``"integer"``, ``"number"``, ``"boolean"``, ``"object"`` or
    ``"array"``; ``nullable`` says whether ``null`` is a value of it.
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
        field.name: _shape(hints[field.name]) for field in attrs.fields(cls) if field.name != EXTRAS
    }


def record_shape() -> Shape:
    """The fields of an exported call: those of `CallRecord`, without `CallRecord.extras`."""
    return Shape("object", fields=_fields(CallRecord))


def _json_type(shape: Shape) -> dict[str, Any]:
    kind: str | list[str] = [shape.kind, "null"] if shape.nullable else shape.kind
    schema: dict[str, Any] = {"type": kind}
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
            "line). Times are Unix epochs as the server sent them. See docs/fields.md."
        ),
        **schema,
        "additionalProperties": True,
    }


def _arrow_type(shape: Shape) -> pyarrow.DataType:
    import pyarrow as pa

    scalars = {
        "string": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "boolean": pa.bool_(),
    }
    if shape.kind == "object":
        return pa.struct([pa.field(n, _arrow_type(f)) for n, f in shape.fields.items()])
    if shape.item is not None:
        return pa.list_(_arrow_type(shape.item))
    return scalars[shape.kind]


def arrow_schema() -> pyarrow.Schema:
    """The Arrow schema of the Parquet export: a column per field, then `EXTRAS` as JSON text.

    Raises:
        ImportError: pyarrow is not installed (the ``parquet`` extra).
    """
    import pyarrow as pa

    columns = [pa.field(name, _arrow_type(shape)) for name, shape in record_shape().fields.items()]
    return pa.schema([*columns, pa.field(EXTRAS, pa.string())])
