"""The three databases: connect, create the tables, add columns, upsert rows, keep the state.

Each `Database` holds one connection and one open transaction. `upsert` and `add_columns`
write into it; `commit_with_state` writes the state row and commits it, rows and state together;
anything else (an error, a kill) leaves the transaction to be rolled back. The methods
block: the sink calls them in worker threads, and they take turns on the connection (`lock`).

Bulk loads:

- PostgreSQL: ``COPY`` into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT
  (trans_id) DO UPDATE``; a pushed group (the webhook receiver's, a few rows a commit) in one
  statement that unnests its rows from a JSON array;
- DuckDB: the rows as one JSON object of a list per column in a temporary file, read by
  ``read_json`` and unnested in one ``INSERT ... ON CONFLICT`` (DuckDB's ``executemany``
  runs a statement per row);
- SQLite: ``executemany`` of one ``INSERT ... ON CONFLICT`` statement.

Other tables (`replace_rows`, `delete_past`: the conversation turns) take the same paths but
PostgreSQL's: a pipelined ``executemany`` there and in SQLite, one ``read_json`` in DuckDB.

Each record goes to the driver as the values of a generated `encoder`, read straight off the
decoded page (`row_pages`: no `CallRecord` built on the way; JSON encoded by
msgspec, which reads the nested records as they are, a time as its epoch), and each database
computes the timestamps from the epochs in the statement that upserts: a datetime per time
built in Python, then formatted for the driver, cost more than the rest of a row.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import msgspec
import orjson

from .._decoding import CallRow
from .._errors import DatabaseError
from .._models import MILLISECONDS_THRESHOLD, WEBHOOK_FIELDS
from .._table import json_text
from ._columns import KEY, Column, Kind, encoder
from ._url import DatabaseURL

__all__ = ["Database", "open_database"]

#: The exceptions of a driver that mean the database failed (not a bug of ours).
_DriverErrors = tuple[type[BaseException], ...]


def quote(name: str) -> str:
    """``name`` as an SQL identifier, whatever characters it holds."""
    return '"' + name.replace('"', '""') + '"'


def _json_fragment(value: Any) -> orjson.Fragment | None:
    text = json_text(value)
    return None if text is None else orjson.Fragment(text)


_encode_json: Final = msgspec.json.Encoder().encode


def _raw_json(value: Any) -> msgspec.Raw | None:
    """A JSON column's value as JSON to embed in a row's JSON as it is (`_PostgreSQL`'s push)."""
    return None if value is None else msgspec.Raw(_encode_json(value))


def _holds_nul(value: Any) -> bool:
    """Whether ``value`` (text, or a JSON value: dicts, lists, scalars) holds U+0000 in a
    string or a key."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False


#: The epochs `epoch_to_datetime` can turn into a datetime (years 1 to 9999), in seconds.
_FIRST_SECOND: Final = -62_135_596_800
_LAST_SECOND: Final = 253_402_300_799


def epoch_cases(epoch: str, seconds: str, milliseconds: str) -> str:
    """A ``CASE`` of ``epoch`` as `epoch_to_datetime` reads it: ``seconds`` (an SQL expression
    of ``{s}``) for an epoch in seconds, ``milliseconds`` (of ``{ms}``) for one in
    milliseconds (told apart by magnitude); NULL for NULL, 0, or a time out of years 1-9999."""
    t = MILLISECONDS_THRESHOLD
    return (
        f"CASE WHEN {epoch} = 0 THEN NULL "
        f"WHEN {epoch} > {-t} AND {epoch} < {t} AND {epoch} >= {_FIRST_SECOND} "
        f"THEN {seconds.format(s=epoch)} "
        f"WHEN ({epoch} >= {t} OR {epoch} <= {-t}) AND {epoch} >= {_FIRST_SECOND * 1000} "
        f"AND {epoch} <= {_LAST_SECOND * 1000 + 999} THEN {milliseconds.format(ms=epoch)} END"
    )


class Database(abc.ABC):
    """One connection to a database holding a calls table and its state table.

    Attributes:
        url: The database, for messages (its `str` masks the password).
        table: The calls table; the state lives in ``<table>_sync_state``.
        columns: The calls table's columns: name → its type, as the database names it.
        lock: Held while a thread uses the connection. A task cancelled (by a signal) while
            its load runs in a worker thread cannot stop that thread: `finish` waits for it
            rather than closing the connection under it.
    """

    types: ClassVar[dict[Kind, str]]
    #: How a JSON value goes to the driver.
    json: ClassVar[Callable[[Any], Any]] = staticmethod(json_text)

    def __init__(self, url: DatabaseURL, table: str):
        self.url = url
        self.table = table
        self.state_table = f"{table}_sync_state"
        self.columns: dict[str, str] = {}
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def failing_as(self, doing: str, *, rows: bool = False) -> Iterator[None]:
        """Raise the driver's errors as `DatabaseError` saying what failed (password masked);
        ``refused`` for the driver's `refusals` when the block writes ``rows`` (the only
        thing a database refuses for what it is, not for the state it is in)."""
        try:
            yield
        except self.errors() as exc:
            message = self.url.redact(str(exc).strip().splitlines()[0] if str(exc) else repr(exc))
            refused = rows and isinstance(exc, self.refusals())
            raise DatabaseError(f"cannot {doing} {self.url}: {message}", refused=refused) from None

    @abc.abstractmethod
    def errors(self) -> _DriverErrors:
        """The driver's base exception classes."""

    @abc.abstractmethod
    def refusals(self) -> _DriverErrors:
        """The driver's exception classes that mean the database refused the rows (DB-API's
        ``DataError`` and ``IntegrityError``: a value it cannot hold, a constraint), so that
        the same rows would fail again, unlike a database that is down."""

    @abc.abstractmethod
    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in the open transaction; its rows (empty if none)."""

    @abc.abstractmethod
    def execute_many(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        """Run one statement per item of ``parameters`` (at least one) in the open
        transaction, in one call of the driver's bulk path."""

    @abc.abstractmethod
    def existing_columns(self) -> dict[str, str]:
        """The calls table's columns as the database has them: name → type."""

    @abc.abstractmethod
    def load(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool = False
    ) -> None:
        """Upsert ``records`` into the open transaction by `KEY` (one record per key), as
        `upsert_sql` merges them."""

    @abc.abstractmethod
    def timestamp(self, epoch: str) -> str:
        """The SQL expression of the timestamp of ``epoch`` (an SQL expression), as
        `epoch_to_datetime` has it."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit the open transaction and begin the next."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Roll back the open transaction and begin the next."""

    @abc.abstractmethod
    def close(self) -> None:
        """Roll back what is not committed and close the connection."""

    def finish(self) -> None:
        """`close`, once no other thread is using the connection."""
        with self.lock:
            self.close()

    def rolled_back(self) -> bool:
        """`rollback`, once no other thread is using the connection, and learn the columns
        again (those `upsert` added are gone with it); whether it could (if not, the
        connection is unusable: `finish` it)."""
        with self.lock:
            try:
                self.rollback()
                self.columns = self.existing_columns()
            except self.errors():
                return False
            return True

    def prepare(self, columns: Sequence[Column], key: Sequence[str] = (KEY,)) -> None:
        """Create the two tables if missing (the first keyed by ``key``), commit, and learn
        the columns of the first."""
        with self.failing_as("create the tables in"):
            definitions = ", ".join(f"{quote(c.name)} {self.types[c.kind]}" for c in columns)
            primary = ", ".join(quote(name) for name in key)
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.table)} "
                f"({definitions}, PRIMARY KEY ({primary}))"
            )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {quote(self.state_table)} ("
                f"fingerprint {self.types['text']} PRIMARY KEY, "
                f"state {self.types['text']} NOT NULL, "
                f"saved_at {self.types['timestamp']})"
            )
            self.commit()
            self.columns = self.existing_columns()
        self._check_times(columns)

    def _check_times(self, columns: Sequence[Column]) -> None:
        """Refuse a table whose time columns hold something else (made before 0.2, when
        they held the server's epochs): its rows would mix two meanings under one name."""
        for column in columns:
            kind = self.columns.get(column.name)
            if column.kind == "timestamp" and kind is not None and "TIME" not in kind.upper():
                raise DatabaseError(
                    f"the table {self.table} in {self.url} has {column.name} as {kind}, made "
                    "by a vbot_cdr before 0.2 (times were epochs then): load into a new "
                    "table (--table) or rename this one"
                )

    def upsert(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool = False
    ) -> None:
        """Add the columns the table lacks, then upsert ``records`` (records, or the rows of
        decoded pages) by `KEY` (one record per key), pulled or ``pushed`` (see
        `upsert_sql`); nothing is committed.

        A value goes into a JSON column as JSON whatever its field's type (a field that was
        once an extra keeps its JSON column).

        Raises:
            DatabaseError: The database refused.
        """
        with self.lock, self.failing_as("load calls into", rows=True):
            for column in columns:
                if column.name not in self.columns:
                    self.execute(
                        f"ALTER TABLE {quote(self.table)} "
                        f"ADD COLUMN {quote(column.name)} {self.types[column.kind]}"
                    )
                    self.columns[column.name] = self.types[column.kind]
            self.load(columns, records, pushed=pushed)

    def commit_pushed(self) -> None:
        """`commit` the pushed calls upserted since the last commit.

        Raises:
            DatabaseError: The database refused or is gone; nothing was committed.
        """
        with self.lock, self.failing_as("commit calls to", rows=True):
            self.commit()

    def encoder(self, columns: Sequence[Column]) -> Callable[[CallRow], tuple[Any, ...]]:
        """A record as the driver's values of ``columns`` (see `encoder`)."""
        return encoder(columns, type(self).json)

    def source_type(self, column: Column) -> str:
        """The type of ``column``'s value as the driver sends it: a time's is its epoch's."""
        return self.types["integer" if column.kind == "timestamp" else column.kind]

    def values(self, columns: Sequence[Column], sources: Sequence[str]) -> list[str]:
        """The SQL values of ``columns`` from ``sources``, the driver's values of them: a
        source as it is, or the timestamp of a time's epoch."""
        return [
            self.timestamp(source) if column.kind == "timestamp" else source
            for column, source in zip(columns, sources, strict=True)
        ]

    def upsert_sql(self, columns: Sequence[Column], source: str, *, pushed: bool = False) -> str:
        """``INSERT INTO table (columns) <source> ON CONFLICT (key) DO UPDATE SET ...``.

        The merge is order-free: a pulled row sets every column, except that where it has
        nothing (NULL) it keeps what a push wrote in the columns a webhook fills
        (`WEBHOOK_FIELDS`: the dialect may lack ``external_call_id``, and the CDR lacks the
        webhook's own fields); a ``pushed`` row fills only the columns that are still NULL,
        so it never blanks nor overrides what the pull (or an earlier push) wrote, and the
        same push twice changes nothing.
        """
        names = ", ".join(quote(c.name) for c in columns)
        table = quote(self.table)

        def update(column: Column) -> str:
            name = quote(column.name)
            path = column.field if column.part is None else f"{column.field}.{column.part}"
            if pushed:
                return f"{name} = COALESCE({table}.{name}, excluded.{name})"
            if path in WEBHOOK_FIELDS:
                return f"{name} = COALESCE(excluded.{name}, {table}.{name})"
            return f"{name} = excluded.{name}"

        updates = ", ".join(update(c) for c in columns if c.name != KEY)
        return (
            f"INSERT INTO {quote(self.table)} ({names}) {source} "
            f"ON CONFLICT ({quote(KEY)}) DO UPDATE SET {updates}"
        )

    mark: ClassVar[str] = "?"

    def replace_rows(
        self, columns: Sequence[Column], key: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Upsert ``rows`` (the driver's values of ``columns``, a time as its epoch) by
        ``key`` into the open transaction, in one bulk statement of the driver; nothing is
        committed.

        Raises:
            DatabaseError: The database refused.
        """
        if not rows:
            return
        with self.lock, self.failing_as("load rows into", rows=True):
            self.merge_rows(columns, key, rows)

    def replace_sql(self, columns: Sequence[Column], key: Sequence[str], source: str) -> str:
        """``INSERT INTO table (columns) SELECT ... FROM <source> ON CONFLICT (key) DO
        UPDATE`` every other column: ``source`` is a subquery of the driver's values of
        ``columns`` under their names, a time as its epoch."""
        names = ", ".join(quote(c.name) for c in columns)
        updates = ", ".join(
            f"{quote(c.name)} = excluded.{quote(c.name)}" for c in columns if c.name not in key
        )
        selected = ", ".join(self.values(columns, [f"s.{quote(c.name)}" for c in columns]))
        primary = ", ".join(quote(k) for k in key)
        return (
            f"INSERT INTO {quote(self.table)} ({names}) SELECT {selected} FROM {source} AS s "
            # WHERE: so that SQLite does not read ON CONFLICT as a join's ON.
            f"WHERE true ON CONFLICT ({primary}) DO UPDATE SET {updates}"
        )

    def merge_rows(
        self, columns: Sequence[Column], key: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """`replace_rows`'s upsert (``rows`` not empty, the lock held): one `execute_many`
        of a one-row select, each epoch read once though the timestamp reads it many times."""
        sources = ", ".join(
            f"CAST({self.mark} AS {self.source_type(c)}) AS {quote(c.name)}" for c in columns
        )
        self.execute_many(self.replace_sql(columns, key, f"(SELECT {sources})"), rows)

    def delete_past(
        self, columns: Sequence[Column], key: Sequence[str], ends: Sequence[Sequence[Any]]
    ) -> None:
        """For each item of ``ends`` (values of ``key``, columns of ``columns``), delete the
        rows equal to it on ``key`` but its last column and greater on that one (the turns
        past a conversation's last), in the open transaction.

        Raises:
            DatabaseError: The database refused.
        """
        if not ends:
            return
        *group, order = (quote(name) for name in key)
        condition = " AND ".join([*(f"{g} = {self.mark}" for g in group), f"{order} > {self.mark}"])
        with self.lock, self.failing_as("delete rows from"):
            self.execute_many(f"DELETE FROM {quote(self.table)} WHERE {condition}", ends)

    def read_state(self, fingerprint: str) -> str | None:
        """The state document saved under ``fingerprint``, if any."""
        with self.lock, self.failing_as("read the sync state from"):
            rows = self.execute(
                f"SELECT state FROM {quote(self.state_table)} WHERE fingerprint = {self.mark}",
                (fingerprint,),
            )
        return None if not rows else str(rows[0][0])

    def commit_with_state(self, fingerprint: str, document: str) -> None:
        """Write the state row and commit the transaction: the rows loaded since the last
        commit and the state past them, together (a window's load, made durable)."""
        with self.lock, self.failing_as("commit the calls and the sync state to", rows=True):
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
        "float": "double precision",
        "bool": "boolean",
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
        self._push_statements: dict[
            tuple[Column, ...], tuple[bytes, Callable[[CallRow], tuple[Any, ...]]]
        ] = {}

    def errors(self) -> _DriverErrors:
        return (self._psycopg.Error,)

    def refusals(self) -> _DriverErrors:
        return (self._psycopg.DataError, self._psycopg.IntegrityError)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection.cursor() as cursor:
            cursor.execute(sql.encode(), parameters or None)
            return cursor.fetchall() if cursor.description else []

    def execute_many(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(sql.encode(), parameters)  # pipelined: one round trip

    def existing_columns(self) -> dict[str, str]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = current_schema()",
            (self.table,),
        )
        self._connection.commit()
        return dict(rows)

    def load(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool = False
    ) -> None:
        try:
            self._load(columns, records, pushed=pushed)
        except self._psycopg.DataError:
            # PostgreSQL's text and jsonb cannot hold U+0000 (SQLite and DuckDB can): name the
            # call and the column, never the value, rather than the driver's bare message.
            # Looked for only once refused: the loads that succeed pay nothing.
            found = self._holding_nul(columns, records)
            if found is None:
                raise
            trans_id, column = found
            raise DatabaseError(
                f"cannot load call {trans_id} into {self.url}: its {column} holds a NUL "
                "character (U+0000), which PostgreSQL cannot store",
                refused=True,
                trans_id=trans_id,
                column=column,
            ) from None

    def _holding_nul(
        self, columns: Sequence[Column], records: Sequence[CallRow]
    ) -> tuple[str, str] | None:
        """The ``trans_id`` of the first of ``records`` with U+0000 in a text or JSON value
        (a string or a key), and the name of that value's column; ``None`` if none has."""
        encode = self.encoder(columns)
        for record in records:
            for column, value in zip(columns, encode(record), strict=True):
                if isinstance(value, str) and _holds_nul(
                    orjson.loads(value) if column.kind == "json" else value
                ):
                    return record.trans_id or "", column.name
        return None

    def _load(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool
    ) -> None:
        """`load`, its driver's errors as they are."""
        if pushed:
            # A push group is small (the posts of one commit). A staging table costs five
            # round trips and its catalog churn, and a pipelined statement a row costs the
            # client's CPU (psycopg's per-row work). So the group goes as one parameter, a
            # JSON array of rows (one C-level encode), which the statement unnests on the
            # server: built once, sent as it is by a raw cursor (psycopg would parse its
            # long text on the client for every group), prepared by psycopg after 5 uses.
            statement, encode_push = self._push_statement(tuple(columns))
            with self._psycopg.RawCursor(self._connection) as raw:
                rows = _encode_json(list(map(encode_push, records))).decode()
                raw.execute(statement, (rows,))
            return
        encode = self.encoder(columns)
        sources = [quote(c.name) for c in columns]
        names = ", ".join(sources)
        staging = quote(self._staging)
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{staging}")
        definitions = ", ".join(
            f"{source} {self.source_type(c)}" for c, source in zip(columns, sources, strict=True)
        )
        self.execute(f"CREATE TEMPORARY TABLE {staging} ({definitions}) ON COMMIT DROP")
        with (
            self._connection.cursor() as cursor,
            cursor.copy(f"COPY {staging} ({names}) FROM STDIN".encode()) as copy,
        ):
            for record in records:
                copy.write_row(encode(record))
        values = ", ".join(self.values(columns, sources))
        self.execute(self.upsert_sql(columns, f"SELECT {values} FROM {staging}", pushed=pushed))
        self.execute(f"DROP TABLE {staging}")

    def _push_statement(
        self, columns: tuple[Column, ...]
    ) -> tuple[bytes, Callable[[CallRow], tuple[Any, ...]]]:
        """The upsert of a pushed group from ``$1``, a JSON array of rows, each an array of
        the values of ``columns``; and the encoder of a row for it (built once)."""
        built = self._push_statements.get(columns)
        if built is None:
            sources = [quote(c.name) for c in columns]

            def read(index: int, column: Column) -> str:
                if column.kind == "json":  # embedded as JSON: JSON null is SQL NULL
                    return f"NULLIF(r->{index}, 'null')"
                # As text, then typed: a float's shortest repr reads back the same double
                # (through jsonb's numeric, whose only loss is the sign of -0.0).
                return f"(r->>{index})::{self.source_type(column)}"

            fields = ", ".join(
                f"{read(i, c)} AS {source}"
                for i, (c, source) in enumerate(zip(columns, sources, strict=True))
            )
            rows = f"SELECT {fields} FROM jsonb_array_elements($1::jsonb) AS r"
            source = f"SELECT {', '.join(self.values(columns, sources))} FROM ({rows}) AS pushed"
            statement = self.upsert_sql(columns, source, pushed=True).encode()
            built = self._push_statements[columns] = (statement, encoder(columns, _raw_json))
        return built

    def timestamp(self, epoch: str) -> str:
        return epoch_cases(epoch, "to_timestamp({s})", "to_timestamp({ms} / 1000.0)")

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        with contextlib.suppress(self._psycopg.Error):
            self._connection.close()


class _DuckDB(Database):
    types: ClassVar[dict[Kind, str]] = {
        "text": "VARCHAR",
        "integer": "BIGINT",
        "float": "DOUBLE",
        "bool": "BOOLEAN",
        "json": "JSON",
        "timestamp": "TIMESTAMPTZ",
    }
    json: ClassVar[Callable[[Any], Any]] = staticmethod(_json_fragment)

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

    def refusals(self) -> _DriverErrors:
        return (self._duckdb.DataError, self._duckdb.IntegrityError)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, list(parameters)).fetchall()

    def execute_many(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, [list(row) for row in parameters])

    def existing_columns(self) -> dict[str, str]:
        rows = self.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema()",
            (self.table,),
        )
        return dict(rows)

    @contextlib.contextmanager
    def _rows_of(self, columns: Sequence[Column], values: Iterable[Sequence[Any]]) -> Iterator[str]:
        """A subquery of the rows whose ``values`` (a sequence per column of ``columns``, the
        driver's values) are given, read in bulk; valid until the block ends.

        The values go as one JSON object of a list per column into a temporary file, read by
        ``read_json`` with the source types and unnested side by side into rows: a list per
        column is read faster than an object per row, and ``zip(*rows)`` builds it in C. JSON
        columns take any value, as JSON (orjson writes msgspec's JSON as it is).
        """
        sources = [quote(c.name) for c in columns]
        types = ", ".join(
            f"{source}: '{self.source_type(c)}[]'"
            for c, source in zip(columns, sources, strict=True)
        )
        names = [c.name for c in columns]
        document = orjson.dumps(dict(zip(names, values, strict=True)))
        fd, path = tempfile.mkstemp(dir=self._directory, prefix=".vbot_cdr_load.", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(document)
            unnested = ", ".join(f"unnest({s}) AS {s}" for s in sources)
            yield (
                f"(SELECT {unnested} FROM read_json({self._literal(path)}, "
                f"format = 'unstructured', maximum_object_size = {len(document) + 1}, "
                f"columns = {{{types}}}))"
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    @staticmethod
    def _literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def load(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool = False
    ) -> None:
        values = zip(*map(self.encoder(columns), records), strict=True)
        with self._rows_of(columns, values) as rows:
            sources = [quote(c.name) for c in columns]
            source = f"SELECT {', '.join(self.values(columns, sources))} FROM {rows}"
            self.execute(self.upsert_sql(columns, source, pushed=pushed))

    def merge_rows(
        self, columns: Sequence[Column], key: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        # DuckDB's executemany runs a statement per row (some ms each): one read_json instead.
        with self._rows_of(columns, zip(*rows, strict=True)) as source:
            self.execute(self.replace_sql(columns, key, source))

    def delete_past(
        self, columns: Sequence[Column], key: Sequence[str], ends: Sequence[Sequence[Any]]
    ) -> None:
        if not ends:
            return
        by_name = {c.name: c for c in columns}
        *group, order = (quote(name) for name in key)
        table = quote(self.table)
        matched = " AND ".join(
            [*(f"{table}.{g} = e.{g}" for g in group), f"{table}.{order} > e.{order}"]
        )
        with (
            self.lock,
            self.failing_as("delete rows from"),
            self._rows_of([by_name[name] for name in key], zip(*ends, strict=True)) as source,
        ):
            self.execute(f"DELETE FROM {table} USING {source} AS e WHERE {matched}")

    def timestamp(self, epoch: str) -> str:
        # Whole microseconds: to_timestamp of a fraction of a second may be a microsecond off.
        return epoch_cases(
            epoch, "make_timestamptz({s} * 1000000)", "make_timestamptz({ms} * 1000)"
        )

    def commit(self) -> None:
        self._connection.commit()
        self._connection.begin()

    def rollback(self) -> None:
        self._connection.rollback()
        self._connection.begin()

    def close(self) -> None:
        with contextlib.suppress(self._duckdb.Error):
            self._connection.close()


class _SQLite(Database):
    types: ClassVar[dict[Kind, str]] = {
        "text": "TEXT",
        "integer": "INTEGER",
        "float": "REAL",
        "bool": "BOOLEAN",
        "json": "JSON",
        "timestamp": "TIMESTAMPTZ",
    }

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

    def refusals(self) -> _DriverErrors:
        return (sqlite3.DataError, sqlite3.IntegrityError)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, tuple(parameters)).fetchall()

    def execute_many(self, sql: str, parameters: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, parameters)

    def existing_columns(self) -> dict[str, str]:
        rows = self.execute(f"PRAGMA table_info({quote(self.table)})")
        return {row[1]: row[2] for row in rows}

    def load(
        self, columns: Sequence[Column], records: Sequence[CallRow], *, pushed: bool = False
    ) -> None:
        marks = [f"?{number}" for number in range(1, len(columns) + 1)]
        values = f"VALUES ({', '.join(self.values(columns, marks))})"
        sql = self.upsert_sql(columns, values, pushed=pushed)
        self._connection.executemany(sql, map(self.encoder(columns), records))

    def timestamp(self, epoch: str) -> str:
        # ISO 8601 text, as datetime.isoformat() writes it (SQLite has no timestamp type).
        second = "strftime('%Y-%m-%dT%H:%M:%S', {}, 'unixepoch')"
        fraction = "(({ms} % 1000 + 1000) % 1000)"
        return epoch_cases(
            epoch,
            second.format("{s}") + " || '+00:00'",
            second.format(f"({{ms}} - {fraction}) / 1000")
            + f" || CASE {fraction} WHEN 0 THEN '' ELSE printf('.%03d000', {fraction}) END"
            + " || '+00:00'",
        )

    def commit(self) -> None:
        self._connection.execute("COMMIT")
        self._connection.execute("BEGIN")

    def rollback(self) -> None:
        self._connection.execute("ROLLBACK")
        self._connection.execute("BEGIN")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._connection.close()


_BACKENDS: Final[dict[str, type[Database]]] = {
    "postgresql": _PostgreSQL,
    "duckdb": _DuckDB,
    "sqlite": _SQLite,
}


def open_database(
    url: DatabaseURL, table: str, columns: Sequence[Column], key: Sequence[str] = (KEY,)
) -> Database:
    """Connect to ``url`` and make sure both tables exist (with at least ``columns``, keyed
    by ``key``).

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
        database.prepare(columns, key)
    except BaseException:
        database.close()
        raise
    return database
