"""The database load users write by hand, as one whole process: every call of the server
into a table of the calls table's columns.

Usage: ``python benchmarks/sinks_hand.py {sqlite,duckdb,postgresql} TARGET BASE_URL TOKEN
--shape FILE --page-size 500 --concurrency 8``

aiohttp ``gather`` of every page under a semaphore, each page decoded with ``orjson.loads``
into dicts and written as it arrives, in one transaction committed at the end, into a table
created first with the calls table's columns, types and primary key (``trans_id``): a row per
call in the table's columns (``member_name``..., times as UTC datetimes, ISO 8601 text in
SQLite, JSON columns as JSON text), then the driver's bulk path: SQLite's and psycopg's
``executemany`` of an ``INSERT``, DuckDB's insert of an Arrow table of the page. No types, no
validation, no retries, no de-duplication, no state; ``extras`` stays NULL.
``TARGET`` is the file (SQLite, DuckDB) or the connection URL (PostgreSQL). ``--shape`` is
the JSON file ``exports.py`` writes (the columns), so this process does not import `vbot_cdr`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import orjson
from hand_gather import gather_pages

UTC = dt.timezone.utc

TYPES = {
    "sqlite": {
        "text": "TEXT", "integer": "INTEGER", "float": "REAL", "bool": "BOOLEAN",
        "json": "JSON", "timestamp": "TIMESTAMPTZ",
    },
    "duckdb": {
        "text": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN",
        "json": "JSON", "timestamp": "TIMESTAMPTZ",
    },
    "postgresql": {
        "text": "text", "integer": "bigint", "float": "double precision", "bool": "boolean",
        "json": "jsonb", "timestamp": "timestamptz",
    },
}  # fmt: skip


def row_builder(
    backend: str, columns: list[list[Any]]
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A call (a dict as the server sent it) as the values of the table's columns."""
    iso = backend == "sqlite"

    def row(record: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for _, kind, field, part in columns:
            value = record.get(field)
            if part is not None:
                value = None if value is None else value.get(part)
            if value is None:
                pass
            elif kind == "timestamp":  # 0: a time that never came
                moment = dt.datetime.fromtimestamp(value, UTC) if value else None
                value = moment.isoformat() if iso and moment else moment
            elif kind == "json":
                value = orjson.dumps(value).decode()
            values.append(value)
        return tuple(values)

    return row


def writer(
    backend: str, target: str, columns: list[list[Any]]
) -> tuple[Callable[[list[tuple[Any, ...]]], None], Callable[[], None]]:
    """``(write a page of rows, commit and close)`` into a new table ``hand_calls``."""
    names = [name for name, *_ in columns]
    types = TYPES[backend]
    definitions = ", ".join(
        f'"{name}" {types[kind]}{" PRIMARY KEY" if name == "trans_id" else ""}'
        for name, kind, *_ in columns
    )
    create = f"CREATE TABLE hand_calls ({definitions})"
    quoted = ", ".join(f'"{name}"' for name in names)
    if backend == "sqlite":
        import sqlite3

        connection = sqlite3.connect(target)
        connection.execute(create)
        insert = f"INSERT INTO hand_calls ({quoted}) VALUES ({', '.join('?' * len(names))})"

        def write_sqlite(rows: list[tuple[Any, ...]]) -> None:
            connection.executemany(insert, rows)

        def close_sqlite() -> None:
            connection.commit()
            connection.close()

        return write_sqlite, close_sqlite
    if backend == "postgresql":
        import psycopg

        pg = psycopg.connect(target)
        pg.execute(create.encode())
        marks = ", ".join("%s" for _ in names)
        sql = f"INSERT INTO hand_calls ({quoted}) VALUES ({marks})".encode()

        def write_postgresql(rows: list[tuple[Any, ...]]) -> None:
            with pg.cursor() as cursor:
                cursor.executemany(sql, rows)

        def close_postgresql() -> None:
            pg.commit()
            pg.close()

        return write_postgresql, close_postgresql
    import duckdb
    import pyarrow as pa

    duck = duckdb.connect(target)
    duck.execute(create)
    duck.begin()
    arrow_types = {
        "text": pa.string(), "integer": pa.int64(), "float": pa.float64(),
        "bool": pa.bool_(), "json": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
    }  # fmt: skip
    schema = pa.schema([pa.field(name, arrow_types[kind]) for name, kind, *_ in columns])

    def write_duckdb(rows: list[tuple[Any, ...]]) -> None:
        values = zip(*rows, strict=True)
        arrays = [pa.array(v, type=f.type) for v, f in zip(values, schema, strict=True)]
        page = pa.Table.from_arrays(arrays, schema=schema)
        duck.register("page", page)
        duck.execute(f"INSERT INTO hand_calls ({quoted}) SELECT {quoted} FROM page")
        duck.unregister("page")

    def close_duckdb() -> None:
        duck.commit()
        duck.close()

    return write_duckdb, close_duckdb


async def hand_load(
    backend: str, target: str, base_url: str, token: str, columns: list[list[Any]],
    *, page_size: int, concurrency: int,
) -> int:  # fmt: skip
    write, close = writer(backend, target, columns)
    row = row_builder(backend, columns)
    written = await gather_pages(
        base_url, token, lambda records: write([row(record) for record in records]),
        page_size=page_size, concurrency=concurrency,
    )  # fmt: skip
    close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", choices=tuple(TYPES))
    parser.add_argument("target")
    parser.add_argument("base_url")
    parser.add_argument("token")
    parser.add_argument("--shape", required=True)
    parser.add_argument("--page-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    with open(args.shape) as file:
        columns = json.load(file)["columns"]
    written = asyncio.run(
        hand_load(
            args.backend, args.target, args.base_url, args.token, columns,
            page_size=args.page_size, concurrency=args.concurrency,
        )
    )  # fmt: skip
    print(json.dumps({"records": written}))


if __name__ == "__main__":
    main()
