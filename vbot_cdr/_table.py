"""The one table shape of a call: the columns of every tabular output, in order, typed.

CSV, Parquet, xlsx, every database sink and the dlt source write a call as these columns,
whatever dialect sent it (a v2 and a v3 export of the same calls differ in values only):

- a scalar field is a column of its own name, typed ``text``, ``integer``, ``float`` or
  ``bool``; codes (``phone``, ``sip_code``, ``trans_id``, ``customer_uid``...) are text in the
  models, so they keep their leading zeros everywhere;
- an epoch (``create_at``, ``answer_at``, ``end_call_at``) is a ``timestamp``: an instant with
  its zone, never a bare number whose unit depends on the dialect (seconds from v2,
  milliseconds from v3, told apart by magnitude as `epoch_to_datetime` does); the 0 or null of
  a time that never came (an unanswered call's ``answer_at``) is null;
- a nested record (``member``, ``hotline``) is one column per field of it, ``member_name``,
  ``hotline_phone_number``... (``_``, not ``.``: a name SQL, pandas and Spark take unquoted);
- ``call_collected_data`` is one ``json`` column (an array of objects), and so is `EXTRAS`,
  the fields the models do not list (an object, or null if none): the shape never depends on
  the data.

JSON Lines keeps the record's nesting instead (`json_document_encoder`), with the same top-level
names and the times as ISO 8601 text with their offset. Sinks add their own bookkeeping
columns after these, named with a leading ``_``.

The zone in which times are shown is the caller's (`zone`); its default is VBot's own,
``Asia/Ho_Chi_Minh``: VBot's console and its legacy date strings are Vietnam time, and a
default taken from the machine would make a UTC server's days differ from everyone else's.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs
import msgspec

from ._clock import iso_times
from ._decoding import CallRow
from ._errors import ResponseFormatError
from ._models import MILLISECONDS_THRESHOLD, CallRecord, epoch_to_datetime, record_dict_encoder
from ._schema import EXTRAS, Shape, record_shape

__all__ = [
    "CALL_COLUMNS",
    "DEFAULT_TZ",
    "EXTRAS",
    "TIMES",
    "CallColumn",
    "Kind",
    "call_columns",
    "checked_epoch",
    "epoch_milliseconds",
    "json_document_encoder",
    "json_text",
    "row_encoder",
    "table_row",
    "zone",
]

Kind = Literal["text", "integer", "float", "bool", "timestamp", "json"]

#: The zone of local times and of dates given without an offset, unless one is chosen.
DEFAULT_TZ: Final = "Asia/Ho_Chi_Minh"


@attrs.frozen
class CallColumn:
    """One column of the table shape of a call.

    Attributes:
        name: The column's name.
        kind: Its type: ``"text"``, ``"integer"``, ``"float"``, ``"bool"``, ``"timestamp"``
            (an instant with its zone) or ``"json"``; every output spells it in its own way.
        field: The `CallRecord` attribute its value comes from.
        part: For a column of a nested record (``member_name``), the attribute inside it.
    """

    name: str
    kind: Kind
    field: str
    part: str | None = None


_KINDS: Final[Mapping[str, Kind]] = {
    "string": "text",
    "integer": "integer",
    "number": "float",
    "boolean": "bool",
    "timestamp": "timestamp",
}


def _kind(shape: Shape) -> Kind:
    return _KINDS.get(shape.kind, "json")


def _call_columns() -> tuple[CallColumn, ...]:
    columns: list[CallColumn] = []
    for name, shape in record_shape().fields.items():
        if shape.kind == "object":
            columns += [
                CallColumn(f"{name}_{part}", _kind(inner), name, part)
                for part, inner in shape.fields.items()
            ]
        else:
            columns.append(CallColumn(name, _kind(shape), name))
    return (*columns, CallColumn(EXTRAS, "json", EXTRAS))


#: The columns of a call, in order: the models' fields, nested ones flattened, then `EXTRAS`.
CALL_COLUMNS: Final[tuple[CallColumn, ...]] = _call_columns()


def call_columns() -> tuple[CallColumn, ...]:
    """The columns of a call in CSV, Parquet, xlsx, every database sink and the dlt source,
    in order: the fields of `CallRecord`, ``member`` and ``hotline`` flattened into
    ``member_name``, ``hotline_code``..., then ``extras``. Each has one `CallColumn.kind`:
    codes (phone numbers, ``sip_code``, ``trans_id``, ``customer_uid``) are ``"text"``,
    times ``"timestamp"``, ``call_collected_data`` and ``extras`` ``"json"``.

    .. versionadded:: 0.2
    """
    return CALL_COLUMNS


def zone(tz: str | dt.tzinfo) -> dt.tzinfo:
    """The zone ``tz`` names (an IANA name such as ``Asia/Ho_Chi_Minh`` or ``UTC``).

    Raises:
        ValueError: No such zone.
    """
    if isinstance(tz, dt.tzinfo):
        return tz
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r} (use an IANA name: Asia/Ho_Chi_Minh, UTC)"
        ) from None


#: The epochs a datetime can hold (years 1 to 9999), in milliseconds.
_FIRST_MS: Final = -62_135_596_800_000
_LAST_MS: Final = 253_402_300_799_999


def epoch_milliseconds(value: int | None) -> int | None:
    """The instant of an epoch (seconds or milliseconds, told apart by magnitude) in
    milliseconds; ``None`` for ``None`` and 0 (a time that never came).

    Raises:
        ResponseFormatError: The value is outside what a datetime can hold (years 1 to 9999).
    """
    if not value:
        return None
    milliseconds = value if abs(value) >= MILLISECONDS_THRESHOLD else value * 1000
    if not _FIRST_MS <= milliseconds <= _LAST_MS:
        raise ResponseFormatError(f"epoch {value} is outside the datetime range")
    return milliseconds


def checked_epoch(value: int | None) -> int | None:
    """``value`` as it is, once `epoch_milliseconds` has checked that a datetime can hold it
    (for outputs that turn the epoch into a time themselves, as the databases do).

    Raises:
        ResponseFormatError: It cannot.
    """
    epoch_milliseconds(value)
    return value


_encode_json: Final = msgspec.json.Encoder().encode


def json_text(value: Any) -> str | None:
    """``value`` (attrs records, tuples, dicts, scalars) as JSON text; ``None`` stays ``None``."""
    return None if value is None else _encode_json(value).decode()


@functools.lru_cache(maxsize=32)
def _compile(
    columns: tuple[CallColumn, ...], converters: tuple[tuple[Kind, Callable[[Any], Any]], ...]
) -> Callable[[CallRow], tuple[Any, ...]]:
    convert = dict(converters)
    entries = []
    for column in columns:
        if column.field == EXTRAS:
            read = "(dict(extras) if (extras := record.extras) else None)"
        elif column.part is not None:
            read = f"(None if (nested := record.{column.field}) is None else nested.{column.part})"
        else:
            read = f"record.{column.field}"
        if column.kind in convert:
            read = f"convert_{column.kind}({read})"
        entries.append(read)
    source = f"def encode(record):\n    return ({', '.join(entries)},)\n"
    namespace: dict[str, Any] = {f"convert_{kind}": function for kind, function in converters}
    exec(compile(source, "<vbot_cdr row encoder>", "exec"), namespace)
    encode: Callable[[CallRow], tuple[Any, ...]] = namespace["encode"]
    return encode


def row_encoder(
    converters: Mapping[Kind, Callable[[Any], Any]],
    columns: tuple[CallColumn, ...] = CALL_COLUMNS,
) -> Callable[[CallRow], tuple[Any, ...]]:
    """The function that turns a record into the values of ``columns``, as a tuple: a
    `CallRecord`, or a row of a decoded page (`row_pages`), which reads the same.

    A value comes straight from the record's attribute (one generated tuple display per
    record, no loop per column), then through the converter of its column's kind if
    ``converters`` has one. Unconverted, a timestamp is the epoch as sent, a ``json`` column
    a tuple of `CollectedField` (``call_collected_data``) or a dict (`EXTRAS`, ``None`` if
    empty). A converter is called with ``None`` too.
    """
    return _compile(columns, tuple(converters.items()))


def table_row(record: CallRecord, *, tz: str | dt.tzinfo = DEFAULT_TZ) -> dict[str, Any]:
    """``record`` as the values of `call_columns`, by name (the row a CSV, Parquet or xlsx
    export writes, before each format spells its values).

    Times are aware datetimes in ``tz`` (``None`` for a time that never came);
    ``call_collected_data`` is a list of dicts, `EXTRAS` a dict of the fields the models do
    not list (``None`` if none).

    Raises:
        ValueError: ``tz`` names no zone.
        ResponseFormatError: A time is outside what a datetime can hold.

    .. versionadded:: 0.2
    """
    encode = _table_row_encoder(zone(tz))
    return dict(zip((column.name for column in CALL_COLUMNS), encode(record), strict=True))


@functools.lru_cache(maxsize=8)
def _table_row_encoder(where: dt.tzinfo) -> Callable[[CallRecord], tuple[Any, ...]]:
    return row_encoder(
        {"timestamp": functools.partial(epoch_to_datetime, tz=where), "json": _plain_json}
    )


def _plain_json(value: Any) -> Any:
    """A ``json`` column's value as plain data: ``call_collected_data`` (a tuple of
    `CollectedField`) as a list of dicts, `EXTRAS`'s dict (or ``None``) as it is."""
    if isinstance(value, tuple):
        return [attrs.asdict(item) for item in value]
    return value


#: The fields of `CallRecord` that are times.
TIMES: Final = tuple(c.field for c in CALL_COLUMNS if c.kind == "timestamp")


@functools.lru_cache(maxsize=8)
def json_document_encoder(tz: dt.tzinfo) -> Callable[[Any], dict[str, Any]]:
    """The function giving a record as a JSON Lines export writes it, times in ``tz``,
    generated once: `CallRecord.to_dict`'s keys, order and nesting, times as ISO 8601 text
    with their offset (``None`` for a time that never came). It takes a record, or anything
    with a record's attributes (the twins a page decodes into).

    Raises (the function made):
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    return record_dict_encoder(dict.fromkeys(TIMES, iso_times(tz)))
