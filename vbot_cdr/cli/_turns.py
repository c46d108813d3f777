"""The rows of ``vbot-cdr conversations``: one per turn of a call's bot conversation.

A row holds `TURN_COLUMNS`: the call's ``trans_id``; ``turn``, counted from 1; ``role`` and
``content`` (the ``role``/``content`` of v3's text, or the ``speaker``/``text`` of a JSON
turn; a turn of another shape is kept whole in ``content``, as JSON); and the call's
``create_at`` (the epoch as served) and ``created`` (ISO 8601 in UTC in JSON Lines and CSV,
a UTC timestamp in Parquet). In xlsx, ``create_at`` is an Excel datetime in ``--tz`` instead,
on a sheet ``turns``. A call without a
conversation, or whose conversation has no turns, is one row with no ``turn``, ``role`` or
``content``, so that every call read is in the output.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._conversations import turn_rows
from ._outputs import Encoder, OutputFormat, Rows, XlsxSheet, naive_time

if TYPE_CHECKING:
    import pyarrow

__all__ = ["TURN_COLUMNS", "TURN_FORMATS", "TURN_ROWS", "turn_rows"]

#: The formats of ``conversations --format``.
TURN_FORMATS: Final = ("jsonl", "csv", "parquet", "xlsx")
TURN_COLUMNS: Final = ("trans_id", "turn", "role", "content", "create_at", "created")


class _TurnJsonLines:
    def header(self) -> bytes:
        return b""

    def encode(self, records: Sequence[dict[str, Any]]) -> bytes:
        return b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE) for row in records)


class _TurnCsv:
    """`TURN_COLUMNS`; for Excel, with a byte-order mark (so Vietnamese text shows right)."""

    def __init__(self, *, excel: bool):
        self._excel = excel

    @staticmethod
    def _rows(rows: Sequence[Sequence[Any]]) -> bytes:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        return text.getvalue().encode("utf-8")

    def header(self) -> bytes:
        return ("\ufeff".encode() if self._excel else b"") + self._rows([TURN_COLUMNS])

    def encode(self, records: Sequence[dict[str, Any]]) -> bytes:
        return self._rows([[_cell(row[column]) for column in TURN_COLUMNS] for row in records])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _encoder(output_format: OutputFormat) -> Encoder:
    if output_format.name == "csv":
        return _TurnCsv(excel=output_format.excel)
    return _TurnJsonLines()


def _arrow_schema() -> pyarrow.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("trans_id", pa.string()),
            ("turn", pa.int32()),
            ("role", pa.string()),
            ("content", pa.string()),
            ("create_at", pa.int64()),
            ("created", pa.timestamp("us", tz="UTC")),
        ]
    )


def _arrow_rows(records: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    return records  # already one dict per row, its values of the schema's types


def _xlsx_values(tz: dt.tzinfo) -> Callable[[dict[str, Any]], Sequence[Any]]:
    def values(row: dict[str, Any]) -> Sequence[Any]:
        local = naive_time(row["create_at"], tz)
        return (row["trans_id"], row["turn"], row["role"], row["content"], local)

    return values


#: A workbook's sheet of turns: ``create_at`` an Excel datetime in ``--tz`` (so no
#: ``created``, which would say the same).
_TURN_SHEET: Final = XlsxSheet(
    "turns",
    (
        ("trans_id", "text"),
        ("turn", "integer"),
        ("role", "text"),
        ("content", "text"),
        ("create_at", "timestamp"),
    ),
    _xlsx_values,
)

#: How ``conversations`` writes its rows, in every format.
TURN_ROWS: Final = Rows(
    encoder=_encoder, arrow_schema=_arrow_schema, arrow_rows=_arrow_rows, xlsx=_TURN_SHEET
)
