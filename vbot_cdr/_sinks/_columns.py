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

import sys
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from .._errors import ResponseFormatError
from .._models import CallRecord, epoch_to_datetime

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
