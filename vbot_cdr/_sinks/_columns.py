"""The columns of the calls table, derived from `CallRecord`, and a record as a row.

- a scalar field is a typed column of its own name (``str`` text, ``int`` integer, ``float``
  real, ``bool`` boolean);
- a nested record (``member``, ``hotline``) is one typed column per field of it, named
  ``member_name``, ``hotline_code``, ...;
- anything else (``call_collected_data``) is a JSON column;
- an epoch (an ``int`` field named ``*_at``) is kept as the server sent it, next to a
  timestamp-with-time-zone column ``<field>_utc`` (``None`` for the 0 of a time that never
  came);
- a field the record does not declare (`CallRecord.extras`) is a JSON column of its own name,
  or ``extra_<name>`` if that name (in any case) is taken.

A field added to `CallRecord` becomes a column by itself; the sink adds the columns a table
lacks (nullable), so a table made by an older version keeps loading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from .._errors import ResponseFormatError
from .._models import CallRecord, epoch_to_datetime
from .._schema import record_shape

__all__ = ["KEY", "Column", "Kind", "columns_of", "row_of"]

Kind = Literal["text", "integer", "real", "boolean", "json", "timestamp"]

#: The primary key of the calls table.
KEY: Final = "trans_id"


@attrs.frozen
class Column:
    """A column of the calls table, and where its value comes from in `CallRecord.to_dict`.

    Attributes:
        name: The column name.
        kind: Its type, which each backend spells in its own way.
        field: The key in ``to_dict()``.
        part: For a nested record, the key inside it; else ``None``.
    """

    name: str
    kind: Kind
    field: str
    part: str | None = None


#: The column kind of each scalar `Shape` kind; any other shape is a JSON column.
_KINDS: Final[dict[str, Kind]] = {
    "string": "text",
    "integer": "integer",
    "number": "real",
    "boolean": "boolean",
}


def _record_columns() -> tuple[Column, ...]:
    """The columns of the fields of `record_shape`, the one reading of the models' types
    that the JSON Schema and the Parquet schema share."""
    columns: list[Column] = []
    for name, shape in record_shape().fields.items():
        if shape.kind == "object":
            for part, part_shape in shape.fields.items():
                part_kind = _KINDS.get(part_shape.kind, "json")
                columns.append(Column(f"{name}_{part}", part_kind, name, part))
            continue
        kind = _KINDS.get(shape.kind, "json")
        columns.append(Column(name, kind, name))
        if kind == "integer" and name.endswith("_at"):
            columns.append(Column(f"{name}_utc", "timestamp", name))
    return tuple(columns)


#: The columns every calls table has, in order (`KEY` among them).
RECORD_COLUMNS: Final = _record_columns()
_TAKEN: Final = frozenset(column.name.lower() for column in RECORD_COLUMNS)


def _timestamp(value: Any) -> Any:
    try:
        return epoch_to_datetime(value) if isinstance(value, int) else None
    except ResponseFormatError:  # out of a datetime's range: the epoch column still has it
        return None


_FIELD_NAMES: Final[dict[type, tuple[str, ...]]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in attrs.fields(cls))
    return names


def _plain(value: Any) -> Any:
    """A field's value as `CallRecord.to_dict` has it: records as dicts, tuples as lists."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if attrs.has(type(value)):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    return value


def _compile_row_of() -> Callable[[CallRecord], dict[str, Any]]:
    """Generate `row_of`: one dict display over `RECORD_COLUMNS`, no loop per column.

    A plain loop over the columns costs several times more per record than the load itself.
    """
    entries = []
    for column in RECORD_COLUMNS:
        read = f"record.{column.field}"
        if column.part is not None:
            read = f"(None if {read} is None else {read}.{column.part})"
        elif column.kind == "timestamp":
            read = f"timestamp({read})"
        elif column.kind == "json":
            read = f"plain({read})"
        entries.append(f"        {column.name!r}: {read},")
    source = "def row_of(record):\n    row = {\n" + "\n".join(entries) + "\n    }\n"
    source += "    if record.extras:\n        add_extras(row, record.extras)\n    return row\n"
    namespace: dict[str, Any] = {
        "timestamp": _timestamp,
        "plain": _plain,
        "add_extras": _add_extras,
    }
    exec(compile(source, "<vbot_cdr row_of>", "exec"), namespace)
    row_of: Callable[[CallRecord], dict[str, Any]] = namespace["row_of"]
    row_of.__doc__ = "The record as ``column name -> value``: JSON columns hold lists and dicts."
    return row_of


def _add_extras(row: dict[str, Any], extras: Mapping[str, Any]) -> None:
    for name, value in extras.items():
        row[f"extra_{name}" if name.lower() in _TAKEN else name] = value


#: The record as ``column name -> value``: JSON columns hold Python lists and dicts.
row_of: Final = _compile_row_of()


def columns_of(rows: Iterable[dict[str, Any]]) -> Sequence[Column]:
    """`RECORD_COLUMNS`, then a JSON column per other key of ``rows`` (first seen first)."""
    extra: dict[str, Column] = {}
    for row in rows:
        if len(row) > len(RECORD_COLUMNS):
            for name in row:
                if name not in extra and name.lower() not in _TAKEN:
                    extra[name] = Column(name, "json", name)
    return RECORD_COLUMNS + tuple(extra.values())
