"""Calls as Arrow data: the one step from `CallRecord` to a row of `_schema.arrow_schema`.

The Parquet export and the Spark data source both build their tables here, so a Spark
DataFrame and a Parquet file of the same calls hold the same columns and values, and keep
doing so when the schema changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._models import CallRecord
from ._schema import EXTRAS

if TYPE_CHECKING:
    import pyarrow

__all__ = ["arrow_rows", "record_batch"]


def arrow_rows(records: Sequence[CallRecord]) -> list[dict[str, Any]]:
    """``records`` as rows of `arrow_schema`: the API's fields, then `EXTRAS` as JSON text."""
    rows = []
    for record in records:
        row = record.to_dict()
        row[EXTRAS] = orjson.dumps(dict(record.extras)).decode() if record.extras else None
        rows.append(row)
    return rows


def record_batch(
    records: Sequence[CallRecord],
    schema: pyarrow.Schema,
    constants: Mapping[str, Any] | None = None,
) -> pyarrow.RecordBatch:
    """``records`` as one Arrow record batch of ``schema``: `arrow_schema`, or it with more
    columns, each given one value for every row by ``constants`` (or left null).

    Raises:
        ImportError: pyarrow is not installed.
    """
    import pyarrow as pa

    rows = arrow_rows(records)
    if constants:
        for row in rows:
            row.update(constants)
    return pa.RecordBatch.from_pylist(rows, schema=schema)
