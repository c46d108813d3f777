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
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from .._models import CallRecord

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


_SCALARS: Final[dict[type, Kind]] = {str: "text", int: "integer", float: "real", bool: "boolean"}


def _scalar_kind(hint: Any) -> Kind | None:
    """The kind of ``X | None`` for a scalar ``X``; ``None`` for anything else."""
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    if len(options) == 1 and options[0] in _SCALARS:
        return _SCALARS[options[0]]
    return None


def _nested_class(hint: Any) -> type | None:
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    if len(options) == 1 and attrs.has(options[0]):
        return typing.cast(type, options[0])
    return None


def _hints(cls: type) -> dict[str, Any]:
    """The field types of an attrs class; a type that cannot be resolved counts as JSON."""
    namespace = vars(sys.modules[cls.__module__])
    hints: dict[str, Any] = {}
    for field in attrs.fields(cls):
        try:
            hints[field.name] = (
                eval(field.type, namespace) if isinstance(field.type, str) else field.type
            )
        except NameError:  # a name imported for type checkers only: never a scalar
            hints[field.name] = object
    return hints


def _record_columns() -> tuple[Column, ...]:
    hints = _hints(CallRecord)
    columns: list[Column] = []
    for field in attrs.fields(CallRecord):
        if field.name == "extras":
            continue
        hint = hints[field.name]
        kind = _scalar_kind(hint)
        nested = _nested_class(hint)
        if nested is not None:
            nested_hints = _hints(nested)
            for part in attrs.fields(nested):
                part_kind = _scalar_kind(nested_hints[part.name]) or "json"
                name = f"{field.name}_{part.name}"
                columns.append(Column(name, part_kind, field.name, part.name))
        elif kind is None:
            columns.append(Column(field.name, "json", field.name))
        else:
            columns.append(Column(field.name, kind, field.name))
            if kind == "integer" and field.name.endswith("_at"):
                columns.append(Column(f"{field.name}_utc", "timestamp", field.name))
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
