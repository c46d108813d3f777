"""Calls as Arrow data: the one table shape of a call (`vbot_cdr._table.CALL_COLUMNS`) as
an Arrow schema and its rows.

The Parquet export and the Spark data source both build their tables here, so a Spark
DataFrame and a Parquet file of the same calls hold the same columns and values, and keep
doing so when the schema changes: times ``timestamp[ms, tz=UTC]``, codes ``string``,
``member`` and ``hotline`` flattened, JSON columns as JSON text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._table import CALL_COLUMNS, Kind, epoch_milliseconds, json_text, row_encoder

if TYPE_CHECKING:
    import pyarrow

__all__ = ["arrow_rows", "arrow_schema", "arrow_table", "arrow_values", "record_batch"]


def arrow_schema() -> pyarrow.Schema:
    """The Arrow schema of the table shape: `CALL_COLUMNS`, typed.

    Raises:
        ImportError: pyarrow is not installed (the ``parquet`` extra).
    """
    import pyarrow as pa

    types: dict[Kind, pyarrow.DataType] = {
        "text": pa.string(),
        "integer": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("ms", tz="UTC"),
        "json": pa.string(),
    }
    return pa.schema([pa.field(column.name, types[column.kind]) for column in CALL_COLUMNS])


_NAMES: Final = tuple(column.name for column in CALL_COLUMNS)
# Times as the milliseconds of their instant (what a timestamp[ms] holds), JSON as text.
_encode: Final = row_encoder({"timestamp": epoch_milliseconds, "json": json_text})


def arrow_values(records: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``records`` (each a `CallRecord` or the twin a page decodes into) as the values of
    `arrow_schema`'s columns, a tuple per record, for `arrow_table`.

    Raises:
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    return list(map(_encode, records))


def arrow_table(values: Sequence[tuple[Any, ...]]) -> pyarrow.Table:
    """The table of `arrow_schema` holding ``values`` (from `arrow_values`), built column
    by column (an Arrow array per column, not a dict per row)."""
    import pyarrow as pa

    schema = arrow_schema()
    columns = zip(*values, strict=True) if values else ([] for _ in schema)
    pairs = zip(columns, schema, strict=True)
    arrays = [pa.array(column, type=field.type) for column, field in pairs]
    return pa.Table.from_arrays(arrays, schema=schema)


def arrow_rows(records: Sequence[Any]) -> list[dict[str, Any]]:
    """``records`` (each a `CallRecord` or the twin a page decodes into) as rows of
    `arrow_schema`, by column name.

    Raises:
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    return [dict(zip(_NAMES, _encode(record), strict=True)) for record in records]


def record_batch(
    records: Sequence[Any],
    schema: pyarrow.Schema,
    constants: Mapping[str, Any] | None = None,
) -> pyarrow.RecordBatch:
    """``records`` as one Arrow record batch of ``schema``: `arrow_schema`, or it with more
    columns, each given one value for every row by ``constants`` (or left null), and its
    times in any unit (Spark's are microseconds).

    Raises:
        ImportError: pyarrow is not installed.
        ResponseFormatError: A time is outside what a datetime can hold.
    """
    import pyarrow as pa

    rows = arrow_rows(records)
    if constants:
        for row in rows:
            row.update(constants)
    # The rows hold times as milliseconds: build them as such, then cast to the unit asked.
    built = pa.schema(
        [
            field.with_type(pa.timestamp("ms", tz=field.type.tz))
            if pa.types.is_timestamp(field.type)
            else field
            for field in schema
        ]
    )
    batch = pa.RecordBatch.from_pylist(rows, schema=built)
    if built == schema or not rows:
        return batch if built == schema else pa.RecordBatch.from_pylist([], schema=schema)
    return pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]
