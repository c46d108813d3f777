"""Where the command line writes calls: formats, compression, and files that are never torn.

- Formats: JSON Lines (`CallRecord.to_dict`, one call per line), CSV (`CSV_COLUMNS`) and
  Parquet (`vbot_cdr._schema.arrow_schema`, row groups of `PARQUET_ROW_GROUP` calls, so memory
  stays flat). `choose_format` reads the format from ``--format`` or from a suffix it knows,
  and refuses to guess otherwise.
- `export_file`: an export is written to a temporary file beside its target and renamed
  into place only once complete, so a failed or interrupted export never replaces or truncates
  an existing file. What it had written is kept as ``<target>.partial`` (whole lines only, a
  valid gzip stream or Parquet file), a name no ``*.jsonl`` or ``*.csv`` glob picks up.
- `stream_output`: standard output, streamed page by page.
- `append_file`: the file ``sync`` appends to, window by window; its durability belongs to
  the sync protocol (`make_durable` before each commit, `drop_torn_tail` on reopening).

This sits above the client; it imports the defining private modules, never the package face.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

import attrs
import orjson

from .._arrow import arrow_rows
from .._files import fsync_directory
from .._models import CallRecord
from .._schema import EXTRAS, arrow_schema, record_shape
from ._status import UsageError

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.parquet

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "PARQUET_ROW_GROUP",
    "PARTIAL_SUFFIX",
    "Encoder",
    "ExportFile",
    "Output",
    "OutputError",
    "OutputFormat",
    "Rows",
    "append_file",
    "append_output",
    "choose_format",
    "drop_torn_tail",
    "export_file",
    "make_durable",
    "stream_output",
]

#: The formats of ``--format``.
FORMATS: Final = ("jsonl", "csv", "parquet")

#: The suffixes a format is read from (each but ``.parquet`` also with ``.gz`` after it).
_SUFFIXES: Final = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}

#: Calls per Parquet row group: the most the Parquet writer holds in memory.
PARQUET_ROW_GROUP: Final = 10_000

#: The suffix of what an export that did not complete had written.
PARTIAL_SUFFIX: Final = ".partial"


class OutputError(UsageError):
    """Output options that cannot work together: a usage error (exit status 2)."""


@attrs.frozen
class OutputFormat:
    """How calls are written: ``name`` (one of `FORMATS`), gzip-compressed or not, for Excel."""

    name: str
    gzip: bool = False
    excel: bool = False


def choose_format(out: str | None, given: str | None, *, excel: bool = False) -> OutputFormat:
    """The format of ``--out`` ``out`` (``None`` or ``-``: standard output).

    ``given`` (``--format``) wins; otherwise the suffix decides: ``.jsonl`` or ``.json``,
    ``.csv``, each optionally followed by ``.gz``, or ``.parquet``. Standard output defaults
    to JSON Lines. A ``.gz`` target is gzip-compressed whatever the format.

    Raises:
        OutputError: An unknown suffix without ``given``; Parquet to standard output or
            gzip-compressed; ``excel`` with another format than CSV.
    """
    to_stdout = out in (None, "-")
    path = Path(out or "-")
    compressed = not to_stdout and path.suffix.lower() == ".gz"
    suffix = path.with_suffix("").suffix if compressed else path.suffix
    name = given or ("jsonl" if to_stdout else _SUFFIXES.get(suffix.lower()))
    if name is None:
        known = ", ".join([*_SUFFIXES, ".jsonl.gz", ".json.gz", ".csv.gz"])
        raise OutputError(
            f"cannot tell the format of {out} from its name (known: {known}): "
            "pass --format jsonl, csv or parquet"
        )
    if name == "parquet" and (to_stdout or compressed):
        raise OutputError("parquet needs --out FILE (it compresses its columns itself)")
    if excel and name != "csv":
        raise OutputError("--excel applies to CSV only")
    return OutputFormat(name, gzip=compressed, excel=excel)


# -- encoding ----------------------------------------------------------------------------------


def _columns() -> tuple[str, ...]:
    columns: list[str] = []
    for name, shape in record_shape().fields.items():
        if shape.kind == "object":  # member, hotline: a dotted column per part
            columns += [f"{name}.{part}" for part in shape.fields]
        else:
            columns.append(name)
    return (*columns, EXTRAS)


#: The columns of the CSV export, in order (see the CLI's documentation).
CSV_COLUMNS: Final = _columns()

#: With ``--excel``: a column of ISO 8601 local time after each of these epoch columns.
_LOCAL_TIMES: Final = {"create_at": "created", "answer_at": "answered", "end_call_at": "ended"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def _extras(record: CallRecord) -> dict[str, Any] | None:
    return dict(record.extras) if record.extras else None


class Encoder(Protocol):
    """Turns rows (calls, by default) into bytes of one line-based format."""

    def header(self) -> bytes:
        """What starts the output."""
        ...

    def encode(self, records: Sequence[Any]) -> bytes:
        """Whole lines for ``records``."""
        ...


class _JsonLines:
    """One JSON object per line, in the API's shape."""

    def header(self) -> bytes:
        return b""

    def encode(self, records: Sequence[CallRecord]) -> bytes:
        return b"".join(
            orjson.dumps(record.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for record in records
        )


class _Csv:
    """`CSV_COLUMNS`, one row per call; for Excel, a byte-order mark and local times too.

    Excel reads a UTF-8 file as the machine's legacy code page unless it starts with a
    byte-order mark, which garbles Vietnamese; and it shows epochs as bare numbers. The local
    times are written ``YYYY-MM-DD HH:MM:SS`` (ISO 8601 with a space, which Excel reads as
    a date and time) in the machine's time zone (``TZ``), next to the epochs, which stay.
    """

    def __init__(self, *, excel: bool = False):
        self._excel = excel
        columns: list[str] = []
        for column in CSV_COLUMNS:
            columns.append(column)
            if excel and column in _LOCAL_TIMES:
                columns.append(f"{column}_local")
        self.columns = tuple(columns)

    def _rows(self, rows: Sequence[Sequence[str]]) -> bytes:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        return text.getvalue().encode("utf-8")

    def header(self) -> bytes:
        return ("\ufeff".encode() if self._excel else b"") + self._rows([self.columns])

    def encode(self, records: Sequence[CallRecord]) -> bytes:
        return self._rows([self._row(record) for record in records])

    def _row(self, record: CallRecord) -> list[str]:
        data = record.to_dict()
        row: list[str] = []
        for column in CSV_COLUMNS:
            if column == EXTRAS:
                row.append(_cell(_extras(record)))
                continue
            parent, _, child = column.partition(".")
            value = data.get(parent)
            if child:
                value = value.get(child) if isinstance(value, dict) else None
            row.append(_cell(value))
            if self._excel and column in _LOCAL_TIMES:
                moment = getattr(record, _LOCAL_TIMES[column])
                row.append("" if moment is None else f"{moment.astimezone():%Y-%m-%d %H:%M:%S}")
        return row


def _encoder(output_format: OutputFormat) -> Encoder:
    if output_format.name == "csv":
        return _Csv(excel=output_format.excel)
    return _JsonLines()


# -- writers -----------------------------------------------------------------------------------


class Output(Protocol):
    """Where an export writes its calls."""

    #: How messages name it.
    name: str

    def write(self, records: Sequence[Any]) -> None:
        """Write ``records`` (calls, or the rows of its encoder) in full (whole lines), or
        raise `OSError`."""
        ...


class _ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class _LineOutput:
    """A line-based format on a binary stream, one write and flush per batch of calls.

    A gzip stream is closed by `close` (its trailer written); the file under it is not.
    """

    def __init__(self, stream: _ByteSink, encoder: Encoder, name: str, *, header: bool = True):
        self._stream = stream
        self._encoder = encoder
        self.name = name
        if header:
            stream.write(encoder.header())

    def write(self, records: Sequence[Any]) -> None:
        # One write per batch: a stop between batches leaves only whole lines.
        self._stream.write(self._encoder.encode(records))
        self._stream.flush()

    def close(self) -> None:
        if isinstance(self._stream, gzip.GzipFile):
            self._stream.close()
        else:
            self._stream.flush()


@attrs.frozen
class Rows:
    """How rows other than calls are written: ``encoder`` makes the line-based formats'
    encoder; ``arrow_schema`` and ``arrow_rows`` give Parquet its schema and rows."""

    encoder: Callable[[OutputFormat], Encoder]
    arrow_schema: Callable[[], pyarrow.Schema]
    arrow_rows: Callable[[Sequence[Any]], Iterable[dict[str, Any]]]


class _ParquetOutput:
    """Parquet, one row group per `PARQUET_ROW_GROUP` rows (calls, or those of ``rows``)."""

    def __init__(self, stream: IO[bytes], name: str, rows: Rows | None = None):
        import pyarrow.parquet as pq

        self._schema = arrow_schema() if rows is None else rows.arrow_schema()
        self._arrow_rows = arrow_rows if rows is None else rows.arrow_rows
        self._writer: pyarrow.parquet.ParquetWriter = pq.ParquetWriter(stream, self._schema)
        self._rows: list[dict[str, Any]] = []
        self.name = name

    def write(self, records: Sequence[Any]) -> None:
        for row in self._arrow_rows(records):
            self._rows.append(row)
            if len(self._rows) >= PARQUET_ROW_GROUP:
                self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


@contextlib.contextmanager
def stream_output(
    stream: IO[bytes], output_format: OutputFormat, *, rows: Rows | None = None
) -> Iterator[Output]:
    """Standard output (``stream``), written page by page as the calls (or ``rows``) come."""
    encoder = _encoder(output_format) if rows is None else rows.encoder(output_format)
    output = _LineOutput(stream, encoder, "standard output")
    yield output
    output.close()


@attrs.define
class ExportFile:
    """The outcome of `export_file`, known once its block has exited.

    Attributes:
        target: The file the export replaces once complete.
        complete: Whether it did.
        partial: Where what an export that did not complete had written was kept (``None``:
            it wrote no call, and left nothing behind).
        records: The calls written.
    """

    target: Path
    complete: bool = False
    partial: Path | None = None
    records: int = 0


class _CountingOutput:
    def __init__(self, inner: _LineOutput | _ParquetOutput, result: ExportFile):
        self._inner = inner
        self._result = result
        self.name = inner.name

    def write(self, records: Sequence[Any]) -> None:
        self._inner.write(records)
        self._result.records += len(records)


def _file_writer(
    stream: IO[bytes], output_format: OutputFormat, name: str, rows: Rows | None
) -> _LineOutput | _ParquetOutput:
    if output_format.name == "parquet":
        return _ParquetOutput(stream, name, rows)
    encoder = _encoder(output_format) if rows is None else rows.encoder(output_format)
    if output_format.gzip:
        # mtime=0: the same calls give the same bytes.
        compressed = gzip.GzipFile(fileobj=stream, mode="wb", mtime=0)
        return _LineOutput(compressed, encoder, name)
    return _LineOutput(stream, encoder, name)


@contextlib.contextmanager
def export_file(
    target: Path, output_format: OutputFormat, result: ExportFile, *, rows: Rows | None = None
) -> Iterator[Output]:
    """Write to a temporary file beside ``target``; rename it into place on a clean exit.

    ``rows`` writes rows other than calls.

    On a clean exit the file is closed, fsynced and renamed onto ``target`` (and its
    directory fsynced). When the block raises, ``target`` is left as it was: what was written
    is closed properly (a valid gzip stream or Parquet file of whole calls) and renamed to
    ``<target>.partial``, or removed if no call was written. ``result`` tells which.

    Raises:
        OSError: The temporary file cannot be created or written, or the rename fails.
    """
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        # mkstemp makes the file private; give it the permissions a plain open would have.
        os.chmod(temporary, _file_mode(target))
        with open(descriptor, "wb") as stream:
            writer = _file_writer(stream, output_format, str(target), rows)
            try:
                yield _CountingOutput(writer, result)
            finally:
                writer.close()
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
        result.complete = True
        fsync_directory(target.parent)
    finally:
        if not result.complete:
            _keep_partial(Path(temporary), target, result)


def _file_mode(target: Path) -> int:
    """The mode of ``target`` if it exists, else what the umask leaves of ``rw-rw-rw-``."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _keep_partial(temporary: Path, target: Path, result: ExportFile) -> None:
    with contextlib.suppress(FileNotFoundError):
        if result.records:
            partial = target.with_name(target.name + PARTIAL_SUFFIX)
            os.replace(temporary, partial)
            result.partial = partial
        else:
            temporary.unlink()


# -- the file sync appends to ------------------------------------------------------------------


@contextlib.contextmanager
def append_file(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened to append to (and to read, for `drop_torn_tail`).

    Raises:
        OSError: It cannot be opened.
    """
    with open(path, "a+b") as stream:
        yield stream


def append_output(
    stream: IO[bytes], output_format: OutputFormat, name: str, *, new: bool
) -> Output:
    """The calls of ``sync`` in ``output_format`` on ``stream``; the header only if ``new``.

    Raises:
        OutputError: The format cannot be appended to (Parquet, gzip).
    """
    if output_format.name == "parquet" or output_format.gzip:
        raise OutputError("sync appends JSON Lines or CSV, uncompressed")
    return _LineOutput(stream, _encoder(output_format), name, header=new)


def drop_torn_tail(stream: IO[bytes]) -> int:
    """Cut off a partial last line, which only a crash mid-write leaves; return the new size.

    The calls of that line were not committed, so the sync that reopens the file yields them
    again.
    """
    size = end = stream.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - 65_536)
        stream.seek(start)
        newline = stream.read(end - start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end != size:
        stream.truncate(end)
    return end


def make_durable(stream: IO[bytes]) -> None:
    """Flush and fsync ``stream``: what was written survives a crash (call in a thread)."""
    stream.flush()
    os.fsync(stream.fileno())
