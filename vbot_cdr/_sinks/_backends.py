"""The three databases: connect, create the tables, add columns, upsert rows, keep the state.

Each `Database` holds one connection and one open transaction. `upsert` and `add_columns`
write into it; `save_state` writes the state row and commits it, rows and state together;
anything else (an error, a kill) leaves the transaction to be rolled back. The methods
block: the sink calls them in worker threads, and they take turns on the connection (`lock`).

Bulk loads:

- PostgreSQL: ``COPY`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT
  (trans_id) DO UPDATE``;
- DuckDB: the rows as one JSON array in a temporary file, read by ``read_json`` in one
  ``INSERT ... ON CONFLICT`` (DuckDB's ``executemany`` runs a statement per row);
- SQLite: ``executemany`` of one ``INSERT ... ON CONFLICT`` statement.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import functools
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import orjson

from .._errors import DatabaseError
from ._columns import KEY, Column, Kind
from ._url import DatabaseURL

__all__ = ["Database", "open_database"]

#: The exceptions of a driver that mean the database failed (not a bug of ours).
_DriverErrors = tuple[type[BaseException], ...]


def quote(name: str) -> str:
    """``name`` as an SQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


@functools.lru_cache(maxsize=64)
def _encoder(
    names: tuple[str, ...], kinds: tuple[str, ...], *, timestamps_as_text: bool
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Generate the function that turns a row into the driver's tuple for ``names``.

    A JSON column gets JSON text whatever its field's type (a field that was once an extra
    keeps its JSON column); with ``timestamps_as_text`` a datetime becomes ISO 8601 text.
    One tuple display per batch's columns: a loop per value would cost more than the load.
    """
    reads = []
    for name, kind in zip(names, kinds, strict=True):
        read = f"get({name!r})"
        if kind == "json":
            read = f"json({read})"
        elif kind == "timestamp" and timestamps_as_text:
            read = f"iso({read})"
        reads.append(read)
    source = f"def encode(row):\n    get = row.get\n    return ({', '.join(reads)},)\n"
    namespace: dict[str, Any] = {"json": _json, "iso": _iso}
    exec(compile(source, "<vbot_cdr encode>", "exec"), namespace)
    encode: Callable[[dict[str, Any]], tuple[Any, ...]] = namespace["encode"]
    return encode


class Database(abc.ABC):
    """One connection to a database holding a calls table and its state table.

    Attributes:
        url: The database, for messages (its `str` masks the password).
        table: The calls table; the state lives in ``<table>_sync_state``.
        columns: The calls table's columns: name → whether it holds JSON.
        lock: Held while a thread uses the connection. A task cancelled (by a signal) while
            its load runs in a worker thread cannot stop that thread: `finish` waits for it
            rather than closing the connection under it.
    """

    types: ClassVar[dict[Kind, str]]
    #: Whether timestamps go to the driver as ISO 8601 text (SQLite has no timestamp type).
    timestamps_as_text: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, table: str):
        self.url = url
        self.table = table
        self.state_table = f"{table}_sync_state"
        self.columns: dict[str, bool] = {}
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def failing_as(self, doing: str) -> Iterator[None]:
        """Raise the driver's errors as `DatabaseError` saying what failed (password masked)."""
        try:
            yield
        except self.errors() as exc:
            message = self.url.redact(str(exc).strip().splitlines()[0] if str(exc) else repr(exc))
            raise DatabaseError(f"cannot {doing} {self.url}: {message}") from None

    @abc.abstractmethod
    def errors(self) -> _DriverErrors:
        """The driver's base exception classes."""

    @abc.abstractmethod
    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the open transaction; its rows (empty if none)."""

    @abc.abstractmethod
    def existing_columns(self) -> dict[str, bool]:
        """The calls table's columns as the database has them: name → whether JSON."""

    @abc.abstractmethod
    def load(self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
        """Upsert ``rows`` (`row_of` dicts) into the open transaction by `KEY`."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit the open transaction and begin the next."""

    @abc.abstractmethod
    def close(self) -> None:
        """Roll back what is not committed and close the connection."""

    def finish(self) -> None:
        """`close`, once no other thread is using the connection."""
        with self.lock:
            self.close()

    def prepare(self, columns: Sequence[Column]) -> None:
        """Create the two tables if missing, commit, and learn the columns of the calls table."""
        with self.failing_as("create the tables in"):
            definitions = ", ".join(
                f"{quote(c.name)} {self.types[c.kind]}{' PRIMARY KEY' if c.name == KEY else ''}"
                for c in columns
            )
            self.execute(f"CREATE TABLE IF NOT EXISTS {quote(self.table)} ({definitions})")
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.state_table)} ("
                f"fingerprint {self.types['text']} PRIMARY KEY, "
                f"state {self.types['text']} NOT NULL, "
                f"saved_at {self.types['timestamp']})"
            )
            self.commit()
            self.columns = self.existing_columns()

    def upsert(self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
        """Add the columns the table lacks, then upsert ``rows`` by `KEY`; nothing is committed.

        A value goes into a JSON column as JSON whatever its field's type (a field that was
        once an extra keeps its JSON column).

        Raises:
            DatabaseError: The database refused.
        """
        with self.lock, self.failing_as("load calls into"):
            for column in columns:
                if column.name not in self.columns:
                    self.execute(
                        f"ALTER TABLE {quote(self.table)} "
                        f"ADD COLUMN {quote(column.name)} {self.types[column.kind]}"
                    )
                    self.columns[column.name] = column.kind == "json"
            self.load(columns, rows)

    def encoded(
        self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """``rows`` as the driver's tuples in the order of ``columns`` (JSON as text)."""
        kinds = tuple(
            "json" if self.columns[c.name] else "timestamp" if c.kind == "timestamp" else "value"
            for c in columns
        )
        encode = _encoder(
            tuple(c.name for c in columns), kinds, timestamps_as_text=self.timestamps_as_text
        )
        return [encode(row) for row in rows]

    def upsert_sql(self, columns: Sequence[Column], source: str) -> str:
        """``INSERT INTO table (columns) <source> ON CONFLICT (key) DO UPDATE SET ...``."""
        names = ", ".join(quote(c.name) for c in columns)
        updates = ", ".join(
            f"{quote(c.name)} = excluded.{quote(c.name)}" for c in columns if c.name != KEY
        )
        return (
            f"INSERT INTO {quote(self.table)} ({names}) {source} "
            f"ON CONFLICT ({quote(KEY)}) DO UPDATE SET {updates}"
        )

    mark: ClassVar[str] = "?"

    def read_state(self, fingerprint: str) -> str | None:
        """The state document saved under ``fingerprint``, if any."""
        with self.lock, self.failing_as("read the sync state from"):
            rows = self.execute(
                f"SELECT state FROM {quote(self.state_table)} WHERE fingerprint = {self.mark}",
                (fingerprint,),
            )
        return None if not rows else str(rows[0][0])

    def save_state(self, fingerprint: str, document: str) -> None:
        """Write the state row and commit it with every row loaded since the last commit."""
        with self.lock, self.failing_as("commit the calls and the sync state to"):
            self.execute(
                f"INSERT INTO {quote(self.state_table)} (fingerprint, state, saved_at) "
                f"VALUES ({self.mark}, {self.mark}, CURRENT_TIMESTAMP) "
                "ON CONFLICT (fingerprint) DO UPDATE SET "
                "state = excluded.state, saved_at = excluded.saved_at",
                (fingerprint, document),
            )
            self.commit()


class _PostgreSQL(Database):
    types: ClassVar[dict[Kind, str]] = {
        "text": "text",
        "integer": "bigint",
        "real": "double precision",
        "boolean": "boolean",
        "json": "jsonb",
        "timestamp": "timestamptz",
    }
    mark: ClassVar[str] = "%s"
    _staging: Final = "vbot_cdr_staging"

    def __init__(self, url: DatabaseURL, table: str):
        super().__init__(url, table)
        import psycopg

        self._psycopg = psycopg
        with self.failing_as("connect to"):
            self._connection = psycopg.connect(url.target, connect_timeout=10)

    def errors(self) -> _DriverErrors:
        return (self._psycopg.Error,)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection.cursor() as cursor:
            cursor.execute(sql.encode(), parameters or None)
            return cursor.fetchall() if cursor.description else []

    def existing_columns(self) -> dict[str, bool]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = current_schema()",
            (self.table,),
        )
        self._connection.commit()
        return {name: kind in ("jsonb", "json") for name, kind in rows}

    def load(self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
        names = ", ".join(quote(c.name) for c in columns)
        staging = quote(self._staging)
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{staging}")
        self.execute(
            f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS "
            f"SELECT {names} FROM {quote(self.table)} WITH NO DATA"
        )
        with (
            self._connection.cursor() as cursor,
            cursor.copy(f"COPY {staging} ({names}) FROM STDIN".encode()) as copy,
        ):
            for row in self.encoded(columns, rows):
                copy.write_row(row)
        self.execute(self.upsert_sql(columns, f"SELECT {names} FROM {staging}"))
        self.execute(f"DROP TABLE {staging}")

    def commit(self) -> None:
        self._connection.commit()

    def close(self) -> None:
        with contextlib.suppress(self._psycopg.Error):
            self._connection.close()


class _DuckDB(Database):
    types: ClassVar[dict[Kind, str]] = {
        "text": "VARCHAR",
        "integer": "BIGINT",
        "real": "DOUBLE",
        "boolean": "BOOLEAN",
        "json": "JSON",
        "timestamp": "TIMESTAMPTZ",
    }

    def __init__(self, url: DatabaseURL, table: str):
        super().__init__(url, table)
        import duckdb

        self._duckdb = duckdb
        with self.failing_as("open"):
            self._connection = duckdb.connect(url.target)
            self._connection.begin()
        self._directory = Path(url.target).resolve().parent

    def errors(self) -> _DriverErrors:
        return (self._duckdb.Error, OSError)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, list(parameters)).fetchall()

    def existing_columns(self) -> dict[str, bool]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema()",
            (self.table,),
        )
        return {name: kind == "JSON" for name, kind in rows}

    def load(self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
        # One JSON array per batch, read by read_json with the table's types: JSON columns
        # take any value, as JSON.
        types = ", ".join(
            f"{quote(c.name)}: '{'JSON' if self.columns[c.name] else self.types[c.kind]}'"
            for c in columns
        )
        fd, path = tempfile.mkstemp(dir=self._directory, prefix=".vbot_cdr_load.", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(orjson.dumps(rows))
            source = (
                f"SELECT {', '.join(quote(c.name) for c in columns)} FROM read_json(?, "
                f"format = 'array', columns = {{{types}}})"
            )
            self.execute(self.upsert_sql(columns, source), (path,))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def commit(self) -> None:
        self._connection.commit()
        self._connection.begin()

    def close(self) -> None:
        with contextlib.suppress(self._duckdb.Error):
            self._connection.close()


class _SQLite(Database):
    types: ClassVar[dict[Kind, str]] = {
        "text": "TEXT",
        "integer": "INTEGER",
        "real": "REAL",
        "boolean": "BOOLEAN",
        "json": "JSON",
        "timestamp": "TIMESTAMPTZ",
    }
    timestamps_as_text: ClassVar[bool] = True  # sqlite3's datetime adapter is deprecated

    def __init__(self, url: DatabaseURL, table: str):
        super().__init__(url, table)
        with self.failing_as("open"):
            # Transactions are ours (BEGIN ... COMMIT), and the worker thread changes.
            self._connection = sqlite3.connect(
                url.target, isolation_level=None, check_same_thread=False
            )
            self._connection.execute("BEGIN")

    def errors(self) -> _DriverErrors:
        return (sqlite3.Error,)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, tuple(parameters)).fetchall()

    def existing_columns(self) -> dict[str, bool]:
        rows = self.execute(f"PRAGMA table_info({quote(self.table)})")
        return {row[1]: row[2].upper() == "JSON" for row in rows}

    def load(self, columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        sql = self.upsert_sql(columns, f"VALUES ({marks})")
        self._connection.executemany(sql, self.encoded(columns, rows))

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.execute("BEGIN")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._connection.close()


_BACKENDS: Final[dict[str, type[Database]]] = {
    "postgresql": _PostgreSQL,
    "duckdb": _DuckDB,
    "sqlite": _SQLite,
}


def open_database(url: DatabaseURL, table: str, columns: Sequence[Column]) -> Database:
    """Connect to ``url`` and make sure both tables exist (with at least ``columns``).

    Raises:
        DatabaseError: The driver is not installed, or the database cannot be reached or
            refuses the tables.
    """
    backend = _BACKENDS[url.backend]
    try:
        database = backend(url, table)
    except ImportError as exc:
        raise DatabaseError(
            f"loading into {url.backend} needs {exc.name}: pip install 'vbot_cdr[db]'"
        ) from None
    try:
        database.prepare(columns)
    except BaseException:
        database.close()
        raise
    return database
