"""The columns of the calls table, derived from `CallRecord`, and a record as their values.

- a scalar field is a typed column of its own name (``str`` text, ``int`` integer, ``float``
  real, ``bool`` boolean);
- a nested record (``member``, ``hotline``) is one typed column per field of it, named
  ``member_name``, ``hotline_code``, ...;
- anything else (``call_collected_data``) is a JSON column;
- an epoch (an ``int`` field named ``*_at``) is kept as the server sent it, next to a
  timestamp-with-time-zone column ``<field>_utc`` (``None`` for the 0 of a time that never
  came), which the database computes from the epoch as it loads the row;
- a field the record does not declare (`CallRecord.extras`) is a JSON column of its own name,
  or ``extra_<name>`` if that name (in any case) is taken.

A field added to `CallRecord` becomes a column by itself; the sink adds the columns a table
lacks (nullable), so a table made by an older version keeps loading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from .._models import CallRecord
from .._schema import record_shape

__all__ = ["KEY", "Column", "Kind", "columns_of", "encoder", "loaded"]

Kind = Literal["text", "integer", "real", "boolean", "json", "timestamp"]

#: The primary key of the calls table.
KEY: Final = "trans_id"


@attrs.frozen
class Column:
    """A column of the calls table, and where its value comes from in a `CallRecord`.

    Attributes:
        name: The column name.
        kind: Its type, which each backend spells in its own way.
        field: The record's attribute (for a timestamp, the epoch's), or the key in
            `CallRecord.extras`.
        part: For a nested record, the attribute inside it; else ``None``.
        extra: Whether ``field`` is a key of `CallRecord.extras`.
    """

    name: str
    kind: Kind
    field: str
    part: str | None = None
    extra: bool = False


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


def _extra_name(name: str) -> str:
    """The column of the extra field ``name``: its own name, or ``extra_<name>`` if taken."""
    return f"extra_{name}" if name.lower() in _TAKEN else name


def columns_of(records: Iterable[CallRecord]) -> Sequence[Column]:
    """`RECORD_COLUMNS`, then a JSON column per field of the records' `CallRecord.extras`
    (first seen first)."""
    extra: dict[str, Column] = {}
    for record in records:
        for name in record.extras:
            if name not in extra:
                extra[name] = Column(_extra_name(name), "json", name, extra=True)
    return RECORD_COLUMNS + tuple(extra.values())


def loaded(columns: Sequence[Column]) -> list[Column]:
    """The columns whose values the sink sends; the database computes the timestamps."""
    return [column for column in columns if column.kind != "timestamp"]


@functools.lru_cache(maxsize=64)
def encoder(
    columns: tuple[Column, ...],
    json_columns: frozenset[str],
    json: Callable[[Any], Any],
) -> Callable[[CallRecord], tuple[Any, ...]]:
    """Generate the function that turns a record into the values of ``loaded(columns)``.

    It returns a tuple in the order of the columns, straight from the record's attributes:
    one tuple display per record, no loop per column, no `CallRecord.to_dict`. A column
    named in ``json_columns`` gets ``json(value)`` whatever its field's type (a field that
    was once an extra keeps its JSON column).
    """
    entries = []
    for column in loaded(columns):
        if column.extra:
            read = f"extras.get({column.field!r})"
        elif column.part is not None:
            read = f"(None if (nested := record.{column.field}) is None else nested.{column.part})"
        else:
            read = f"record.{column.field}"
        if column.name in json_columns:
            read = f"json({read})"
        entries.append(read)
    source = (
        f"def encode(record):\n    extras = record.extras\n    return ({', '.join(entries)},)\n"
    )
    namespace: dict[str, Any] = {"json": json}
    exec(compile(source, "<vbot_cdr encode>", "exec"), namespace)
    encode: Callable[[CallRecord], tuple[Any, ...]] = namespace["encode"]
    return encode
