"""The bulk loop users write by hand, as one whole process: every call of the server to a file.

Usage: ``python benchmarks/exports_hand.py {jsonl,csv,parquet,xlsx} BASE_URL TOKEN OUT --shape FILE
--page-size 500 --concurrency 8``

aiohttp ``gather`` of every page under a semaphore, each page decoded with ``orjson.loads``
into dicts and written as it arrives by the same writer the export uses: JSON Lines with
``orjson.dumps``, CSV with the `csv` module in the export's columns, Parquet with pyarrow's
``ParquetWriter`` in the export's schema (row groups of 10,000), xlsx with XlsxWriter in
its constant-memory mode, the same cells. No types, no validation, no
order, no retries, no de-duplication. The rows are the export's, but for JSON Lines the
null fields the server did not send (v3's own), which the hand loop does not add.
``--shape`` is a JSON file written by ``exports.py``: the columns and the Arrow schema
(serialized), so this process does not import `vbot_cdr`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import datetime as dt
import json
from collections.abc import Callable
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson
from hand_gather import gather_pages

ROW_GROUP = 10_000


ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
TIMES = ("answer_at", "end_call_at", "create_at")


def _iso(value: int | None) -> str | None:
    """An epoch (seconds, as the fake's v2 sends) as ISO 8601 in Vietnam's zone."""
    return dt.datetime.fromtimestamp(value, ZONE).isoformat() if value else None


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "timestamp":
        return _iso(value)
    if kind == "json":
        return orjson.dumps(value).decode()
    if kind == "bool":
        return "true" if value else "false"
    return value


def writer(
    kind: str, out: IO[bytes], shape: dict[str, Any]
) -> tuple[Callable[[list[Any]], None], Callable[[], None]]:
    """``(write a page of dicts, close)`` for ``kind``, in the export's shape: JSON Lines
    nested as the API sends it with ISO 8601 times; CSV and Parquet one flat column per
    field (``member_name``...), JSON text for lists, times as ISO text (CSV) or instants."""
    if kind == "jsonl":
        newline = orjson.OPT_APPEND_NEWLINE

        def write_jsonl(records: list[Any]) -> None:
            lines = []
            for record in records:
                for name in TIMES:
                    record[name] = _iso(record.get(name))
                lines.append(orjson.dumps(record, option=newline))
            out.write(b"".join(lines))

        return write_jsonl, out.flush
    columns = [(field, part, kind) for _, kind, field, part in shape["columns"]]
    if kind == "csv":
        import io

        text = io.StringIO()
        rows = csv.writer(text)
        rows.writerow([name for name, *_ in shape["columns"]])

        def write_csv(records: list[Any]) -> None:
            for record in records:
                row = []
                for field, part, column_kind in columns:
                    value = record.get(field)
                    if part is not None:
                        value = value.get(part) if value is not None else None
                    row.append(_cell(value, column_kind))
                rows.writerow(row)
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()

        return write_csv, out.flush
    if kind == "xlsx":
        return xlsx_writer(out, shape["columns"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(shape["arrow_schema"])))
    names = [name for name, *_ in shape["columns"]]
    parquet = pq.ParquetWriter(out, schema)
    pending: list[Any] = []

    def flush() -> None:
        if pending:
            parquet.write_table(pa.Table.from_pylist(pending, schema=schema))
            pending.clear()

    def write_parquet(records: list[Any]) -> None:
        for record in records:
            row = {}
            for name, (field, part, column_kind) in zip(names, columns, strict=True):
                value = record.get(field)
                if part is not None:
                    value = value.get(part) if value is not None else None
                if value is not None and column_kind == "timestamp":
                    value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
                elif value is not None and column_kind == "json":
                    value = orjson.dumps(value).decode()
                row[name] = value
            pending.append(row)
            if len(pending) >= ROW_GROUP:
                flush()

    def close() -> None:
        flush()
        parquet.close()

    return write_parquet, close


def xlsx_writer(
    out: IO[bytes], shape_columns: list[list[Any]]
) -> tuple[Callable[[list[Any]], None], Callable[[], None]]:
    """The same cells as the export's workbook, with the same library (XlsxWriter in its
    constant-memory mode): a header row, then per call each non-null value by its column's
    kind, times as naive datetimes in Vietnam's zone, lists as JSON text."""
    import xlsxwriter

    book = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    text = book.add_format({"num_format": "@"})
    time = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet = book.add_worksheet("calls")
    writers = {
        "text": (sheet.write_string, text),
        "integer": (sheet.write_number, None),
        "float": (sheet.write_number, None),
        "bool": (sheet.write_boolean, None),
        "timestamp": (sheet.write_datetime, time),
        "json": (sheet.write_string, text),
    }
    columns = [(field, part, writers[kind], kind) for _, kind, field, part in shape_columns]
    for index, (name, *_) in enumerate(shape_columns):
        sheet.write_string(0, index, name)
    row_number = 1

    def write_xlsx(records: list[Any]) -> None:
        nonlocal row_number
        for record in records:
            for index, (field, part, (write, cell_format), kind) in enumerate(columns):
                value = record.get(field)
                if part is not None:
                    value = value.get(part) if value is not None else None
                if value is None:
                    continue
                if kind == "timestamp":
                    value = dt.datetime.fromtimestamp(value, ZONE).replace(tzinfo=None)
                elif kind == "json":
                    value = orjson.dumps(value).decode()
                write(row_number, index, value, cell_format)
            row_number += 1

    return write_xlsx, book.close


async def hand_export(
    kind: str,
    base_url: str,
    token: str,
    out: IO[bytes],
    shape: dict[str, Any],
    *,
    page_size: int,
    concurrency: int,
) -> int:
    write, close = writer(kind, out, shape)
    written = await gather_pages(
        base_url, token, write, page_size=page_size, concurrency=concurrency
    )
    close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("jsonl", "csv", "parquet", "xlsx"))
    parser.add_argument("base_url")
    parser.add_argument("token")
    parser.add_argument("out")
    parser.add_argument("--shape", required=True)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    with open(args.shape) as file:
        shape = json.load(file)
    with open(args.out, "wb") as out:
        written = asyncio.run(
            hand_export(
                args.kind, args.base_url, args.token, out, shape,
                page_size=args.page_size, concurrency=args.concurrency,
            )
        )  # fmt: skip
    print(json.dumps({"records": written}))


if __name__ == "__main__":
    main()
