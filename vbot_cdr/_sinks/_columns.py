"""The columns of the calls table, and a record as the values the driver gets for them.

The calls table has the one table shape of a call, `vbot_cdr._table.CALL_COLUMNS`: the
same names, order and types as every other output (``trans_id``, the `KEY`, among them).
Each backend spells a `Kind` in its own way; a ``timestamp`` column is a timestamp with a
time zone (SQLite, which has none, holds ISO 8601 text with its ``+00:00`` offset). The
driver gets a time as the epoch the server sent, and the database computes the instant in
the statement that upserts: a datetime per time built in Python, then formatted for the
driver, cost more than the rest of a row.

A field added to `CallRecord` becomes a column by itself; the sink adds the columns a table
lacks (nullable), so a table made by an older version keeps loading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from .._decoding import CallRow
from .._table import CALL_COLUMNS, CallColumn, Kind, checked_epoch, row_encoder

__all__ = ["KEY", "RECORD_COLUMNS", "Column", "Kind", "encoder"]

#: The primary key of the calls table.
KEY: Final = "trans_id"

Column = CallColumn

#: The columns of the calls table, in order.
RECORD_COLUMNS: Final = CALL_COLUMNS


def encoder(
    columns: Sequence[Column], json: Callable[[Any], Any]
) -> Callable[[CallRow], tuple[Any, ...]]:
    """The function that turns a record, or a row of a decoded page (`row_pages`), into the
    driver's values of ``columns``: a JSON column's value through ``json``, a time as its
    epoch (checked: one no datetime can hold raises `ResponseFormatError`, as every other
    output does, rather than load as NULL), anything else as it is."""
    return row_encoder({"json": json, "timestamp": checked_epoch}, tuple(columns))
