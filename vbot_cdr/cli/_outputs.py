"""Where the command line writes calls: formats, compression, and files that are never torn.

- Formats: JSON Lines (`vbot_cdr._json_lines.json_lines_encoder`, one call per line), and the one
  table shape of a call (`vbot_cdr._table.CALL_COLUMNS`) as CSV, Parquet (its
  `vbot_cdr._arrow.arrow_schema`, row groups of `PARQUET_ROW_GROUP` calls, so memory stays
  flat) and xlsx (XlsxWriter in its constant-memory mode: each row goes to disk as it is
  written). Times are ISO 8601 with their offset in the output's zone (`OutputFormat.tz`) in
  JSON Lines and CSV, UTC timestamps in Parquet, and Excel datetimes in that zone in xlsx.
  `choose_format` reads the format from ``--format`` or from a suffix it knows, and refuses
  to guess otherwise.
- `export_file`: an export is written to a temporary file beside its target and renamed
  into place only once complete, so a failed or interrupted export never replaces or truncates
  an existing file. What it had written is kept as ``<target>.partial`` (whole lines only, a
  valid gzip stream, Parquet file or workbook), a name no ``*.jsonl`` or ``*.csv`` glob picks
  up.
- `stream_output`: standard output, streamed page by page.
- `append_file`: the file ``sync`` appends to, window by window; its durability belongs to
  the sync protocol (`make_durable` before each commit, `drop_torn_tail` on reopening).

This sits above the client; it imports the defining private modules, never the package face.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import functools
import gzip
import importlib.util
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

import attrs

from .._arrow import arrow_schema, arrow_table, arrow_values
from .._clock import iso_times
from .._files import fsync_directory
from .._json_lines import json_lines_encoder
from .._models import epoch_to_datetime
from .._table import (
    CALL_COLUMNS,
    DEFAULT_TZ,
    Kind,
    json_text,
    row_encoder,
    zone,
)
from ._status import UsageError

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.parquet

__all__ = [
    "APPENDABLE",
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
    "XlsxSheet",
    "append_file",
    "append_output",
    "choose_format",
    "drop_torn_tail",
    "export_file",
    "make_durable",
    "naive_time",
    "shown_zone",
    "stream_output",
]

#: The formats of ``--format``.
FORMATS: Final = ("jsonl", "csv", "parquet", "xlsx")
#: The formats ``sync`` can append to (uncompressed).
APPENDABLE: Final = ("jsonl", "csv")

#: The suffixes a format is read from (JSON Lines and CSV also with ``.gz`` after it).
_SUFFIXES: Final = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".xlsx": "xlsx",
}

#: The formats that are whole files (compressed by themselves), and the module and extra each
#: needs.
_FILE_FORMATS: Final = {"parquet": ("pyarrow", "parquet"), "xlsx": ("xlsxwriter", "xlsx")}

#: Calls per Parquet row group: the most the Parquet writer holds in memory.
PARQUET_ROW_GROUP: Final = 10_000

#: The suffix of what an export that did not complete had written.
PARTIAL_SUFFIX: Final = ".partial"


class OutputError(UsageError):
    """Output options that cannot work together: a usage error (exit status 2)."""


@attrs.frozen
class OutputFormat:
    """How calls are written: ``name`` (one of `FORMATS`), gzip-compressed or not, for Excel,
    and the zone ``tz`` in which times are shown (Parquet's are UTC whatever it is)."""

    name: str
    gzip: bool = False
    excel: bool = False
    tz: dt.tzinfo = attrs.field(factory=lambda: zone(DEFAULT_TZ))
    #: Parquet: the rows held in memory and written as one row group.
    parquet_row_group: int = PARQUET_ROW_GROUP


def choose_format(
    out: str | None, given: str | None, *, excel: bool = False, tz: dt.tzinfo | None = None
) -> OutputFormat:
    """The format of ``--out`` ``out`` (``None`` or ``-``: standard output), times in ``tz``
    (``None``: `DEFAULT_TZ`).

    ``given`` (``--format``) wins; otherwise the suffix decides: ``.jsonl`` or ``.json``,
    ``.csv``, each optionally followed by ``.gz``, ``.parquet`` or ``.xlsx``. Standard output
    defaults to JSON Lines. A ``.gz`` target is gzip-compressed whatever the format.

    Raises:
        OutputError: An unknown suffix without ``given``; Parquet or xlsx to standard output,
            gzip-compressed, or without the package that writes it (the message names the
            extra to install); ``excel`` with another format than CSV.
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
            "pass --format jsonl, csv, parquet or xlsx"
        )
    if name in _FILE_FORMATS:
        if to_stdout or compressed:
            raise OutputError(f"{name} needs --out FILE (it compresses its contents itself)")
        module, extra = _FILE_FORMATS[name]
        if importlib.util.find_spec(module) is None:
            raise OutputError(f"{name} output needs {module}: pip install 'vbot_cdr[{extra}]'")
    if excel and name != "csv":
        raise OutputError("--excel applies to CSV only")
    return OutputFormat(name, gzip=compressed, excel=excel, tz=zone(tz or DEFAULT_TZ))


# -- encoding ----------------------------------------------------------------------------------

#: The columns of the CSV, Parquet and xlsx exports, in order (`vbot_cdr._table.CALL_COLUMNS`).
CSV_COLUMNS: Final = tuple(column.name for column in CALL_COLUMNS)


class Encoder(Protocol):
    """Turns rows (calls, by default) into bytes of one line-based format."""

    def header(self) -> bytes:
        """What starts the output."""
        ...

    def encode(self, records: Sequence[Any]) -> bytes:
        """Whole lines for ``records``."""
        ...


class _JsonLines:
    """One JSON object per line, nested as the API's records, times in ISO 8601 in ``tz``
    (`vbot_cdr._json_lines.json_lines_encoder`: rows are records or their twins)."""

    def __init__(self, tz: dt.tzinfo):
        self.encode = json_lines_encoder(tz)

    def header(self) -> bytes:
        return b""


def _csv_bool(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def _excel_text(value: str | None) -> str | None:
    """Digits Excel would read as a number (dropping a leading 0, or rounding past 15
    digits) as the formula ``="..."``, which Excel shows as that text."""
    if value and value.isdigit() and (value[0] == "0" or len(value) > 15):
        return f'="{value}"'
    return value


class _Csv:
    """`CSV_COLUMNS`, one row per call, times in ISO 8601 with their offset in ``tz``.

    For Excel: a byte-order mark (Excel reads a UTF-8 file as the machine's legacy code page
    unless it starts with one, which garbles Vietnamese), times as ``YYYY-MM-DD HH:MM:SS``
    in ``tz`` (ISO 8601 with a space and no offset, which Excel reads as a date and time;
    with an offset it reads text), and codes of digits that Excel would read as a number
    (``0912345678``) as ``="0912345678"``, which it shows as text. The columns are the same.
    """

    def __init__(self, tz: dt.tzinfo, *, excel: bool = False):
        self._excel = excel
        self.columns = CSV_COLUMNS
        converters: dict[Kind, Callable[[Any], Any]] = {
            "timestamp": iso_times(tz, excel=excel),
            "json": json_text,
            "bool": _csv_bool,
        }
        if excel:
            converters["text"] = _excel_text
        self._encode = row_encoder(converters)

    def _rows(self, rows: Sequence[Sequence[Any]]) -> bytes:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        return text.getvalue().encode("utf-8")

    def header(self) -> bytes:
        return ("\ufeff".encode() if self._excel else b"") + self._rows([self.columns])

    def encode(self, records: Sequence[Any]) -> bytes:
        return self._rows(list(map(self._encode, records)))


def _encoder(output_format: OutputFormat) -> Encoder:
    if output_format.name == "csv":
        return _Csv(output_format.tz, excel=output_format.excel)
    return _JsonLines(output_format.tz)


def shown_zone(output_format: OutputFormat) -> str:
    """The zone of the times ``output_format`` writes, as a run's closing line names it."""
    return "UTC" if output_format.name == "parquet" else str(output_format.tz)


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
class XlsxSheet:
    """What an xlsx export holds: sheets titled ``title`` (``title 2`` and on past Excel's
    limit), of ``columns`` (name and kind, which says how a cell is written), each row the
    values ``row_values(tz)`` gives for a row (times as naive datetimes in ``tz``)."""

    title: str
    columns: tuple[tuple[str, Kind], ...]
    row_values: Callable[[dt.tzinfo], Callable[[Any], Sequence[Any]]]


def _call_values(tz: dt.tzinfo) -> Callable[[Any], Sequence[Any]]:
    return row_encoder({"timestamp": functools.partial(naive_time, tz=tz), "json": json_text})


#: The sheet of a calls export: `CSV_COLUMNS`.
_CALL_SHEET: Final = XlsxSheet(
    "calls", tuple((column.name, column.kind) for column in CALL_COLUMNS), _call_values
)


@attrs.frozen
class Rows:
    """How rows other than calls are written: ``encoder`` makes the line-based formats'
    encoder; ``arrow_schema`` and ``arrow_rows`` give Parquet its schema and rows; ``xlsx``
    the workbook's sheet (``None``: no xlsx for these rows)."""

    encoder: Callable[[OutputFormat], Encoder]
    arrow_schema: Callable[[], pyarrow.Schema]
    arrow_rows: Callable[[Sequence[Any]], Iterable[dict[str, Any]]]
    xlsx: XlsxSheet | None = None


class _ParquetOutput:
    """Parquet, one row group per ``row_group`` rows (calls, or those of ``rows``).

    Each page is encoded as it is written (a value no column holds fails its write, and
    none of its rows is kept); a row group's table is built once it is full.
    """

    def __init__(self, stream: IO[bytes], name: str, row_group: int, rows: Rows | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._row_group = row_group
        schema = arrow_schema() if rows is None else rows.arrow_schema()
        self._encode: Callable[[Sequence[Any]], Iterable[Any]]
        self._table: Callable[[list[Any]], pyarrow.Table]
        if rows is None:  # calls: a tuple per row, the table built column by column
            self._encode, self._table = arrow_values, arrow_table
        else:
            self._encode = rows.arrow_rows
            self._table = functools.partial(pa.Table.from_pylist, schema=schema)
        self._writer: pyarrow.parquet.ParquetWriter = pq.ParquetWriter(stream, schema)
        self._rows: list[Any] = []
        self.name = name

    def write(self, records: Sequence[Any]) -> None:
        self._rows += self._encode(records)
        while len(self._rows) >= self._row_group:
            group, self._rows = self._rows[: self._row_group], self._rows[self._row_group :]
            self._writer.write_table(self._table(group))

    def close(self) -> None:
        if self._rows:
            self._writer.write_table(self._table(self._rows))
            self._rows = []
        self._writer.close()


#: The most rows an Excel sheet holds (the header row included).
XLSX_MAX_ROWS: Final = 1_048_576
#: The most characters an Excel cell holds.
_XLSX_MAX_TEXT: Final = 32_767


class _XlsxOutput:
    """An Excel workbook: the columns of ``sheet`` (by default `CSV_COLUMNS` on a sheet
    ``calls``) with a header row and an autofilter, written by XlsxWriter in its
    constant-memory mode (each row is flushed to a temporary file as soon as the next
    starts, so memory stays flat whatever the count).

    Text (phone numbers and codes with their leading zeros) is written as text, never read
    as a number or a formula; times as Excel datetimes in ``tz`` (Excel has no zones);
    ``json`` columns as JSON text. Calls beyond a sheet's ``max_rows`` (`XLSX_MAX_ROWS`,
    Excel's limit, the header included) go on to a sheet ``calls 2``, and so on: nothing is
    cut off; the rows of another ``sheet`` likewise.
    """

    def __init__(
        self,
        stream: IO[bytes],
        name: str,
        tz: dt.tzinfo,
        *,
        max_rows: int = XLSX_MAX_ROWS,
        sheet: XlsxSheet = _CALL_SHEET,
    ):
        import xlsxwriter

        self._book = xlsxwriter.Workbook(
            stream,
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        self._header = self._book.add_format({"bold": True})
        self._text = self._book.add_format({"num_format": "@"})
        self._time = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._spec = sheet
        self._encode = sheet.row_values(tz)
        self._max_rows = max_rows
        self._sheets = 0
        self._row = max_rows  # a sheet is added with the first call
        self.name = name

    def _cell_writers(self, sheet: Any) -> list[tuple[Callable[..., int], Any]]:
        by_kind: dict[Kind, tuple[Callable[..., int], Any]] = {
            "text": (sheet.write_string, self._text),
            "integer": (sheet.write_number, None),
            "float": (sheet.write_number, None),
            "bool": (sheet.write_boolean, None),
            "timestamp": (sheet.write_datetime, self._time),
            "json": (sheet.write_string, self._text),
        }
        return [by_kind[kind] for _, kind in self._spec.columns]

    def _next_sheet(self) -> None:
        self._close_sheet()
        self._sheets += 1
        title = self._spec.title
        if self._sheets > 1:
            title = f"{title} {self._sheets}"
        self._sheet = self._book.add_worksheet(title)
        self._sheet.freeze_panes(1, 0)
        for index, (column, kind) in enumerate(self._spec.columns):
            self._sheet.write_string(0, index, column, self._header)
            width = 20 if kind == "timestamp" else max(12, len(column) + 2)
            self._sheet.set_column(index, index, width)
        self._writers = self._cell_writers(self._sheet)
        self._row = 1

    def _close_sheet(self) -> None:
        if self._sheets:
            self._sheet.autofilter(0, 0, self._row - 1, len(self._spec.columns) - 1)

    def write(self, records: Sequence[Any]) -> None:
        for record in records:
            if self._row >= self._max_rows:
                self._next_sheet()
            row = self._row
            for index, value in enumerate(self._encode(record)):
                if value is None:
                    continue
                write, cell_format = self._writers[index]
                if write(row, index, value, cell_format) == -2:  # a string beyond a cell
                    raise OSError(
                        errno.EFBIG,
                        f"a {self._spec.columns[index][0]} of {len(value)} characters does "
                        f"not fit an Excel cell ({_XLSX_MAX_TEXT} at most)",
                    )
            self._row += 1

    def close(self) -> None:
        if not self._sheets:
            self._next_sheet()  # a workbook of no calls still has its header
        self._close_sheet()
        self._book.close()


def naive_time(value: int | None, tz: dt.tzinfo) -> dt.datetime | None:
    """The epoch ``value`` as a naive datetime in ``tz``, as Excel (which has no zones)
    takes it; ``None`` stays ``None``."""
    moment = epoch_to_datetime(value, tz)
    return None if moment is None else moment.replace(tzinfo=None)


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
    def __init__(self, inner: _LineOutput | _ParquetOutput | _XlsxOutput, result: ExportFile):
        self._inner = inner
        self._result = result
        self.name = inner.name

    def write(self, records: Sequence[Any]) -> None:
        self._inner.write(records)
        self._result.records += len(records)


def _file_writer(
    stream: IO[bytes], output_format: OutputFormat, name: str, rows: Rows | None
) -> _LineOutput | _ParquetOutput | _XlsxOutput:
    if output_format.name == "parquet":
        return _ParquetOutput(stream, name, output_format.parquet_row_group, rows)
    if output_format.name == "xlsx":
        if rows is None:
            return _XlsxOutput(stream, name, output_format.tz)
        if rows.xlsx is None:
            raise OutputError("xlsx holds calls only: pass --format jsonl, csv or parquet")
        return _XlsxOutput(stream, name, output_format.tz, sheet=rows.xlsx)
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
    if output_format.name not in APPENDABLE or output_format.gzip:
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
